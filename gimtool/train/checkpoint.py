"""Checkpoints: `torch.save` of a plain dict, loaded with `weights_only=True`.

Keys::

    format, version, gimtool_version
    method        training method name
    config        TrainConfig.to_dict() (model settings under "model")
    snp_hash      hash of the genotype store's SNP table (None when trained without genotypes)
    n_snps        number of SNPs the model was built for
    grid          {"shape": [D, H, W], "affine": 4x4 list, "voxel_size": [x, y, z]} of the image store
    crop          [d, h, w] the encoder's input size (training crops; validation/embedding centre crop)
    modules       state dict of the method's ModuleDict
    optimizer, scheduler   state dicts of the current stage (None when complete or untrained)
    position      {"stage": index of the stage the next epoch belongs to, "epoch": epochs done in it,
                   "global_epoch": epochs done in all}
    complete      True for the final model (model.pt)
    rng           {"torch": CPU generator state, "cuda": list of device states}
    history       list of per-epoch dicts (the rows of history.tsv)
    n_train, n_val
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gimtool import __version__
from gimtool.errors import InputError
from gimtool.io.atomic import atomic_path

FORMAT = "gimtool-checkpoint"
VERSION = 1


def grid_of(store) -> dict:
    """The grid description of an ImageStore, as stored in checkpoints."""
    return {
        "shape": [int(s) for s in store.shape],
        "affine": np.asarray(store.affine, dtype=float).round(6).tolist(),
        "voxel_size": [float(v) for v in store.voxel_size],
    }


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Write atomically: a killed run leaves the previous checkpoint, never half of a new one."""
    ckpt = {"format": FORMAT, "version": VERSION, "gimtool_version": __version__, **ckpt}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for foreign or damaged files
        raise InputError(f"{path}: not a readable gimtool checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a gimtool checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    if int(ckpt.get("version", 0)) > VERSION:
        raise InputError(f"{path}: checkpoint version {ckpt['version']} is newer than this gimtool reads ({VERSION})")
    return ckpt


# Model settings added after version 1 checkpoints were first written, with the value that
# reproduces those checkpoints' behaviour (their state dicts have no standardization buffers).
LEGACY_MODEL_KEYS = {"flatten_mm": 0.0, "critic_standardize": False, "genetic_input": "classes", "critic_snps": 0, "critic_guided_dims": 0,
                     "teacher_weight": 0.0}


def with_legacy_model_keys(config: dict) -> dict:
    """A checkpoint's config dict with the settings it predates filled in as it was trained."""
    model = dict(config.get("model") or {})
    for key, value in LEGACY_MODEL_KEYS.items():
        model.setdefault(key, value)
    return {**config, "model": model}


def _short(h) -> str:
    return "none" if h is None else str(h)[:12]


def grids_equal(a: dict, b: dict) -> bool:
    return list(a["shape"]) == list(b["shape"]) and np.allclose(np.asarray(a["affine"]), np.asarray(b["affine"]), atol=1e-4)


def describe_grid(g: dict) -> str:
    aff = np.asarray(g["affine"])
    return f"shape {tuple(g['shape'])}, voxel {tuple(round(v, 4) for v in g['voxel_size'])} mm, origin {tuple(aff[:3, 3].round(3).tolist())}"


def check_compatible(ckpt: dict, path, method: str | None = None, snp_hash: str | None = None,
                     grid: dict | None = None, check_snps: bool = True) -> None:
    """Refuse a checkpoint made for another method, SNP set or image grid, showing both sides."""
    if method is not None and ckpt["method"] != method:
        raise InputError(f"{path}: checkpoint was trained with --method {ckpt['method']}, this run uses --method {method}")
    if check_snps and ckpt.get("snp_hash") is not None and snp_hash != ckpt.get("snp_hash"):
        raise InputError(
            f"{path}: checkpoint was trained on another SNP set (SNP table hash {_short(ckpt.get('snp_hash'))}, "
            f"{ckpt.get('n_snps')} SNPs); the genotype store given has hash {_short(snp_hash)}"
        )
    if grid is not None and not grids_equal(ckpt["grid"], grid):
        raise InputError(
            f"{path}: checkpoint was trained on image grid {describe_grid(ckpt['grid'])}; "
            f"the image store has {describe_grid(grid)}"
        )
