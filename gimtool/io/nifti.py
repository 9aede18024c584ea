"""NIfTI volumes and FSL FLIRT matrices, read and validated at the boundary.

:func:`load_volume` is the one way a scan enters gimtool: it accepts ``.nii`` and ``.nii.gz``
(NIfTI-1 and NIfTI-2), a 3D image or a 4D image with a single volume, any voxel order (the
affine says where each voxel is; nothing is assumed), any integer or float type, and applies
``scl_slope``/``scl_inter``. A path ``ARCHIVE.zip:MEMBER`` names an image inside a zip archive
(as UK Biobank ships its T1 folders); it is read into memory, never extracted to disk. Every problem is an :class:`InputError` naming the file and what
was wrong with it.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gimtool.errors import InputError


@dataclass
class Volume:
    """A validated scalar volume: `data` float32 (X, Y, Z) in stored voxel order, `affine` voxel -> mm (RAS)."""

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, float, float]
    path: Path
    n_nonfinite: int = 0


@dataclass
class Header:
    """Geometry of a NIfTI image without its data (what a FLIRT reference image contributes)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    zooms: tuple[float, float, float]
    path: Path


_IN_ZIP = re.compile(r"(.+?\.zip):(.+)\Z", re.IGNORECASE)


def split_archive(path: str | os.PathLike) -> tuple[Path, str] | None:
    """``ARCHIVE.zip:MEMBER`` -> (archive path, member name); None for a plain path."""
    m = _IN_ZIP.match(str(path))
    return (Path(m.group(1)), m.group(2)) if m else None


def _load_member(archive: Path, member: str):
    """A NIfTI image from a zip member, decompressed in memory."""
    import zipfile

    import nibabel as nib

    if not archive.is_file():
        raise InputError(f"{archive}: zip archive not found (image {archive}:{member})")
    try:
        with zipfile.ZipFile(archive) as zf:
            raw = zf.read(member)
    except KeyError:
        raise InputError(f"{archive}: the archive has no member {member!r}") from None
    except zipfile.BadZipFile as e:
        raise InputError(f"{archive}: not a readable zip archive ({_first_line(e)})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    nifti2 = 540 in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big"))  # sizeof_hdr
    return (nib.Nifti2Image if nifti2 else nib.Nifti1Image).from_bytes(raw)


def _open(path: str | os.PathLike):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    inside = split_archive(path)
    path = Path(path)
    if inside is None and not path.is_file():
        raise InputError(f"{path}: image file not found")
    name = (inside[1] if inside else path.name).lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise InputError(f"{path}: expected a NIfTI file ending in .nii or .nii.gz")
    try:
        img = nib.load(path) if inside is None else _load_member(*inside)
    except (ImageFileError, HeaderDataError, gzip.BadGzipFile, EOFError, zlib.error, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable NIfTI image ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: expected a NIfTI-1 or NIfTI-2 image, found {type(img).__name__}")
    return img


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else "no detail"


def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) < 3:
        raise InputError(f"{path}: image is {len(shape)}D with shape {shape}; expected a 3D volume")
    extra = shape[3:]
    if any(s != 1 for s in extra):
        raise InputError(
            f"{path}: image has shape {shape}, i.e. {int(np.prod(extra))} volumes; expected a 3D image or a 4D image with one volume"
        )
    if min(shape[:3]) < 2:
        raise InputError(f"{path}: image has shape {shape}; expected at least 2 voxels along each of the first 3 axes (a 3D volume)")
    return tuple(int(s) for s in shape[:3])  # type: ignore[return-value]


def _check_affine(path: Path, affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{path}: the image affine (sform/qform) is missing or not finite")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: the image affine (sform/qform) is singular; cannot place voxels in space")
    return affine


def load_header(path: str | os.PathLike) -> Header:
    """Geometry (shape, affine, pixdims) of a NIfTI image, validated like :func:`load_volume`."""
    img = _open(path)
    p = Path(path)
    shape = _spatial_shape(p, img.shape)
    affine = _check_affine(p, img.affine)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Header(shape=shape, affine=affine, zooms=zooms, path=p)  # type: ignore[arg-type]


