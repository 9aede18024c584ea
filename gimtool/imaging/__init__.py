"""Image kernels for prep-mri: geometry (affine and FSL FLIRT voxel maps), resampling onto a
target grid, intensity normalisation and QC metrics. Arrays in, arrays out: no paths, no printing.

Conventions: a volume is a float32 array (X, Y, Z) in its own voxel order; an affine maps voxel
indices (i, j, k, 1) to RAS mm; a *voxel map* is the 4x4 matrix taking target-grid voxel indices
to source voxel indices, which is what resampling needs.
"""
