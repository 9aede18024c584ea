"""Resampling a volume onto a target grid through a voxel map (trilinear by default)."""

from __future__ import annotations

import numpy as np


def antialias_sigma(voxel_map: np.ndarray) -> np.ndarray:
    """Gaussian sigma (source voxels) per source axis that keeps a coarser target grid from aliasing.

    The target's voxel step along each source axis is read from the voxel map; where it is larger
    than one source voxel, sigma = (step - 1) / 2 (the rule scikit-image uses for downscaling).
    """
    step = np.abs(np.asarray(voxel_map, float)[:3, :3]).max(axis=1)
    return np.maximum(0.0, (step - 1.0) / 2.0)


def resample(
    data: np.ndarray,
    voxel_map: np.ndarray,
    out_shape: tuple[int, int, int],
    order: int = 1,
    antialias: bool = True,
) -> np.ndarray:
    """Sample `data` (X, Y, Z) at target voxels; returns float32 `out_shape`.

    `voxel_map` (4x4) takes target voxel indices to source voxel indices. Target voxels that
    fall outside the source field of view are 0. Interpolation: 0 nearest, 1 trilinear, 3 cubic.
    """
    from scipy import ndimage

    data = np.asarray(data, dtype=np.float32)
    assert data.ndim == 3, data.shape
    m = np.asarray(voxel_map, dtype=np.float64)
    assert m.shape == (4, 4), m.shape
    if antialias and order > 0 and smooths(m):
        data = ndimage.gaussian_filter(data, sigma=antialias_sigma(m), mode="constant", cval=0.0, truncate=3.0)
    data, m = _axis_aligned(data, m)
    if _is_diagonal(m) and order in (0, 1):
        # axis-aligned maps (every scan already in MNI space, in any storage order) separate into
        # three 1D interpolations, many times faster than scipy's per-voxel path
        return _separable(data, np.diag(m[:3, :3]), m[:3, 3], tuple(out_shape), order)
    matrix = m[:3, :3]
    out = ndimage.affine_transform(
        data, matrix, offset=m[:3, 3], output_shape=tuple(out_shape), order=order,
        mode="grid-constant", cval=0.0, prefilter=order > 1, output=np.float32,
    )
    return out


def _separable(data: np.ndarray, step, offset, out_shape, order: int) -> np.ndarray:
    """Resample with source coordinate step[a] * j + offset[a] along each axis a (zero outside,
    like scipy's mode 'grid-constant')."""
    out = data
    for ax in range(3):
        n = out.shape[ax]
        x = step[ax] * np.arange(out_shape[ax], dtype=np.float64) + offset[ax]
        # one slab of zeros on each side; coordinates beyond them read zeros too
        padded = np.pad(out, [(1, 1) if a == ax else (0, 0) for a in range(3)])
        x = np.clip(x, -1.0, float(n)) + 1.0
        if order == 0:
            idx = np.floor(x + 0.5).astype(np.intp)
            out = np.take(padded, np.minimum(idx, n + 1), axis=ax)
            continue
        i0 = np.floor(x).astype(np.intp)
        f = (x - i0).astype(np.float32)
        i1 = np.minimum(i0 + 1, n + 1)
        shape = [1, 1, 1]
        shape[ax] = -1
        f = f.reshape(shape)
        if np.all(f == 0):
            out = np.take(padded, i0, axis=ax)
        else:
            lo = np.take(padded, i0, axis=ax)
            hi = np.take(padded, i1, axis=ax)
            lo *= 1 - f
            hi *= f
            lo += hi
            out = lo
    return np.ascontiguousarray(out, dtype=np.float32)


def smooths(voxel_map: np.ndarray) -> bool:
    """Whether :func:`resample` pre-smooths for this voxel map (target coarser than the source)."""
    return bool(np.any(antialias_sigma(voxel_map) > 0.1))


def _is_diagonal(m: np.ndarray) -> bool:
    a = np.abs(m[:3, :3])
    return bool(np.all(a - np.diag(np.diag(a)) <= 1e-9 * a.max()))


def _axis_aligned(data: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """When the map only permutes and flips axes (plus scaling), reorder the source so that the
    map becomes diagonal with positive steps; otherwise return both unchanged."""
    a = np.abs(m[:3, :3])
    big = a > 1e-9 * a.max()
    if not (np.all(big.sum(axis=0) == 1) and np.all(big.sum(axis=1) == 1)):
        return data, m
    perm = [int(np.flatnonzero(big[:, j])[0]) for j in range(3)]  # target axis j reads source axis perm[j]
    t = np.zeros((4, 4))
    t[3, 3] = 1
    for j, src in enumerate(perm):
        t[src, j] = 1  # new source index along j = old index along perm[j]
    d = np.transpose(data, perm)
    m2 = np.linalg.inv(t) @ m
    for j in range(3):
        if m2[j, j] < 0:
            n = d.shape[j]
            d = np.flip(d, axis=j)
            f = np.eye(4)
            f[j, j], f[j, 3] = -1, n - 1
            m2 = f @ m2
    return np.ascontiguousarray(d), m2


def fov_coverage(voxel_map: np.ndarray, src_shape: tuple[int, int, int], out_shape: tuple[int, int, int], stride: int = 4) -> float:
    """Share of target voxels whose centre falls inside the source field of view (on a strided subgrid).

    A scan that covers only part of the target grid (wrong affine, wrong FLIRT matrix, cropped
    acquisition) shows here before it shows in the images.
    """
    axes = [np.arange(0, n, stride, dtype=np.float64) for n in out_shape]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    m = np.asarray(voxel_map, float)
    src = g @ m[:3, :3].T + m[:3, 3]
    inside = np.all((src >= -0.5) & (src <= np.asarray(src_shape) - 0.5), axis=1)
    return float(inside.mean())


def mask_on_grid(mask: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray,
                 out_shape: tuple[int, int, int]) -> np.ndarray:
    """A mask (voxels > 0 inside) placed on a target grid through the two affines: trilinear
    share of mask, kept where >= 0.5. Returns bool `out_shape`."""
    from gimtool.imaging.geometry import world_voxel_map

    share = resample((mask > 0).astype(np.float32), world_voxel_map(src_affine, dst_affine), out_shape, order=1,
                     antialias=False)
    return share >= 0.5