def load_volume(path: str | os.PathLike) -> Volume:
    """Load and validate one scalar volume.

    Returns data as float32 (X, Y, Z) with the scale factors applied, the affine that nibabel
    chooses (sform when set, else qform), and the pixdims FSL would use. Non-finite voxels are
    set to 0 and counted; an image with no finite voxel, or with no non-zero voxel, is an error.
    """
    img = _open(path)
    p = Path(path)
    shape = _spatial_shape(p, img.shape)
    affine = _check_affine(p, img.affine)
    if img.get_data_dtype().kind not in "iuf":
        raise InputError(f"{p}: voxel type {img.get_data_dtype()} is not supported; expected an integer or float type")
    try:
        data = img.get_fdata(dtype=np.float32)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as e:
        raise InputError(f"{p}: image data cannot be read, file truncated or corrupt ({type(e).__name__}: {_first_line(e)})") from None
    data = np.ascontiguousarray(data.reshape(shape))
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad == data.size:
        raise InputError(f"{p}: every voxel is NaN or infinite; expected image intensities")
    if n_bad:
        data[bad] = 0.0
    if not np.any(data):
        raise InputError(f"{p}: every voxel is zero; expected image intensities")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(data=data, affine=affine, zooms=zooms, path=p, n_nonfinite=n_bad)  # type: ignore[arg-type]


def save_volume(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, scale: tuple[float, float] | None = None) -> None:
    """Write a 3D volume as NIfTI-1 (sform and qform = `affine`), atomically.

    uint8 data with `scale` = (slope, intercept) is written with scl_slope/scl_inter, so readers
    see the real values; float16 is widened to float32 (NIfTI has no half type).
    """
    import nibabel as nib

    from gimtool.io.atomic import atomic_path

    data = np.asarray(data)
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_sform(affine, code=4)  # 4 = MNI152
    img.set_qform(affine, code=4)
    if scale is not None:
        img.header.set_slope_inter(scale[0], scale[1])
    final = Path(path)
    # nibabel picks compression from the suffix, so the temporary name must keep it
    with atomic_path(final) as tmp:
        suffix = ".nii.gz" if final.name.endswith(".gz") else ".nii"
        t = tmp.with_name(tmp.name + suffix)
        nib.save(img, t)
        os.replace(t, tmp)


def read_flirt_mat(path: str | os.PathLike) -> np.ndarray:
    """Read an FSL FLIRT matrix: 4 lines of 4 numbers, the last line 0 0 0 1."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: FLIRT matrix file not found")
    rows = [ln.split() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if len(rows) != 4 or any(len(r) != 4 for r in rows):
        raise InputError(f"{path}: expected an FSL FLIRT matrix (4 lines of 4 numbers), found {len(rows)} non-empty lines")
    try:
        m = np.array([[float(x) for x in r] for r in rows])
    except ValueError:
        raise InputError(f"{path}: FLIRT matrix holds a value that is not a number") from None
    if not np.all(np.isfinite(m)) or not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise InputError(f"{path}: FLIRT matrix last line must be '0 0 0 1', found {' '.join(rows[3])!r}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise InputError(f"{path}: FLIRT matrix is singular")
    return m


def write_flirt_mat(path: str | os.PathLike, mat: np.ndarray) -> None:
    """Write a 4x4 matrix in FLIRT's text layout."""
    from gimtool.io.atomic import atomic_write_text

    atomic_write_text(path, "\n".join("  ".join(f"{v:.10f}" for v in row) for row in np.asarray(mat)) + "\n")


# -- lists of images ------------------------------------------------------------------------------

def _resolve(p: str, base: Path) -> str:
    inside = split_archive(p)
    if inside is not None:  # ARCHIVE.zip:MEMBER: the archive is resolved, the member kept as it is
        return f"{_resolve(str(inside[0]), base)}:{inside[1]}"
    q = Path(p).expanduser()
    if q.is_absolute():
        return str(q)
    # relative paths are relative to the list's folder (a cohort folder can be moved as a whole);
    # a path that only exists relative to the working directory is taken from there
    if not (base / q).exists() and q.exists():
        return str(q.resolve())
    return str((base / q).resolve())


