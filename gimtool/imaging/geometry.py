"""Voxel maps from affines and from FSL FLIRT matrices.

FLIRT matrices are defined between *FSL scaled-voxel coordinates* (FSL's "FLIRT coordinates"):
voxel indices multiplied by the pixdims, with the first axis reversed, ``x = (nx - 1 - i) * dx``,
when the image's voxel-to-world affine has a positive determinant (neurological storage). Thus
two images that hold the same voxels in opposite left-right storage have the same FSL
coordinates, and a FLIRT matrix maps *source* FSL coordinates to *reference* FSL coordinates.
``flirt -applyxfm`` fills reference voxel r with the source at
``inv(S_src) @ inv(mat) @ S_ref @ r``, S being each image's voxel -> FSL-coordinate matrix.
"""

from __future__ import annotations

import numpy as np


def fsl_scaled_voxel(affine: np.ndarray, shape: tuple[int, int, int], zooms: tuple[float, float, float]) -> np.ndarray:
    """4x4 matrix: voxel indices of an image -> its FSL scaled-voxel coordinates (mm)."""
    s = np.diag([float(zooms[0]), float(zooms[1]), float(zooms[2]), 1.0])
    if np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]) > 0:
        s[0, 0] = -float(zooms[0])
        s[0, 3] = (shape[0] - 1) * float(zooms[0])
    return s


def world_voxel_map(src_affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """Target voxel -> source voxel for images that are already aligned in world (mm) space."""
    return np.linalg.inv(np.asarray(src_affine, dtype=float)) @ np.asarray(target_affine, dtype=float)


def flirt_voxel_map(
    mat: np.ndarray,
    src_affine: np.ndarray,
    src_shape: tuple[int, int, int],
    src_zooms: tuple[float, float, float],
    ref_affine: np.ndarray,
    ref_shape: tuple[int, int, int],
    ref_zooms: tuple[float, float, float],
    target_affine: np.ndarray | None = None,
) -> np.ndarray:
    """Target voxel -> source voxel for a FLIRT matrix `mat` (source -> reference FSL coordinates).

    With `target_affine` None the target grid is the reference grid itself (what
    ``flirt -applyxfm -ref REF`` produces); otherwise the target grid is any grid in the
    reference's world space (e.g. gimtool's RAS-ordered MNI grid at another voxel size), reached
    through the reference affine.
    """
    s_src = fsl_scaled_voxel(src_affine, src_shape, src_zooms)
    s_ref = fsl_scaled_voxel(ref_affine, ref_shape, ref_zooms)
    m = np.linalg.inv(s_src) @ np.linalg.inv(np.asarray(mat, dtype=float)) @ s_ref
    if target_affine is not None:
        m = m @ np.linalg.inv(np.asarray(ref_affine, dtype=float)) @ np.asarray(target_affine, dtype=float)
    return m


def fsl_mni152_reference(voxel: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray, tuple[float, float, float]]:
    """(shape, affine, zooms) of FSL's ``MNI152_T1_<v>mm`` as FSL stores it (x right-to-left).

    The default FLIRT reference of UK Biobank's T1 pipeline; voxels coincide with
    :func:`gimtool.imaging.grids.mni_grid` at the same voxel size, in the opposite x order.
    """
    from gimtool.imaging.grids import mni_grid

    shape, ras = mni_grid(voxel)
    affine = ras.copy()
    affine[0, 0] = -ras[0, 0]
    affine[0, 3] = ras[0, 3] + (shape[0] - 1) * ras[0, 0]
    return shape, affine, (float(voxel),) * 3


def flirt_to_world(mat: np.ndarray, src_affine, src_shape, src_zooms, ref_affine, ref_shape, ref_zooms) -> np.ndarray:
    """The same transform as a world (source mm -> reference mm) matrix."""
    s_src = fsl_scaled_voxel(src_affine, src_shape, src_zooms)
    s_ref = fsl_scaled_voxel(ref_affine, ref_shape, ref_zooms)
    return np.asarray(ref_affine, float) @ np.linalg.inv(s_ref) @ np.asarray(mat, float) @ s_src @ np.linalg.inv(np.asarray(src_affine, float))


def world_to_flirt(world: np.ndarray, src_affine, src_shape, src_zooms, ref_affine, ref_shape, ref_zooms) -> np.ndarray:
    """Inverse of :func:`flirt_to_world`: a world (source mm -> reference mm) matrix as a FLIRT matrix."""
    s_src = fsl_scaled_voxel(src_affine, src_shape, src_zooms)
    s_ref = fsl_scaled_voxel(ref_affine, ref_shape, ref_zooms)
    return s_ref @ np.linalg.inv(np.asarray(ref_affine, float)) @ np.asarray(world, float) @ np.asarray(src_affine, float) @ np.linalg.inv(s_src)
