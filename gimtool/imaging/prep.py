"""Conforming scans onto the target grid: one file at a time, or many through a process pool.

This is the library layer between the files (:mod:`gimtool.io.nifti`) and the kernels
(:mod:`geometry`, :mod:`resample`, :mod:`normalize`); `gimtool prep-mri` drives it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from gimtool.errors import GimtoolError, InputError
from gimtool.imaging.geometry import flirt_voxel_map, world_voxel_map
from gimtool.imaging.normalize import UINT8_SCALE, brain_mask, to_uint8, zscore
from gimtool.imaging.resample import fov_coverage, resample, smooths


@dataclass
class ConformConfig:
    """How every scan is conformed. `mask` is on the target grid (bool) or None (non-zero voxels);
    `flirt_mat` applies to every scan without its own MAT; `ref` = (shape, affine, zooms) of the
    FLIRT reference image."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    dtype: str = "float16"
    order: int = 1
    antialias: bool = True
    clip: tuple[float, float] = (0.5, 99.5)
    mask: np.ndarray | None = None
    flirt_mat: np.ndarray | None = None
    ref: tuple | None = None
    nifti_dir: str | None = None
    mat_is_pattern: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, float] | None:
        return UINT8_SCALE if self.dtype == "uint8" else None


def nifti_name(fid: str, iid: str) -> str:
    return f"{fid}_{iid}.nii.gz"


def conform_file(fid: str, iid: str, path: str, mat_path: str | None, cfg: ConformConfig) -> tuple[np.ndarray, dict]:
    """Load, place on the target grid, normalise and encode one scan.

    Returns (volume in the store's dtype, shape cfg.shape; QC dict of IMAGE_QC_COLS).
    Raises InputError naming the file for anything wrong with it.
    """
    from gimtool.io.nifti import load_volume, read_flirt_mat, save_volume

    vol = load_volume(path)
    mat = read_flirt_mat(mat_path) if mat_path else cfg.flirt_mat
    if mat is not None:
        if cfg.ref is None:
            raise ValueError("a FLIRT matrix needs the reference grid (cfg.ref)")
        rshape, raff, rzooms = cfg.ref
        vmap = flirt_voxel_map(mat, vol.affine, vol.data.shape, vol.zooms, raff, rshape, rzooms, target_affine=cfg.affine)
    else:
        vmap = world_voxel_map(vol.affine, cfg.affine)
    cover = fov_coverage(vmap, vol.data.shape, cfg.shape)
    how = f"FLIRT matrix {mat_path or '(--flirt-mat)'}" if mat is not None else "its affine"
    if cover == 0.0:
        raise InputError(f"{path}: placed by {how}, the image does not overlap the target grid; expected an image in (or a matrix to) MNI space")
    out = resample(vol.data, vmap, cfg.shape, order=cfg.order, antialias=cfg.antialias)
    if cfg.mask is None and cfg.antialias and smooths(vmap):
        # the scan's own support, resampled without smoothing: pre-smoothing would otherwise
        # grow a rim of near-zero voxels around a skull-stripped brain
        support = resample((vol.data != 0).astype(np.float32), vmap, cfg.shape, order=0, antialias=False)
        mask = brain_mask(out, support)
    elif cfg.mask is None:
        mask = brain_mask(out)
    else:
        mask = brain_mask(out, cfg.mask)
    try:
        z, stats = zscore(out, mask, cfg.clip)
    except ValueError as e:
        raise InputError(f"{path}: after placing it on the target grid by {how}, {e}") from None
    stored = to_uint8(z, UINT8_SCALE) if cfg.dtype == "uint8" else z.astype(np.float16)
    if cfg.nifti_dir:
        save_volume(Path(cfg.nifti_dir) / nifti_name(fid, iid), stored, cfg.affine, scale=cfg.scale)
    qc = {**stats, "FOV_COVERAGE": round(cover, 4), "NONFINITE_VOXELS": vol.n_nonfinite}
    return stored, qc


# -- process pool ---------------------------------------------------------------------------------
_CFG: ConformConfig | None = None


def _init(cfg: ConformConfig) -> None:
    global _CFG
    _CFG = cfg
    os.environ["OMP_NUM_THREADS"] = "1"


def _work(task: tuple[int, str, str, str, str | None]):
    i, fid, iid, path, mat = task
    try:
        stored, qc = conform_file(fid, iid, path, mat, _CFG)  # type: ignore[arg-type]
        return i, stored, qc
    except GimtoolError as e:
        return i, None, str(e)
    except MemoryError:
        return i, None, f"{path}: out of memory while conforming"
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a cohort; the reason is kept
        return i, None, f"{path}: unexpected {type(e).__name__}: {e}"


def conform_many(tasks: list[tuple[int, str, str, str, str | None]], cfg: ConformConfig, threads: int = 1) -> Iterator[tuple]:
    """Yield (task index, stored volume or None, QC dict or failure reason) in task order.

    Tasks are (index, FID, IID, path, MAT path or None). With threads > 1 a process pool does
    the work; results still come back in task order, so the store's order is the list's.
    """
    if threads <= 1 or len(tasks) <= 1:
        _init(cfg)
        for t in tasks:
            yield _work(t)
        return
    import multiprocessing as mp

    # forkserver: a child forked from a parent whose thread pools (polars, BLAS) are running can
    # deadlock; the server process starts clean
    with mp.get_context("forkserver").Pool(processes=threads, initializer=_init, initargs=(cfg,)) as pool:
        yield from pool.imap(_work, tasks, chunksize=1)