def read_image_list(path: str | os.PathLike) -> "pl.DataFrame":
    """Read an image list: ``FID IID PATH [MAT]`` per line, whitespace-separated (PATH may be
    ``ARCHIVE.zip:MEMBER``, an image inside a zip archive).

    A header line starting ``FID IID`` (or ``#FID IID``) is optional; with a header the path
    column is ``PATH`` (also ``SOURCE``/``FILE``) and the FLIRT matrix column ``MAT`` (optional).
    Relative paths are relative to the list's folder. Returns FID, IID, PATH, MAT (str, MAT null
    when absent). An ID listed twice is an error naming both lines.
    """
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image list not found")
    lines = [(i + 1, ln.split()) for i, ln in enumerate(path.read_text(errors="replace").splitlines()) if ln.strip()]
    if not lines:
        raise InputError(f"{path}: image list is empty; expected lines 'FID IID PATH [MAT]'")
    i_path, i_mat, ncol = 2, 3, None
    first = lines[0][1]
    if first[0] in ("FID", "#FID") and len(first) > 1 and first[1] == "IID":
        hdr = [h.upper() for h in first]
        cands = [c for c in ("PATH", "SOURCE", "FILE", "IMAGE") if c in hdr]
        if not cands:
            raise InputError(f"{path}: line 1: header has no PATH column (found {' '.join(first)}); expected 'FID IID PATH [MAT]'")
        i_path = hdr.index(cands[0])
        i_mat = hdr.index("MAT") if "MAT" in hdr else None
        ncol = len(first)
        lines = lines[1:]
    base = path.parent
    fids, iids, paths, mats = [], [], [], []
    seen: dict[tuple[str, str], int] = {}
    for lineno, tok in lines:
        want = ncol if ncol is not None else None
        if want is not None and len(tok) != want:
            raise InputError(f"{path}: line {lineno}: expected {want} columns as in the header, found {len(tok)}")
        if want is None and len(tok) not in (3, 4):
            raise InputError(f"{path}: line {lineno}: expected 'FID IID PATH [MAT]' (3 or 4 columns), found {len(tok)}")
        key = (tok[0], tok[1])
        if key in seen:
            raise InputError(f"{path}: line {lineno}: sample (FID {tok[0]}, IID {tok[1]}) listed twice, first on line {seen[key]}")
        seen[key] = lineno
        fids.append(tok[0])
        iids.append(tok[1])
        paths.append(_resolve(tok[i_path], base))
        m = tok[i_mat] if i_mat is not None and i_mat < len(tok) else None
        mats.append(None if m in (None, "NA", "-", "") else _resolve(m, base))
    if not fids:
        raise InputError(f"{path}: image list has a header but no images")
    return pl.DataFrame({"FID": fids, "IID": iids, "PATH": paths, "MAT": mats},
                        schema={"FID": pl.Utf8, "IID": pl.Utf8, "PATH": pl.Utf8, "MAT": pl.Utf8})


def scan_table(rows: list[tuple[str, str, str]], duplicate_message) -> "pl.DataFrame":
    """The scan list frame (FID IID PATH MAT, no FLIRT matrices) of (FID, IID, path) rows; one
    scan per sample, else InputError(duplicate_message(fid, iid, first path, second path))."""
    import polars as pl

    seen: dict[tuple[str, str], str] = {}
    for fid, iid, p in rows:
        if (fid, iid) in seen:
            raise InputError(duplicate_message(fid, iid, seen[(fid, iid)], p))
        seen[(fid, iid)] = p
    return pl.DataFrame({"FID": [r[0] for r in rows], "IID": [r[1] for r in rows], "PATH": [r[2] for r in rows],
                         "MAT": [None] * len(rows)},
                        schema={"FID": pl.Utf8, "IID": pl.Utf8, "PATH": pl.Utf8, "MAT": pl.Utf8})


def scan_image_dir(directory: str | os.PathLike, pattern: str) -> "pl.DataFrame":
    """Find images under `directory` whose relative path matches `pattern`, e.g. ``{IID}_T1.nii.gz``
    or ``{FID}/{IID}/T1.nii.gz``. Without ``{FID}`` the FID is the IID (PLINK's --double-id).

    Returns FID, IID, PATH, MAT (null), sorted by path.
    """
    import re

    import polars as pl

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: image folder not found")
    if "{IID}" not in pattern:
        raise InputError(f"--pattern {pattern!r}: must contain {{IID}} (and may contain {{FID}})")
    parts = re.split(r"(\{FID\}|\{IID\})", pattern)
    rx, glob = "", ""
    for part in parts:
        if part in ("{FID}", "{IID}"):
            name = part[1:-1]
            rx += f"(?P<{name}>[^/]+?)" if f"(?P<{name}>" not in rx else f"(?P={name})"
            glob += "*"
        else:
            rx += re.escape(part)
            glob += part
    rxc = re.compile(rx + r"\Z")
    rows = []
    for f in sorted(directory.glob(glob)):
        m = rxc.match(f.relative_to(directory).as_posix())
        if m:
            iid = m.group("IID")
            fid = m.groupdict().get("FID") or iid
            rows.append((fid, iid, str(f.resolve())))
    if not rows:
        raise InputError(f"{directory}: no file matches --pattern {pattern!r}")
    return scan_table(rows, lambda fid, iid, a, b: f"{directory}: sample (FID {fid}, IID {iid}) matches two files: {a} and {b}")
