"""The real MNI152 brain template (ICBM 2009a, 1 mm) that nilearn ships inside its package.

nilearn is an optional dependency (extra ``sim``). The template files are read straight from the
package with nibabel (no download; importing ``nilearn.datasets`` alone takes seconds), falling back
to ``nilearn.datasets.load_mni152_*`` when the files moved in another nilearn version.

The template is returned on its own 1 mm grid (197 x 233 x 189, origin (-98, -134, -72)),
smoothed for the target voxel size so that sampling it at a coarse grid does not alias; the
simulator samples it through each person's deformation directly at the target grid's points,
so there is a single interpolation per volume.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_LOADERS = {"t1": "load_mni152_template", "gm": "load_mni152_gm_template", "wm": "load_mni152_wm_template"}


@dataclass
class Template:
    """Template channels on the template's 1 mm grid.

    data: (3, X, Y, Z) float32 channels: T1 (0-1), GM probability, brain (GM + WM + CSF).
    affine: (4, 4) voxel -> RAS mm of the template grid (1 mm, or a multiple of it for coarse
    targets).
    brain: (X, Y, Z) float32 brain mask (GM + WM + CSF), 0-1.
    """

    data: np.ndarray
    affine: np.ndarray
    brain: np.ndarray

    CHANNELS = ("t1", "gm", "brain")


def _nilearn_data_dir() -> Path | None:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / "data"


def _load_raw() -> tuple[dict[str, np.ndarray], np.ndarray]:
    import nibabel as nib

    d = _nilearn_data_dir()
    if d is None:
        from gimtool.errors import GimtoolError

        raise GimtoolError("simulating images needs nilearn (it ships the MNI152 template): pip install 'gimtool[sim]'")
    out, affine = {}, None
    for name, fname in _FILES.items():
        p = d / fname
        if p.is_file():
            img = nib.load(p)
            arr = np.asarray(img.dataobj, dtype=np.float32)
        else:  # pragma: no cover - other nilearn layouts
            from nilearn import datasets

            img = getattr(datasets, _LOADERS[name])(resolution=1)
            arr = np.asarray(img.dataobj, dtype=np.float32)
        out[name] = arr / max(float(arr.max()), 1e-6)
        affine = img.affine
    return out, np.asarray(affine, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def load_template(voxel: float = 1.0) -> Template:
    """The template, smoothed for sampling at `voxel` mm (Gaussian, FWHM ~ sqrt(voxel² - 1) mm)."""
    from scipy.ndimage import gaussian_filter

    raw, affine = _load_raw()
    gm, wm, t1 = raw["gm"], raw["wm"], raw["t1"]
    # nilearn's T1 is skull-stripped: voxels with T1 signal but little GM/WM are CSF
    brain = np.clip(np.maximum(t1 > 0.02, 0) * 1.0, 0, 1).astype(np.float32)
    tissue = gm + wm
    scale = np.where(tissue > 1, 1 / np.maximum(tissue, 1e-6), 1.0)
    gm, wm = gm * scale, wm * scale
    data = np.stack([t1, gm]).astype(np.float32)
    # anti-aliasing for a coarse target: a box average over k^3 voxels (k = voxel // 2), then the
    # Gaussian that brings the total blur to FWHM ~ sqrt(voxel^2 - 1) mm, on the k-times smaller
    # grid; sampling that grid loses nothing and is much faster than sampling the 1 mm one
    k = max(1, int(voxel // 2))
    chans = np.concatenate([data, brain[None]])
    if k > 1:
        X, Y, Z = (s - s % k for s in chans.shape[1:])
        c = chans[:, :X, :Y, :Z].reshape(chans.shape[0], X // k, k, Y // k, k, Z // k, k).mean(axis=(2, 4, 6))
        # the box's centre sits half a box in from the first voxel it averages
        affine = affine @ np.array([[k, 0, 0, (k - 1) / 2], [0, k, 0, (k - 1) / 2], [0, 0, k, (k - 1) / 2], [0, 0, 0, 1.0]])
        chans = c.astype(np.float32)
    if voxel > 1.0:
        sigma_mm2 = (voxel**2 - 1.0) / 2.355**2 - (k**2 - 1) / 12.0
        if sigma_mm2 > 0:
            sigma = np.sqrt(sigma_mm2) / k
            chans = np.stack([gaussian_filter(ch, sigma, truncate=3.0) for ch in chans]).astype(np.float32)
    return Template(data=np.ascontiguousarray(chans), affine=affine, brain=np.ascontiguousarray(chans[2]))


# Region centres (RAS mm, MNI) for factor effects: the structures imaging GWAS report most.
REGIONS = {
    "hippocampus_L": (-26, -22, -14),
    "hippocampus_R": (26, -22, -14),
    "putamen_L": (-25, 2, 2),
    "putamen_R": (25, 2, 2),
    "thalamus_L": (-11, -18, 8),
    "thalamus_R": (11, -18, 8),
    "caudate_L": (-13, 12, 10),
    "caudate_R": (13, 12, 10),
    "lateral_ventricles": (0, -8, 18),
    "cerebellum_L": (-25, -62, -32),
    "cerebellum_R": (25, -62, -32),
    "brainstem": (0, -26, -30),
    "frontal_L": (-30, 42, 20),
    "frontal_R": (30, 42, 20),
    "occipital_L": (-18, -88, 6),
    "occipital_R": (18, -88, 6),
    "cingulate": (0, 14, 34),
    "precuneus": (0, -60, 42),
    "insula_L": (-38, 2, 4),
    "insula_R": (38, 2, 4),
    "temporal_L": (-54, -22, -8),
    "temporal_R": (54, -22, -8),
}
