"""The image store written by `prep-mri` and read by `train` and `embed`.

Layout of ``STORE/``::

    images.f16     raw float16 (or uint8, see meta "dtype"/"scale"), shape (n, D, H, W), C order,
                   memory-mapped when read: one subject's volume is one contiguous block.
    manifest.tsv   FID IID SOURCE [QC columns...], one row per volume, in array order
    meta.json      {"format": "gimtool-imagestore", "version": 1, "n", "shape": [D, H, W],
                    "voxel_size": [x, y, z], "affine": 4x4 (voxel -> mm of the target grid),
                    "dtype": "float16" | "uint8", "scale": [slope, intercept] for uint8,
                    "intensity": how volumes were normalised}
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.errors import InputError

FORMAT = "gimtool-imagestore"
VERSION = 1
ARRAY_FILE = "images.f16"


class ImageStore:
    """Random access to conformed volumes and to crops, without loading whole volumes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise InputError(f"{self.path}: not a gimtool image store (no meta.json; make one with gimtool prep-mri)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise InputError(f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
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
        afile = self.path / ARRAY_FILE
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
            a = a * self.scale[0] + self.scale[1]
        return a

    def volume(self, i: int) -> np.ndarray:
        """Volume i as float32, shape (D, H, W)."""
        return self._to_float(self.volumes[i])

    def crop(self, i: int, start: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
        """A (size) crop of volume i starting at voxel `start`, float32; reads only the crop's rows."""
        (a, b, c), (d, h, w) = start, size
        return self._to_float(self.volumes[i, a : a + d, b : b + h, c : c + w])


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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
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
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
