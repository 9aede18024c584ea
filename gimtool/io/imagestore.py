"""The image store written by `prep-mri` and read by `train` and `embed`.

Layout of ``STORE/``::

    images.f16     raw float16, shape (n, D, H, W), C order, memory-mapped when read: one
                   subject's volume is one contiguous block. uint8 stores name it images.u8
                   (meta "array_file"), values = code * slope + intercept (meta "scale").
    manifest.tsv   FID IID SOURCE [QC columns...], one row per volume, in array order
    meta.json      {"format": "gimtool-imagestore", "version": 1, "n", "shape": [D, H, W],
                    "voxel_size": [x, y, z], "affine": 4x4 (voxel -> mm of the target grid),
                    "dtype": "float16" | "uint8", "scale": [slope, intercept] for uint8,
                    "array_file", "intensity": how volumes were normalised}
    failed.tsv     FID IID SOURCE REASON of the images prep-mri could not use (may be empty)
    nifti/         FID_IID.nii.gz conformed volumes, when asked for (--write-nifti)
    qc.png         mid-slices of the mean image and of the worst QC outliers

Writing (:class:`StoreWriter`) appends each volume to a work folder ``.STORE.partial`` beside
the store, with one line per finished volume in ``progress.tsv`` written after its data; the
folder is renamed to STORE only when complete. An interrupted run therefore loses at most the
volume in flight, and ``resume=True`` continues from the work folder (or from a finished store,
adding the subjects it lacks).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.io.atomic import remove, replace_into_place, temp_name
from gimtool.io.stores import read_meta

FORMAT = "gimtool-imagestore"
VERSION = 1
ARRAY_FILE = "images.f16"


class ImageStore:
    """Random access to conformed volumes and to crops, without loading whole volumes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_meta(self.path, FORMAT, "image", "prep-mri")
        self.n = int(self.meta["n"])
        self.shape = tuple(int(s) for s in self.meta["shape"])
        self.affine = np.asarray(self.meta["affine"], dtype=np.float64)
        self.voxel_size = tuple(float(v) for v in self.meta["voxel_size"])
        self.dtype = np.dtype(self.meta.get("dtype", "float16"))
        scale = self.meta.get("scale")
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        self.manifest = pl.read_csv(
            self.path / "manifest.tsv", separator="\t", schema_overrides={"FID": pl.Utf8, "IID": pl.Utf8, "SOURCE": pl.Utf8}
        )
        if self.manifest.height != self.n:
            raise InputError(f"{self.path / 'manifest.tsv'}: {self.manifest.height} rows, meta.json says {self.n}")
        afile = self.path / self.meta.get("array_file", ARRAY_FILE)
        expected = self.n * int(np.prod(self.shape)) * self.dtype.itemsize
        if not afile.is_file() or afile.stat().st_size != expected:
            size = afile.stat().st_size if afile.is_file() else "missing"
            raise InputError(f"{afile}: size {size} does not fit {self.n} volumes of {self.shape} {self.dtype}")
        self.volumes = np.memmap(afile, dtype=self.dtype, mode="r", shape=(self.n, *self.shape))

    @property
    def samples(self) -> pl.DataFrame:
        return self.manifest.select("FID", "IID")

    def _to_float(self, a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        if self.scale is not None:
            a *= self.scale[0]  # in place: no temporaries of a 16 MB crop
            a += self.scale[1]
        return a

    def volume(self, i: int) -> np.ndarray:
        """Volume i as float32, shape (D, H, W)."""
        return self._to_float(self.volumes[i])

    def crop(self, i: int, start: tuple[int, int, int], size: tuple[int, int, int], raw: bool = False) -> np.ndarray:
        """A (size) crop of volume i starting at voxel `start`, float32; reads only the crop's rows.

        With `raw`, the stored values (float16, or uint8 codes) are returned undecoded, which is
        several times faster; convert on the accelerator instead (see :meth:`decode`).
        """
        (a, b, c), (d, h, w) = start, size
        if min(a, b, c) < 0 or a + d > self.shape[0] or b + h > self.shape[1] or c + w > self.shape[2]:
            raise ValueError(f"crop start {tuple(start)} size {tuple(size)} does not fit the store's grid {self.shape}")
        block = self.volumes[i, a : a + d, b : b + h, c : c + w]
        return np.array(block) if raw else self._to_float(block)

    def crop_batch(self, indices, starts, size: tuple[int, int, int], raw: bool = True, threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
        """Crops of several volumes at once: (B, *size), stored dtype when `raw`, else float32.

        Crops are copied straight into `out` (allocated if None; pass a pinned buffer to feed a
        GPU), by `threads` threads: numpy releases the GIL while copying, so threads scale
        without the inter-process copies of DataLoader workers.
        """
        d, h, w = size
        n = len(indices)
        if out is None:
            out = np.empty((n, d, h, w), dtype=self.dtype if raw else np.float32)
        for (a, b, c) in starts:
            if min(a, b, c) < 0 or a + d > self.shape[0] or b + h > self.shape[1] or c + w > self.shape[2]:
                raise ValueError(f"crop start {(a, b, c)} size {tuple(size)} does not fit the store's grid {self.shape}")

        def one(k: int) -> None:
            (a, b, c), i = starts[k], int(indices[k])
            block = self.volumes[i, a : a + d, b : b + h, c : c + w]
            if raw:
                out[k] = block
            else:
                out[k] = block  # casts float16 -> float32 (or uint8 codes -> float32) on the copy
                if self.scale is not None:
                    out[k] *= self.scale[0]
                    out[k] += self.scale[1]

        if threads > 1 and n > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as ex:
                list(ex.map(one, range(n)))
        else:
            for k in range(n):
                one(k)
        return out

    def decode(self, a):
        """Stored values (numpy array or torch tensor) -> real values (float32)."""
        a = a.astype(np.float32) if isinstance(a, np.ndarray) else a.float()
        return a if self.scale is None else a * self.scale[0] + self.scale[1]

    def index(self, fid: str, iid: str) -> int:
        """Row of sample (fid, iid) in the store; KeyError if absent."""
        hits = np.flatnonzero((self.manifest["FID"] == fid).to_numpy() & (self.manifest["IID"] == iid).to_numpy())
        if hits.size == 0:
            raise KeyError(f"sample (FID {fid}, IID {iid}) not in {self.path}")
        return int(hits[0])

    def to_nifti(self, i: int, path: str | os.PathLike) -> None:
        """Write volume i as NIfTI on the store's grid (uint8 stores keep their codes plus scl_slope/inter)."""
        from gimtool.io.nifti import save_volume

        save_volume(path, np.asarray(self.volumes[i]), self.affine, scale=self.scale)


def create_store(
    path: str | os.PathLike,
    manifest: pl.DataFrame,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    voxel_size: tuple[float, float, float],
    dtype: str = "float16",
    scale: tuple[float, float] | None = None,
    intensity: dict | None = None,
) -> tuple[Path, np.memmap]:
    """Start a store in a temporary folder beside `path`; fill the returned memmap, then call
    :func:`finish_store`. Returns (tmp_folder, array of shape (n, *shape))."""
    path = Path(path)
    tmp = temp_name(path)
    remove(tmp)
    tmp.mkdir(parents=True)
    n = manifest.height
    arr = np.memmap(tmp / ARRAY_FILE, dtype=np.dtype(dtype), mode="w+", shape=(n, *shape))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "n": n,
        "shape": list(shape),
        "voxel_size": list(map(float, voxel_size)),
        "affine": np.asarray(affine, dtype=float).tolist(),
        "dtype": str(np.dtype(dtype)),
        "scale": None if scale is None else list(scale),
        "intensity": intensity or {},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    manifest.write_csv(tmp / "manifest.tsv", separator="\t", null_value="NA")
    return tmp, arr


def finish_store(tmp: Path, path: str | os.PathLike, arr: np.memmap, manifest: pl.DataFrame | None = None) -> None:
    """Flush the array, optionally rewrite the manifest (e.g. with QC columns), and rename into place."""
    arr.flush()
    if manifest is not None:
        manifest.write_csv(tmp / "manifest.tsv", separator="\t", null_value="NA")
    replace_into_place(tmp, Path(path))


def array_file_name(dtype: str) -> str:
    return {"float16": "images.f16", "uint8": "images.u8"}[str(np.dtype(dtype))]


def _same_geometry(a: dict, b: dict) -> str | None:
    """None when two store metas describe the same grid and encoding, else what differs."""
    for key in ("shape", "dtype", "scale"):
        if a.get(key) != b.get(key):
            return f"{key} {b.get(key)} (this run: {a.get(key)})"
    ia, ib = a.get("intensity") or {}, b.get("intensity") or {}
    for k in sorted(set(ia) | set(ib)):
        if ia.get(k) != ib.get(k):
            return f"intensity setting {k}={ib.get(k)!r} (this run: {ia.get(k)!r})"
    if not np.allclose(np.asarray(a["affine"], float), np.asarray(b["affine"], float)):
        return "grid affine"
    return None


class StoreWriter:
    """Builds an image store volume by volume, resumably; see the module docstring.

    Usage::

        w = StoreWriter(path, shape, affine, voxel_size, qc_cols, dtype="float16", resume=False)
        for ...: w.append(volume, {"FID": .., "IID": .., "SOURCE": .., **qc})   # skips nothing itself
        vols = w.volumes()                      # memmap (n, *shape) of what is written so far
        w.finish(manifest, failed)              # manifest rows in array order; renames into place
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, int, int],
        affine: np.ndarray,
        voxel_size: tuple[float, float, float],
        qc_cols: tuple[str, ...] = (),
        dtype: str = "float16",
        scale: tuple[float, float] | None = None,
        intensity: dict | None = None,
        resume: bool = False,
    ):
        self.path = Path(path)
        self.work = self.path.with_name(f".{self.path.name}.partial")
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.cols = ("FID", "IID", "SOURCE", *qc_cols)
        self.meta = {
            "format": FORMAT,
            "version": VERSION,
            "n": 0,
            "shape": list(self.shape),
            "voxel_size": list(map(float, voxel_size)),
            "affine": np.asarray(affine, dtype=float).tolist(),
            "dtype": str(self.dtype),
            "scale": None if scale is None else [float(scale[0]), float(scale[1])],
            "array_file": array_file_name(dtype),
            "intensity": intensity or {},
        }
        self.vol_bytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.rows: list[dict] = []
        self.resumed_from: str | None = None
        if resume and self.work.is_dir() and (self.work / "meta.json").is_file():
            self._resume_partial()
        elif resume and (self.path / "meta.json").is_file():
            self._resume_store()
        else:
            self._fresh()
        self._fh = open(self.work / self.meta["array_file"], "ab")
        self._progress = open(self.work / "progress.tsv", "a")

    # -- setting up ------------------------------------------------------------------------------
    def _fresh(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        (self.work / "meta.json").write_text(json.dumps(self.meta, indent=2))
        (self.work / self.meta["array_file"]).touch()
        self._write_progress()

    def _write_progress(self) -> None:
        lines = ["\t".join(self.cols)] + ["\t".join(_fmt(r.get(c)) for c in self.cols) for r in self.rows]
        tmp = self.work / "progress.tsv.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.work / "progress.tsv")

    def _check(self, other: dict, where: Path) -> None:
        diff = _same_geometry(self.meta, other)
        if diff:
            raise InputError(f"{where}: cannot --resume, it was made with a different {diff}; rerun without --resume")

    def _resume_partial(self) -> None:
        self._check(json.loads((self.work / "meta.json").read_text()), self.work)
        text = (self.work / "progress.tsv").read_text() if (self.work / "progress.tsv").is_file() else ""
        lines = text.split("\n")
        complete = lines[:-1] if not text.endswith("\n") else lines  # a torn last line is dropped
        rows = []
        if complete and complete[0].split("\t") == list(self.cols):
            for ln in complete[1:]:
                tok = ln.split("\t")
                if len(tok) == len(self.cols):
                    rows.append(dict(zip(self.cols, tok)))
        afile = self.work / self.meta["array_file"]
        have = afile.stat().st_size // self.vol_bytes if afile.is_file() else 0
        self.rows = rows[: min(len(rows), have)]
        with open(afile, "ab") as fh:
            fh.truncate(len(self.rows) * self.vol_bytes)
        self._write_progress()
        self.resumed_from = f"{self.work} ({len(self.rows)} volumes)"

    def _resume_store(self) -> None:
        old = ImageStore(self.path)
        self._check(old.meta, self.path)
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        (self.work / "meta.json").write_text(json.dumps(self.meta, indent=2))
        shutil.copyfile(self.path / old.meta.get("array_file", ARRAY_FILE), self.work / self.meta["array_file"])
        if (self.path / "nifti").is_dir():
            shutil.copytree(self.path / "nifti", self.work / "nifti")
        man = old.manifest
        self.rows = [{c: (r.get(c) if c in man.columns else None) for c in self.cols} for r in man.iter_rows(named=True)]
        self._write_progress()
        self.resumed_from = f"{self.path} ({len(self.rows)} volumes)"

    # -- writing ---------------------------------------------------------------------------------
    @property
    def done(self) -> set[tuple[str, str]]:
        return {(str(r["FID"]), str(r["IID"])) for r in self.rows}

    @property
    def nifti_dir(self) -> Path:
        return self.work / "nifti"

    def append(self, volume: np.ndarray, row: dict) -> None:
        """Append one volume (shape, dtype of the store) and its manifest row; data first, then the row."""
        if volume.shape != self.shape or volume.dtype != self.dtype:
            raise ValueError(f"volume {volume.shape} {volume.dtype} does not fit store {self.shape} {self.dtype}")
        self._fh.write(np.ascontiguousarray(volume).tobytes())
        self._fh.flush()
        self._progress.write("\t".join(_fmt(row.get(c)) for c in self.cols) + "\n")
        self._progress.flush()
        self.rows.append(dict(row))

    def volumes(self) -> np.ndarray:
        """Read-only memmap (n, *shape) of the volumes appended so far."""
        self._fh.flush()
        return np.memmap(self.work / self.meta["array_file"], dtype=self.dtype, mode="r", shape=(len(self.rows), *self.shape))

    def close(self) -> None:
        for fh in (self._fh, self._progress):
            if not fh.closed:
                fh.close()

    def finish(self, manifest: pl.DataFrame, failed: pl.DataFrame | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write manifest (rows in array order), meta, failed.tsv, then rename the work folder to the store."""
        self.close()
        if manifest.height != len(self.rows):
            raise ValueError(f"manifest has {manifest.height} rows, store has {len(self.rows)} volumes")
        if manifest.height == 0:
            raise ValueError("an image store needs at least one volume")
        self.meta["n"] = manifest.height
        (self.work / "meta.json").write_text(json.dumps(self.meta, indent=2))
        manifest.write_csv(self.work / "manifest.tsv", separator="\t", null_value="NA")
        if failed is not None:
            failed.write_csv(self.work / "failed.tsv", separator="\t", null_value="NA")
        for name, data in (extra_files or {}).items():
            (self.work / name).write_bytes(data)
        (self.work / "progress.tsv").unlink(missing_ok=True)
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.work, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path


def _fmt(v) -> str:
    if v is None:
        return "NA"
    if isinstance(v, float):
        return "NA" if not np.isfinite(v) else f"{v:.6g}"
    return str(v)
