"""BIDS datasets: finding the T1-weighted scans of `prep-mri --bids`, and writing a small dataset
(the simulator's `--layout bids`).

A scan is ``sub-<label>/[ses-<session>/]anat/*_T1w.nii[.gz]`` under the dataset root. Each subject
contributes one scan: the only one it has, or the one in ``ses-<session>`` when a session is
chosen; a subject with several candidates and no way to choose is an error that names them.

IDs: the subject label is the ID (FID = IID = label) unless a mapping file is given: a table with
a header holding ``participant_id``, ``FID`` and ``IID`` (participant_id with or without the
``sub-`` prefix; tab- or space-separated). Subjects the mapping does not list are left out and
counted. ``participants.tsv``, when present, is checked against the folders found.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl

from gimtool.errors import InputError
from gimtool.io.nifti import scan_table

_T1W = re.compile(r".*_T1w\.nii(\.gz)?\Z")
_LABEL = re.compile(r"[A-Za-z0-9]+\Z")


def _strip_sub(pid: str) -> str:
    return pid[4:] if pid.startswith("sub-") else pid


def read_participants(root: Path) -> list[str] | None:
    """Subject labels listed in ROOT/participants.tsv (None when the file is absent)."""
    path = root / "participants.tsv"
    if not path.is_file():
        return None
    lines = [ln.split("\t") for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or "participant_id" not in [h.strip() for h in lines[0]]:
        raise InputError(f"{path}: line 1: expected a header with a participant_id column (BIDS participants.tsv)")
    col = [h.strip() for h in lines[0]].index("participant_id")
    return [_strip_sub(r[col].strip()) for r in lines[1:] if len(r) > col]


def read_id_map(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """--bids-ids: subject label -> (FID, IID), from a table with participant_id, FID and IID columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: --bids-ids file not found")
    rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    head = [h.strip().lstrip("#") for h in rows[0]] if rows else []
    missing = [c for c in ("participant_id", "FID", "IID") if c not in head]
    if missing:
        raise InputError(f"{path}: line 1: header lacks {', '.join(missing)}; expected columns participant_id FID IID")
    ip, jf, ji = (head.index(c) for c in ("participant_id", "FID", "IID"))
    out: dict[str, tuple[str, str]] = {}
    for lineno, r in enumerate(rows[1:], 2):
        if len(r) != len(head):
            raise InputError(f"{path}: line {lineno}: expected {len(head)} columns as in the header, found {len(r)}")
        label = _strip_sub(r[ip].strip())
        if label in out:
            raise InputError(f"{path}: line {lineno}: participant sub-{label} listed twice")
        out[label] = (r[jf].strip(), r[ji].strip())
    return out


def _subject_scans(sub: Path, session: str | None) -> list[Path]:
    """The T1w candidates of one subject folder: its anat/ and (or only, with a session) ses-*/anat/."""
    if session is not None:
        dirs = [sub / f"ses-{session}" / "anat"]
    else:
        dirs = [sub / "anat", *sorted(p / "anat" for p in sub.glob("ses-*") if p.is_dir())]
    return [f for d in dirs if d.is_dir() for f in sorted(d.iterdir()) if _T1W.match(f.name) and f.is_file()]


def scan_bids(root: str | os.PathLike, session: str | None = None,
              id_map: dict[str, tuple[str, str]] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """The T1w scans of a BIDS dataset: (FID IID PATH MAT frame sorted by subject label, notes for
    the log). See the module docstring for the rules."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: BIDS folder not found")
    if session is not None and session.startswith("ses-"):
        session = session[4:]
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise InputError(f"{root}: no sub-* folders; expected a BIDS dataset (sub-<label>/[ses-<session>/]anat/*_T1w.nii.gz)")
    notes, rows, no_scan, unmapped = [], [], [], []
    for sub in subjects:
        label = sub.name[4:]
        scans = _subject_scans(sub, session)
        if not scans:
            no_scan.append(sub.name)
            continue
        if len(scans) > 1:
            shown = ", ".join(str(s.relative_to(sub)) for s in scans[:4])
            how = "keep one T1w scan per subject in that session" if session else "choose one with --session LABEL"
            raise InputError(f"{sub}: {len(scans)} T1w scans ({shown}); {how}")
        if id_map is not None and label not in id_map:
            unmapped.append(sub.name)
            continue
        fid, iid = id_map[label] if id_map is not None else (label, label)
        rows.append((fid, iid, str(scans[0].resolve())))
    where = f"in ses-{session}" if session else "under anat/ or ses-*/anat/"
    if no_scan:
        notes.append(f"{len(no_scan)} subject(s) without a T1w scan {where} left out (first: {no_scan[0]})")
    if unmapped:
        notes.append(f"{len(unmapped)} subject(s) not in --bids-ids left out (first: {unmapped[0]})")
    listed = read_participants(root)
    if listed is not None:
        found = {s.name[4:] for s in subjects}
        extra = sorted(found - set(listed))
        if extra:
            notes.append(f"{len(extra)} subject folder(s) not in participants.tsv (first: sub-{extra[0]})")
        if set(listed) - found:
            notes.append(f"{len(set(listed) - found)} participant(s) of participants.tsv without a folder")
    if not rows:
        raise InputError(f"{root}: no usable T1w scan ({'; '.join(notes) or 'none found'})")
    frame = scan_table(rows, lambda fid, iid, a, b: f"{root}: two scans map to (FID {fid}, IID {iid}): {a} and {b}")
    return frame, notes


# -- writing (the simulator) ----------------------------------------------------------------------

def bids_labels(iids: list[str]) -> list[str]:
    """Subject labels for these IDs: the ID itself when it is a valid label (letters and digits)
    and the labels stay unique, else ``s0001``... in order."""
    if all(_LABEL.match(x) for x in iids) and len(set(iids)) == len(iids):
        return list(iids)
    width = len(str(len(iids)))
    return [f"s{i + 1:0{width}d}" for i in range(len(iids))]


def t1w_path(root: str | os.PathLike, label: str) -> Path:
    return Path(root) / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"


def write_dataset_files(root: str | os.PathLike, participants: pl.DataFrame, name: str, generated_by: str) -> None:
    """ROOT/dataset_description.json and ROOT/participants.tsv (`participants`: participant_id
    first, e.g. participant_id FID IID, which `prep-mri --bids-ids` reads back)."""
    from gimtool.io.atomic import atomic_path, atomic_write_text

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    desc = {"Name": name, "BIDSVersion": "1.9.0", "DatasetType": "raw", "GeneratedBy": [{"Name": generated_by}]}
    atomic_write_text(root / "dataset_description.json", json.dumps(desc, indent=2) + "\n")
    with atomic_path(root / "participants.tsv") as tmp:
        participants.write_csv(tmp, separator="\t")
