"""Image augmentations for the two-view methods (SimCLR, SimCLR-JSE, Barlow Twins).

Pure torch functions on (B, 1, D, H, W) batches; randomness from `generator` (the global torch
RNG when None, which the training loop's checkpoints capture). Flips and rotations are left out
on purpose: the paper found they do not help on brain MRI (appendix B).
"""

from __future__ import annotations

import torch

from .config import ModelConfig


def _rand(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device="cpu").to(device)


def random_shift(image: torch.Tensor, max_frac: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each volume by up to max_frac of its size per axis, filling with zeros."""
    B = image.shape[0]
    sizes = image.shape[2:]
    out = torch.zeros_like(image)
    u = _rand((B, 3), generator, "cpu")
    for b in range(B):
        src, dst = [], []
        for ax, n in enumerate(sizes):
            m = int(max_frac * n)
            s = int(round((2 * float(u[b, ax]) - 1) * m))
            src.append(slice(max(0, -s), n - max(0, s)))
            dst.append(slice(max(0, s), n - max(0, -s)))
        out[b, :, dst[0], dst[1], dst[2]] = image[b, :, src[0], src[1], src[2]]
    return out


def intensity_jitter(image: torch.Tensor, scale: float, shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x * (1 + U(-scale, scale)) + U(-shift, shift), one draw per volume."""
    B = image.shape[0]
    u = _rand((B, 2), generator, image.device).to(image.dtype) * 2 - 1
    return image * (1 + scale * u[:, 0]).view(B, 1, 1, 1, 1) + (shift * u[:, 1]).view(B, 1, 1, 1, 1)


def gaussian_noise(image: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    noise = torch.randn(image.shape, generator=generator, device="cpu", dtype=torch.float32)
    return image + std * noise.to(device=image.device, dtype=image.dtype)


def augment(image: torch.Tensor, cfg: ModelConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view: shift, intensity jitter, noise."""
    x = random_shift(image, cfg.aug_max_shift, generator)
    x = intensity_jitter(x, cfg.aug_intensity_scale, cfg.aug_intensity_shift, generator)
    return gaussian_noise(x, cfg.aug_noise_std, generator)


def two_views(image: torch.Tensor, cfg: ModelConfig, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    return [augment(image, cfg, generator), augment(image, cfg, generator)]
