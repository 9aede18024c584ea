"""Embeddings from a checkpoint: the 128 GWAS dimensions of the MRI encoder, per person."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gimtool.train import checkpoint as ckpt_mod
from gimtool.train.config import TrainConfig


def resolve_checkpoint(path) -> Path:
    """A checkpoint file as given, or for a run folder its best.pt (the epoch of best validation
    MI, or loss for methods without a critic) when there is one, else its model.pt."""
    path = Path(path)
    if path.is_dir():
        best = path / "best.pt"
        return best if best.is_file() else path / "model.pt"
    return path


def load_model(path, device: torch.device):
    """(method, modules in eval mode, config, checkpoint dict) from a checkpoint file (or a run
    folder: see resolve_checkpoint)."""
    from gimtool.model.methods import get_method

    path = resolve_checkpoint(path)
    ck = ckpt_mod.load_checkpoint(path)
    method = get_method(ck["method"])
    cfg = TrainConfig.from_dict(ckpt_mod.with_legacy_model_keys(ck["config"]), source=f"{path} config")
    modules = method.build(cfg.model, tuple(ck["crop"]), int(ck["n_snps"]))
    modules.load_state_dict(ck["modules"])
    modules.to(device).eval()
    return method, modules, cfg, ck


@torch.no_grad()
def embed_volumes(method, modules, images, index: np.ndarray, crop: tuple[int, int, int] | None,
                  device: torch.device, batch_size: int, bf16: bool = True, progress: bool = True) -> np.ndarray:
    """Embeddings of volumes `index` of an ImageStore, shape (len(index), 128), float32.

    `crop` None embeds whole volumes; otherwise the centre crop of that size (what validation uses).
    """
    shape = images.shape
    starts = None if crop is None else tuple((n - c) // 2 for n, c in zip(shape, crop))
    out = []
    from gimtool.progress import bar as progress_bar

    bar = progress_bar(total=len(index), desc="embed", unit="vol", enabled=progress)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if (device.type == "cuda" and bf16) else None
    for b in range(0, len(index), batch_size):
        idx = index[b:b + batch_size]
        vols = [images.volume(int(i)) if crop is None else images.crop(int(i), starts, crop) for i in idx]
        x = torch.from_numpy(np.stack(vols))[:, None].to(device)
        if autocast is not None:
            with autocast:
                z = method.embed(modules, x)
        else:
            z = method.embed(modules, x)
        out.append(z.float().cpu().numpy())
        bar.update(len(idx))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
