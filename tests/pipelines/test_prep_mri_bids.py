"""prep-mri inputs at cohort scale: BIDS datasets (--bids, --session, --bids-ids) and scan lists
whose paths point inside zip archives (ARCHIVE.zip:MEMBER, as UK Biobank ships its T1 folders)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest

from gimtool.errors import InputError
from gimtool.io.bids import bids_labels, read_id_map, scan_bids
from gimtool.io.imagestore import ImageStore
from gimtool.io.nifti import load_volume
from tests.conftest import gimtool


def _nii(path: Path, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).uniform(1, 100, size=(7, 8, 9)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return data


# -- finding the scans ------------------------------------------------------------------------------

@pytest.fixture
def bids_tree(tmp_path) -> Path:
    root = tmp_path / "ds"
    _nii(root / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz", 1)
    _nii(root / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz", 2)
    _nii(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii", 3)
    _nii(root / "sub-03" / "anat" / "sub-03_T1w.nii.gz", 4)          # no sessions at all
    _nii(root / "sub-03" / "anat" / "sub-03_FLAIR.nii.gz", 5)        # not a T1w
    (root / "sub-04" / "anat").mkdir(parents=True)                   # no scan
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t50\nsub-02\t61\nsub-03\t70\nsub-05\t80\n")
    return root


def test_bids_sessions_choose_and_ambiguity_is_an_error(bids_tree):
    with pytest.raises(InputError, match=r"sub-01: 2 T1w scans \(ses-1/anat/sub-01_ses-1_T1w.nii.gz, "
                                         r"ses-2/anat/sub-01_ses-2_T1w.nii.gz\); choose one with --session LABEL"):
        scan_bids(bids_tree)
    df, notes = scan_bids(bids_tree, session="2")
    assert df.select("FID", "IID").rows() == [("01", "01")]
    assert df["PATH"][0].endswith("sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz")
    assert "3 subject(s) without a T1w scan in ses-2 left out (first: sub-02)" in notes
    df, notes = scan_bids(bids_tree, session="ses-1")  # the ses- prefix is accepted
    assert df["IID"].to_list() == ["01", "02"]
    assert "1 subject folder(s) not in participants.tsv (first: sub-04)" in notes
    assert "1 participant(s) of participants.tsv without a folder" in notes


def test_bids_id_map(bids_tree, tmp_path):
    (tmp_path / "ids.tsv").write_text("participant_id\tFID\tIID\nsub-01\tfam1\t1001\n02\tfam2\t1002\n")
    idmap = read_id_map(tmp_path / "ids.tsv")
    assert idmap == {"01": ("fam1", "1001"), "02": ("fam2", "1002")}
    df, notes = scan_bids(bids_tree, session="1", id_map=idmap)
    assert df.select("FID", "IID").rows() == [("fam1", "1001"), ("fam2", "1002")]
    (tmp_path / "spaces.txt").write_text("participant_id FID IID\nsub-03 f3 3003\n")  # space-separated too
    assert read_id_map(tmp_path / "spaces.txt") == {"03": ("f3", "3003")}
    (tmp_path / "bad.tsv").write_text("participant_id\tIID\nsub-01\t1\n")
    with pytest.raises(InputError, match=r"bad\.tsv: line 1: header lacks FID; expected columns participant_id FID IID"):
        read_id_map(tmp_path / "bad.tsv")
    (tmp_path / "dup.tsv").write_text("participant_id\tFID\tIID\nsub-01\ta\t1\nsub-02\ta\t1\n")
    with pytest.raises(InputError, match=r"two scans map to \(FID a, IID 1\)"):
        scan_bids(bids_tree, session="1", id_map=read_id_map(tmp_path / "dup.tsv"))


def test_bids_unmapped_left_out_and_nothing_usable(bids_tree, tmp_path):
    (tmp_path / "ids.tsv").write_text("participant_id\tFID\tIID\nsub-02\tf\t2\n")
    df, notes = scan_bids(bids_tree, session="1", id_map=read_id_map(tmp_path / "ids.tsv"))
    assert df.select("FID", "IID").rows() == [("f", "2")]
    assert "1 subject(s) not in --bids-ids left out (first: sub-01)" in notes
    (tmp_path / "none.tsv").write_text("participant_id\tFID\tIID\nsub-09\tf\t9\n")
    with pytest.raises(InputError, match=r"ds: no usable T1w scan \(.*not in --bids-ids"):
        scan_bids(bids_tree, session="1", id_map=read_id_map(tmp_path / "none.tsv"))
    with pytest.raises(InputError, match=r"no sub-\* folders; expected a BIDS dataset"):
        scan_bids(bids_tree / "sub-04")


def test_bids_labels():
    assert bids_labels(["S1", "S2"]) == ["S1", "S2"]
    assert bids_labels(["a_1", "b-2", "c"]) == ["s1", "s2", "s3"]  # not valid BIDS labels
    assert bids_labels(["x"] * 10)[-1] == "s10"


# -- zip archives -----------------------------------------------------------------------------------

def test_zip_member_reads_like_the_file(tmp_path):
    data = _nii(tmp_path / "T1.nii.gz", 7)
    nib.save(nib.Nifti2Image(data, np.eye(4)), tmp_path / "n2.nii")
    with zipfile.ZipFile(tmp_path / "1000001_20252_2_0.zip", "w") as zf:
        zf.write(tmp_path / "T1.nii.gz", "T1/T1.nii.gz")
        zf.write(tmp_path / "n2.nii", "T1/n2.nii")
    v = load_volume(f"{tmp_path}/1000001_20252_2_0.zip:T1/T1.nii.gz")
    np.testing.assert_array_equal(v.data, load_volume(tmp_path / "T1.nii.gz").data)
    assert v.zooms == (2.0, 2.0, 2.0)
    np.testing.assert_array_equal(load_volume(f"{tmp_path}/1000001_20252_2_0.zip:T1/n2.nii").data, data)
    with pytest.raises(InputError, match=r"1000001_20252_2_0\.zip: the archive has no member 'T1/T1_brain.nii.gz'"):
        load_volume(f"{tmp_path}/1000001_20252_2_0.zip:T1/T1_brain.nii.gz")
    with pytest.raises(InputError, match=r"none\.zip: zip archive not found"):
        load_volume(f"{tmp_path}/none.zip:T1/T1.nii.gz")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"broken\.zip: not a readable zip archive"):
        load_volume(f"{tmp_path}/broken.zip:T1/T1.nii.gz")


# -- through the command ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> dict:
    """The tiny preset simulated twice with the same seed: flat (images/ + images.tsv) and bids."""
    d = tmp_path_factory.mktemp("bids_sim")
    gimtool("simulate", "--preset", "tiny", "--out", d / "flat")
    gimtool("simulate", "--preset", "tiny", "--out", d / "bids", "--layout", "bids")
    voxel = float(nib.load(next((d / "flat" / "images").glob("*.nii.gz"))).header.get_zooms()[0])
    gimtool("prep-mri", "--dir", d / "flat", "--voxel", voxel, "--out", d / "st_flat")
    return {"dir": d, "voxel": voxel}


def _store_files_equal(a: Path, b: Path) -> None:
    ma, mb = (pl.read_csv(p / "manifest.tsv", separator="\t", infer_schema=False) for p in (a, b))
    assert ma.drop("SOURCE").equals(mb.drop("SOURCE"))
    assert json.loads((a / "meta.json").read_text()) == json.loads((b / "meta.json").read_text())
    sa, sb = ImageStore(a), ImageStore(b)
    assert sa.n == sb.n
    for i in range(sa.n):
        np.testing.assert_array_equal(sa.volume(i), sb.volume(i))


@pytest.mark.slow
def test_simulated_bids_dataset_gives_the_flat_store(sims):
    d = sims["dir"]
    root = d / "bids" / "bids"
    assert not (d / "bids" / "images.tsv").exists()
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] and desc["DatasetType"] == "raw"
    part = pl.read_csv(root / "participants.tsv", separator="\t", infer_schema=False)
    assert part.columns == ["participant_id", "FID", "IID"] and part.height == 120
    assert all((root / p / "anat" / f"{p}_T1w.nii.gz").is_file() for p in part["participant_id"])
    out = d / "st_bids"
    gimtool("prep-mri", "--bids", root, "--bids-ids", root / "participants.tsv", "--voxel", sims["voxel"], "--out", out)
    _store_files_equal(d / "st_flat", out)
    log = Path(f"{out}.log").read_text()
    assert "BIDS dataset" in log and "BIDS ID map" in log


@pytest.mark.slow
def test_zip_scan_list_gives_the_same_volumes(sims, tmp_path):
    """Three scans packed as UK Biobank does (one zip per person, T1/T1.nii.gz inside), listed
    with relative ARCHIVE.zip:MEMBER paths."""
    d = sims["dir"]
    flat = pl.read_csv(d / "flat" / "images.tsv", separator="\t", infer_schema=False)[:3]
    lines = ["FID\tIID\tPATH"]
    for fid, iid, path in flat.select("FID", "IID", "PATH").rows():
        with zipfile.ZipFile(tmp_path / f"{iid}_20252_2_0.zip", "w") as zf:
            zf.write(d / "flat" / path, "T1/T1.nii.gz")
        lines.append(f"{fid}\t{iid}\t{iid}_20252_2_0.zip:T1/T1.nii.gz")
    (tmp_path / "list.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "st"
    gimtool("prep-mri", "--images", tmp_path / "list.tsv", "--voxel", sims["voxel"], "--out", out)
    got, ref = ImageStore(out), ImageStore(d / "st_flat")
    assert got.samples["IID"].to_list() == flat["IID"].to_list()
    for i, (fid, iid) in enumerate(got.samples.select("FID", "IID").rows()):
        np.testing.assert_array_equal(got.volume(i), ref.volume(ref.index(fid, iid)))
    src = pl.read_csv(out / "manifest.tsv", separator="\t", infer_schema=False)["SOURCE"][0]
    assert src == f"{tmp_path}/{flat['IID'][0]}_20252_2_0.zip:T1/T1.nii.gz"


def test_cli_bids_option_errors(bids_tree, tmp_path):
    p = gimtool("prep-mri", "--bids", bids_tree, "--out", tmp_path / "x", check=False)
    assert p.returncode != 0 and "choose one with --session LABEL" in p.stderr and "Traceback" not in p.stderr
    p = gimtool("prep-mri", "--images", tmp_path / "l.tsv", "--bids", bids_tree, "--out", tmp_path / "y", check=False)
    assert p.returncode != 0 and "exactly one of --images LIST, --dir DIR [--pattern ...] or --bids DIR" in p.stderr
    p = gimtool("prep-mri", "--images", tmp_path / "l.tsv", "--session", "1", "--out", tmp_path / "z", check=False)
    assert p.returncode != 0 and "--session and --bids-ids go with --bids DIR" in p.stderr
