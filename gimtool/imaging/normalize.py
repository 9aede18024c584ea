"""Intensity normalisation: robust clipping and z-scoring inside the brain, and uint8 quantisation."""

from __future__ import annotations

import numpy as np

# uint8 code c stands for (c - 128) / 32: z-scores from -4 to +3.97 in steps of 1/32 (the
# clipped z-scores of a T1 brain lie well inside), 0 exactly representable.
UINT8_SCALE = (1.0 / 32.0, -4.0)


def brain_mask(volume: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask (X, Y, Z): the given `mask` (non-zero voxels), else the volume's non-zero voxels."""
    if mask is not None:
        assert mask.shape == volume.shape, (mask.shape, volume.shape)
        return np.asarray(mask) != 0
    return volume != 0


def zscore(volume: np.ndarray, mask: np.ndarray, clip: tuple[float, float] = (0.5, 99.5)) -> tuple[np.ndarray, dict]:
    """Clip to the in-mask percentiles `clip`, then z-score with the in-mask mean and SD.

    Returns (float32 volume; dict of the raw in-mask statistics). Outside the mask every voxel
    takes the z-score of the low clipping point, the value the darkest brain voxels get: the
    brain's edge then has no step, and a rim voxel that one scan's mask includes and another's
    excludes (partial volume, a coarser scan) looks nearly the same in both.
    Raises ValueError when the mask is empty or the clipped intensities are constant.
    """
    assert volume.shape == mask.shape, (volume.shape, mask.shape)
    vals = volume[mask]
    if vals.size == 0:
        raise ValueError("the brain mask is empty on this image")
    lo, hi, p01, p99 = np.percentile(vals, [clip[0], clip[1], 1.0, 99.0])  # one partition pass
    c = np.clip(vals, lo, hi)
    mean = float(c.mean(dtype=np.float64))
    sd = float(c.std(dtype=np.float64))
    if not sd > 0:
        raise ValueError("intensities inside the brain mask are constant after clipping")
    out = np.full(volume.shape, (lo - mean) / sd, dtype=np.float32)
    out[mask] = (c - mean) / sd
    stats = {
        "RAW_MEAN": float(vals.mean(dtype=np.float64)),
        "RAW_SD": float(vals.std(dtype=np.float64)),
        "RAW_P01": float(p01),
        "RAW_P99": float(p99),
        "BRAIN_VOXELS": int(vals.size),
    }
    return out, stats


def to_uint8(z: np.ndarray, scale: tuple[float, float] = UINT8_SCALE) -> np.ndarray:
    """Quantise z-scores to uint8 codes with value = code * slope + intercept (saturating)."""
    slope, inter = scale
    return np.clip(np.rint((z - inter) / slope), 0, 255).astype(np.uint8)


def from_uint8(codes: np.ndarray, scale: tuple[float, float] = UINT8_SCALE) -> np.ndarray:
    return codes.astype(np.float32) * scale[0] + scale[1]
