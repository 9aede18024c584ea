"""Target grids in MNI space (the FSL MNI152 grids that UK Biobank's T1 pipeline uses).

FSL's MNI152 1 mm grid is 182 x 218 x 182 and its 2 mm grid 91 x 109 x 91. FSL stores x
right-to-left: its first voxel is at (+90, -126, -72) mm and x steps by -voxel (sform row
``-1 0 0 90`` at 1 mm, so x runs 90 .. -91 at 1 mm and 90 .. -90 at 2 mm). gimtool stores
volumes in RAS+ voxel order (x step positive): the very same voxel centres, x reversed, as
nibabel and viewers show them; the first voxel is then at (90 - (nx - 1) * voxel, -126, -72),
i.e. x = -91 at 1 mm and -90 at 2 mm. A grid of any voxel size keeps FSL's +90 / -126 / -72
anchors and covers the 1 mm grid's field of view (4 mm: 46 x 55 x 46).
"""

from __future__ import annotations

import math

import numpy as np

# FSL's first-voxel centre (x is stored right-to-left there, so this is the right-most x)
FSL_ORIGIN_MM = (90.0, -126.0, -72.0)
FOV_SHAPE_1MM = (182, 218, 182)


def mni_grid(voxel: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, affine) of the MNI152 grid at `voxel` mm, covering the 1 mm grid's field of view.

    The affine maps voxel indices (i, j, k) to RAS mm. At 2 mm this is FSL's 91 x 109 x 91 grid.
    """
    if voxel <= 0:
        raise ValueError(f"voxel size must be positive, got {voxel}")
    shape = tuple(int(math.ceil(s / voxel)) for s in FOV_SHAPE_1MM)
    # RAS order reverses FSL's x axis: the first RAS voxel is FSL's last one along x
    origin = np.array([FSL_ORIGIN_MM[0] - (shape[0] - 1) * voxel, FSL_ORIGIN_MM[1], FSL_ORIGIN_MM[2]])
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = origin
    return shape, affine  # type: ignore[return-value]
