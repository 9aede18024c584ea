"""Brain volumes whose regional shape and intensity follow latent genetic factors.

Each person's volume is the MNI152 template sampled through a person-specific deformation, on
the target grid (:func:`gimtool.imaging.grids.mni_grid`), then given intensity effects and nuisance:

* genetic factors z (standardized, one per factor): a *volume* factor expands or contracts a
  region (smooth radial displacement), a *shape* factor moves a region's tissue along a direction,
  a *contrast* factor changes grey-matter intensity in a region (grey/white contrast);
* age (ventricle enlargement, global atrophy, lower grey/white contrast) and sex (head size left
  over after registration);
* a large non-heritable smooth deformation per person (the individual "fingerprint"), a small
  residual misregistration (rigid), a multiplicative intensity bias field, a global gain and
  noise. Background (outside the warped brain) is 0, as in skull-stripped registered T1s.

All randomness of person i comes from its own seed, so a volume does not depend on the batch
it was rendered in. Rendering is batched in torch (one ``grid_sample`` per batch).

Shapes: grid (D, H, W) = the target grid's (x, y, z) voxel axes in RAS order; batches (B, ...).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gimtool.sim.template import REGIONS, Template

FACTOR_KINDS = ("volume", "contrast", "shape")


@dataclass
class FactorSpec:
    """One latent genetic factor's image effect. strength is per SD of the factor:
    volume: radial scaling at the centre (0.15 = 15 %); contrast: relative GM intensity change;
    shape: displacement in mm at the centre."""

    name: str
    kind: str
    region: str
    centre: tuple[float, float, float]
    radius: float
    strength: float
    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NuisanceParams:
    deform_mm: float = 2.5        # RMS (per axis) of the individual smooth displacement (non-heritable)
    deform_terms: int = 4         # DCT terms per axis of that displacement (smoothness)
    misreg_mm: float = 0.7        # SD of the residual translation
    misreg_deg: float = 0.7       # SD of the residual rotation about each axis
    bias: float = 0.08            # SD of the log bias field
    gain: float = 0.05            # SD of the log global intensity gain
    noise: float = 0.025          # noise SD relative to the template's intensity range (0-1)
    age_ventricles: float = 0.10  # ventricle expansion per SD of age (radial scaling)
    age_atrophy: float = 0.01     # global shrinkage per SD of age
    age_contrast: float = 0.03    # GM intensity change per SD of age
    sex_scale: float = 0.02       # head size difference (males larger), after registration

    def to_dict(self) -> dict:
        return asdict(self)


# Major heritable factors (brainlike preset): volumes of large structures, which are among the
# largest sources of image variance and which an autoencoder captures without genotypes:
# (region, radius mm, radial scaling per SD)
MAJOR_FACTORS = (("lateral_ventricles", 30.0, 0.25), ("frontal_L", 45.0, 0.10), ("cerebellum_R", 35.0, 0.12),
                 ("occipital_R", 40.0, 0.10))


def choose_factors(n_factors: int, rng: np.random.Generator, strength_scale: float = 1.0,
                   kinds: tuple[str, ...] = FACTOR_KINDS, radius_mm: tuple[float, float] = (14.0, 22.0),
                   n_major: int = 0, minor_scale: float = 1.0) -> list[FactorSpec]:
    """Draw `n_factors` factor effects. The first `n_major` are large volume effects
    (MAJOR_FACTORS); the rest are regional: kinds cycle through `kinds`, regions drawn without
    replacement while the catalogue lasts (so regions differ, though neighbours may overlap),
    strength times `minor_scale`."""
    if n_major > min(n_factors, len(MAJOR_FACTORS)):
        raise ValueError(f"{n_major} major factors: at most {min(n_factors, len(MAJOR_FACTORS))}")
    names = [r for r in REGIONS if r not in {m[0] for m in MAJOR_FACTORS[:n_major]}]
    order = rng.permutation(len(names))
    base = {"volume": 0.15, "contrast": 0.10, "shape": 2.5}
    out = []
    for f, (region, radius, strength) in enumerate(MAJOR_FACTORS[:n_major]):
        out.append(FactorSpec(name=f"F{f + 1}", kind="volume", region=region, centre=tuple(float(c) for c in REGIONS[region]),
                              radius=radius, strength=strength * strength_scale))
    for f in range(n_major, n_factors):
        k = f - n_major
        kind = kinds[k % len(kinds)]
        region = names[order[k % len(names)]]
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        out.append(FactorSpec(
            name=f"F{f + 1}", kind=kind, region=region, centre=tuple(float(c) for c in REGIONS[region]),
            radius=float(rng.uniform(*radius_mm)), strength=base[kind] * strength_scale * minor_scale,
            direction=tuple(float(x) for x in d)))
    return out


def _dct_basis(n: int, k: int) -> np.ndarray:
    """(n, k) low-frequency cosine basis along one axis (the first term is constant)."""
    x = (np.arange(n) + 0.5) / n
    return np.stack([np.cos(math.pi * j * x) for j in range(k)], axis=1)


def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


class ImageSimulator:
    """Renders batches of volumes on a target grid.

    template: the template (its own grid). shape, affine: target grid. factors: FactorSpec list.
    """

    def __init__(self, template: Template, shape: tuple[int, int, int], affine: np.ndarray,
                 factors: list[FactorSpec], nuisance: NuisanceParams | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.factors = factors
        self.nuis = nuisance or NuisanceParams()
        self.tmpl = torch.from_numpy(template.data)[None]  # (1, 3, X, Y, Z)
        self.tmpl_shape = template.data.shape[1:]
        # world mm -> grid_sample's normalized coordinates, whose last axis runs (W, H, D) =
        # template (Z, Y, X): fold the index scaling and the axis reversal into one affine
        inv = np.linalg.inv(template.affine)[:3]
        sizes = np.array(self.tmpl_shape, dtype=np.float64)
        to_norm = (np.diag(2 / (sizes - 1)) @ inv)
        to_norm[:, 3] -= 1
        to_norm = to_norm[::-1]
        self._to_norm = torch.from_numpy(np.ascontiguousarray(to_norm[:, :3])).float(), torch.from_numpy(np.ascontiguousarray(to_norm[:, 3])).float()
        D, H, W = self.shape
        idx = np.stack(np.meshgrid(np.arange(D), np.arange(H), np.arange(W), indexing="ij"), axis=-1)
        xyz = idx @ self.affine[:3, :3].T + self.affine[:3, 3]
        self.xyz = torch.from_numpy(xyz.astype(np.float32))  # (D, H, W, 3) mm
        # centre of the brain: the point that global scalings and rotations keep fixed
        brain = template.brain
        ijk = np.argwhere(brain > 0.5).mean(axis=0)
        self.brain_centre = (template.affine[:3, :3] @ ijk + template.affine[:3, 3]).astype(np.float32)
        self._bases = [_dct_basis(n, self.nuis.deform_terms) for n in self.shape]
        self._bias_bases = [_dct_basis(n, 3) for n in self.shape]
        self._build_effects()

    # -- effect fields (fixed for a cohort) ----------------------------------------------------
    def _radial(self, centre, radius) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.xyz - torch.tensor(centre, dtype=torch.float32)
        g = torch.exp(-(d * d).sum(-1) / (2 * radius**2))
        return d, g

    def _build_effects(self) -> None:
        disp, gain = [], []
        for f in self.factors:
            d, g = self._radial(f.centre, f.radius)
            if f.kind == "volume":
                # sampling the template nearer the centre makes the region look larger
                disp.append(-f.strength * d * g[..., None])
                gain.append(torch.zeros(self.shape))
            elif f.kind == "shape":
                disp.append(-f.strength * g[..., None] * torch.tensor(f.direction, dtype=torch.float32))
                gain.append(torch.zeros(self.shape))
            elif f.kind == "contrast":
                disp.append(torch.zeros(self.shape + (3,)))
                gain.append(f.strength * g)
            else:
                raise ValueError(f"factor kind must be one of {FACTOR_KINDS}, got {f.kind!r}")
        n = self.nuis
        dv, gv = self._radial(REGIONS["lateral_ventricles"], 18.0)
        self.age_disp = -n.age_ventricles * dv * gv[..., None]  # (D, H, W, 3)
        self.factor_disp = torch.stack(disp) if disp else torch.zeros((0,) + self.shape + (3,))  # (F, D, H, W, 3)
        self.factor_gain = torch.stack(gain) if gain else torch.zeros((0,) + self.shape)  # (F, D, H, W)

    def factor_masks(self, threshold: float = 0.1) -> np.ndarray:
        """(F, D, H, W) bool: where each factor changes the image by at least `threshold` of its
        largest change (displacement magnitude or intensity gain), inside the brain."""
        brain = self.template_on_grid()[2] > 0.5
        out = []
        for f in range(len(self.factors)):
            mag = self.factor_disp[f].norm(dim=-1) + self.factor_gain[f].abs()
            m = (mag >= threshold * mag.max()).numpy() & brain
            out.append(m)
        return np.stack(out) if out else np.zeros((0,) + self.shape, dtype=bool)

    def template_on_grid(self) -> np.ndarray:
        """(3, D, H, W) template channels (T1, GM, brain) on the target grid, no deformation."""
        return self._sample(self.xyz[None])[0].numpy()

    @staticmethod
    def _dct_power(fall: np.ndarray) -> float:
        """Mean square over the grid of a field with unit-variance coefficients times `fall`: a
        cosine term averages to 1/2 in square along each axis where it is not constant."""
        k = np.arange(fall.shape[0])
        half = np.where(k > 0, 0.5, 1.0)
        w = half[:, None, None] * half[None, :, None] * half[None, None, :]
        return float((fall**2 * w).sum()) + 1e-12

    # -- rendering -----------------------------------------------------------------------------
    def _sample(self, pts: torch.Tensor) -> torch.Tensor:
        """Sample the template at world points pts (B, D, H, W, 3) mm -> (B, 3, D, H, W)."""
        A, t = self._to_norm
        grid = pts @ A.T + t
        B = pts.shape[0]
        D, H, W = pts.shape[1:4]
        grid = grid.reshape(1, B * D, H, W, 3)
        out = F.grid_sample(self.tmpl, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.reshape(out.shape[1], B, D, H, W).transpose(0, 1)

    def render(self, z: np.ndarray, age_z: np.ndarray, male: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Volumes (B, D, H, W) float32 for B people.

        z: (B, F) factor values (standardized). age_z: (B,) standardized age. male: (B,) 0/1.
        seeds: (B,) per-person seeds for all non-genetic randomness.
        """
        B = len(seeds)
        n = self.nuis
        z_t = torch.as_tensor(np.asarray(z, dtype=np.float32).reshape(B, len(self.factors)))
        age_t = torch.as_tensor(np.asarray(age_z, dtype=np.float32))
        # per-person random draws (numpy, seeded per person: independent of batching)
        coef = np.empty((B, 3) + (n.deform_terms,) * 3, dtype=np.float32)
        bias = np.empty((B,) + (3,) * 3, dtype=np.float32)
        affs = np.empty((B, 3, 4), dtype=np.float32)
        gains = np.empty(B, dtype=np.float32)
        noise_seeds = np.empty(B, dtype=np.int64)
        c = self.brain_centre.astype(np.float64)
        for b in range(B):
            rng = np.random.default_rng(int(seeds[b]))
            k = np.arange(n.deform_terms)
            # amplitude falls with frequency; the constant term is a translation, left to misreg
            fall = 1.0 / (1.0 + k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
            fall[0, 0, 0] = 0.0
            cf = rng.standard_normal((3,) + fall.shape) * fall
            cf *= n.deform_mm / math.sqrt(self._dct_power(fall))
            coef[b] = cf
            bf = rng.standard_normal((3, 3, 3)) * n.bias / 3
            bf[0, 0, 0] = 0.0
            bias[b] = bf
            R = _rotation(np.deg2rad(rng.standard_normal(3) * n.misreg_deg))
            s = 1.0 - n.sex_scale * (float(male[b]) - 0.5) + n.age_atrophy * float(age_z[b])
            M = R * s  # maps a subject point to the template point sampled there
            shift = rng.standard_normal(3) * n.misreg_mm
            affs[b, :, :3] = M
            affs[b, :, 3] = c - M @ c + shift
            gains[b] = math.exp(rng.standard_normal() * n.gain)
            noise_seeds[b] = rng.integers(0, 2**62)
        bx, by, bz = (torch.from_numpy(x.astype(np.float32)) for x in self._bases)
        u = torch.einsum("bcijk,xi,yj,zk->bxyzc", torch.from_numpy(coef), bx, by, bz)  # (B, D, H, W, 3)
        u = u + torch.einsum("bf,fxyzc->bxyzc", z_t, self.factor_disp)
        u = u + age_t[:, None, None, None, None] * self.age_disp
        p = self.xyz[None] + u
        aff = torch.from_numpy(affs)
        p = torch.einsum("bxyzc,bdc->bxyzd", p, aff[:, :, :3]) + aff[:, None, None, None, :, 3]
        ch = self._sample(p)  # (B, 3, D, H, W)
        t1, gm, brain = ch[:, 0], ch[:, 1], ch[:, 2]
        g = torch.einsum("bf,fxyz->bxyz", z_t, self.factor_gain) - n.age_contrast * age_t[:, None, None, None]
        img = t1 * (1 + g * gm)
        cx, cy, cz = (torch.from_numpy(x.astype(np.float32)) for x in self._bias_bases)
        logb = torch.einsum("bijk,xi,yj,zk->bxyz", torch.from_numpy(bias), cx, cy, cz)
        img = img * torch.exp(logb) * torch.from_numpy(gains)[:, None, None, None]
        out = img.numpy()
        for b in range(B):
            rng = np.random.default_rng(int(noise_seeds[b]))
            out[b] += rng.standard_normal(self.shape, dtype=np.float32) * n.noise
        out *= (brain.numpy() > 0.5)
        return out
