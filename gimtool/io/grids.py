"""Target grids in MNI space (the FSL MNI152 grids that UK Biobank's T1 pipeline uses).

FSL's MNI152 1 mm grid is 182 x 218 x 182 and its 2 mm grid 91 x 109 x 91; both put the voxel at
the left-posterior-inferior corner at (-90, -126, -72) mm. FSL stores x right-to-left (affine x
step negative, origin +90); gimtool stores volumes in RAS+ voxel order (x step positive, origin
-90): the same voxels in world space, as nibabel and viewers show them. A grid of any voxel size
starts at that corner and covers the 1 mm grid's field of view (4 mm: 46 x 55 x 46).
"""

from __future__ import annotations

import math

import numpy as np

FOV_ORIGIN_MM = (-90.0, -126.0, -72.0)  # centre of the first voxel of the 1 mm grid
FOV_SHAPE_1MM = (182, 218, 182)


def mni_grid(voxel: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, affine) of the MNI152 grid at `voxel` mm, covering the 1 mm grid's field of view.

    The affine maps voxel indices (i, j, k) to RAS mm. At 2 mm this is FSL's 91 x 109 x 91 grid.
    """
    if voxel <= 0:
        raise ValueError(f"voxel size must be positive, got {voxel}")
    shape = tuple(int(math.ceil(s / voxel)) for s in FOV_SHAPE_1MM)
    origin = np.array(FOV_ORIGIN_MM)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = origin
    return shape, affine  # type: ignore[return-value]
