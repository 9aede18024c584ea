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


def two_views(
    image: torch.Tensor,
    cfg: ModelConfig,
    generator: torch.Generator | None = None,
    seeds: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Two random views of each volume.

    With `seeds` (B,) each person's views come from a generator seeded by their seed, so they do
    not depend on the batch they are in: a run split over processes augments exactly as one
    process does. Otherwise all draws come from `generator` (or the global RNG).
    """
    if seeds is None:
        return [augment(image, cfg, generator), augment(image, cfg, generator)]
    if seeds.shape != (image.shape[0],):
        raise ValueError(f"augmentation seeds must be ({image.shape[0]},); got {tuple(seeds.shape)}")
    v1, v2 = [], []
    for b in range(image.shape[0]):
        g = torch.Generator().manual_seed(int(seeds[b]))
        v1.append(augment(image[b : b + 1], cfg, g))
        v2.append(augment(image[b : b + 1], cfg, g))
    return [torch.cat(v1), torch.cat(v2)]


# Paper appendix B: with p = 0.2 a random crop, else an even down-sampling to 65,000 of the
# 658,720 array SNPs. Both keep the same share of the array, so the numbers scale with it.
PAPER_SUBSET_SNPS = 65_000
PAPER_ARRAY_SNPS = 658_720


def genetic_subset(
    n_snps: int,
    generator: torch.Generator | None = None,
    p_crop: float = 0.2,
    fraction: float = PAPER_SUBSET_SNPS / PAPER_ARRAY_SNPS,
) -> torch.Tensor:
    """Sorted SNP indices (long) of one genetic augmentation draw over an array of n_snps.

    With probability p_crop a contiguous crop at a random start, otherwise an even down-sampling
    with a random offset; both keep round(fraction * n_snps) SNPs (at least 1).
    """
    if n_snps < 1:
        raise ValueError(f"genetic_subset: n_snps must be >= 1; got {n_snps}")
    k = max(1, min(n_snps, round(fraction * n_snps)))
    u = torch.rand(2, generator=generator)
    if float(u[0]) < p_crop:
        start = int(float(u[1]) * (n_snps - k + 1))
        return torch.arange(start, start + k)
    step = n_snps / k
    return (torch.arange(k, dtype=torch.float64) * step + float(u[1]) * step).floor().long().clamp(max=n_snps - 1)
