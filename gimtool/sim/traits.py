"""Quantitative traits with a chosen heritability on given genotypes.

``y = Xs·β + e`` with Xs the standardized genotypes of the causal SNPs. The genetic part is
scaled so that its variance *in the sample* is exactly h2 (as GCTA's --simu-qt does), and the
noise is drawn with variance 1 − h2, so the realized heritability differs from h2 only by the
sampling error of the noise (about sqrt(2·h2·(1−h2)/N)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass
class SimulatedTraits:
    """values: (n_samples, n_traits) float64 phenotypes (mean 0, variance ~1).
    genetic: (n_samples, n_traits) genetic components (variance h2 in the sample).
    causal: list over traits of SNP column indices (into G) of the causal SNPs.
    betas: list over traits of per-allele effects (per copy of the counted allele, on the
    phenotype's scale), aligned with `causal`.
    h2: (n_traits,) requested heritabilities.
    """

    values: np.ndarray
    genetic: np.ndarray
    causal: list[np.ndarray]
    betas: list[np.ndarray]
    h2: np.ndarray

    def causal_table(self, bim: pl.DataFrame | None = None, names: list[str] | None = None) -> pl.DataFrame:
        """One row per (trait, causal SNP): TRAIT INDEX BETA (+ SNP CHR BP when `bim` is given)."""
        names = names or [f"T{t + 1}" for t in range(len(self.causal))]
        rows = {"TRAIT": [], "INDEX": [], "BETA": []}
        for t, (idx, b) in enumerate(zip(self.causal, self.betas)):
            rows["TRAIT"] += [names[t]] * len(idx)
            rows["INDEX"] += [int(i) for i in idx]
            rows["BETA"] += [float(x) for x in b]
        df = pl.DataFrame(rows, schema={"TRAIT": pl.Utf8, "INDEX": pl.Int64, "BETA": pl.Float64})
        if bim is not None:
            sub = bim[df["INDEX"].to_numpy()].select("SNP", "CHR", "BP")
            df = pl.concat([sub, df], how="horizontal")
        return df


def pick_distinct_loci(bim: pl.DataFrame, n: int, rng: np.random.Generator, min_distance_bp: int = 1_000_000,
                       maf: np.ndarray | None = None, min_maf: float = 0.05, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of `n` SNPs at least `min_distance_bp` apart (same chromosome), MAF >= `min_maf` when
    `maf` is given, avoiding the positions of the SNP indices in `exclude`. Raises ValueError when
    the genome is too short to hold them.
    """
    chrom = bim["CHR"].to_numpy().astype(str)
    bp = bim["BP"].to_numpy()
    ok = np.ones(bim.height, dtype=bool) if maf is None else (maf >= min_maf)
    taken_chr = list(chrom[exclude]) if exclude is not None else []
    taken_bp = list(bp[exclude]) if exclude is not None else []
    chosen: list[int] = []
    for i in rng.permutation(np.flatnonzero(ok)):
        if len(chosen) == n:
            break
        if any(c == chrom[i] and abs(b - bp[i]) < min_distance_bp for c, b in zip(taken_chr, taken_bp)):
            continue
        chosen.append(int(i))
        taken_chr.append(chrom[i])
        taken_bp.append(bp[i])
    if len(chosen) < n:
        raise ValueError(
            f"cannot place {n} causal loci {min_distance_bp / 1e6:g} Mb apart on this genome "
            f"(placed {len(chosen)}); use fewer causal loci or longer chromosomes"
        )
    return np.array(sorted(chosen), dtype=np.int64)


def _standardize(G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = G.astype(np.float64)
    X[G < 0] = np.nan  # missing genotypes (int8 -127)
    mu = np.nanmean(X, axis=0)
    sd = np.nanstd(X, axis=0)
    sd[sd == 0] = 1.0
    Xs = (X - mu) / sd
    Xs[np.isnan(Xs)] = 0.0
    return Xs, mu, sd


def _weighted_sum(Xs: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Xs (n, k) @ b (k,), summed column by column in index order.

    Not `Xs @ b`: BLAS picks its kernel (and so its summation order and rounding) from the CPU
    and thread count at run time, so the same seed gave different factor values, and through
    the scale different betas, on different machines (issue 3). Elementwise multiply and add
    round the same everywhere, so this is bit-for-bit reproducible.
    """
    g = np.zeros(Xs.shape[0])
    for j in range(Xs.shape[1]):
        g += Xs[:, j] * b[j]
    return g


def simulate_traits(
    G: np.ndarray,
    h2: float | list[float] | np.ndarray,
    n_causal: int | None = 10,
    n_traits: int = 1,
    seed: int | np.random.Generator = 0,
    causal: list[np.ndarray] | None = None,
    effect_weights: list[np.ndarray] | None = None,
    alpha: float = 0.0,
) -> SimulatedTraits:
    """Simulate `n_traits` quantitative traits on genotypes G (n_samples, n_snps), int8 counts.

    h2: one value or one per trait. n_causal: causal SNPs per trait, drawn at random (None = all
    SNPs: an infinitesimal, polygenic trait). `causal` (list of index arrays) fixes the causal SNPs
    instead; `effect_weights` (same shapes) fixes the relative variance each one explains
    (otherwise effects are N(0, 1) on the standardized scale). alpha: the effect-size/MAF coupling
    of LDAK/GCTA (0 = standardized effects independent of MAF; -1 = equal per-allele effects).
    """
    G = np.asarray(G)
    if G.ndim != 2:
        raise ValueError(f"G must be samples x SNPs, got shape {G.shape}")
    n, m = G.shape
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    h2v = np.broadcast_to(np.asarray(h2, dtype=np.float64), (n_traits,)).copy()
    if np.any((h2v < 0) | (h2v > 1)):
        raise ValueError(f"h2 must be in [0, 1], got {h2v}")
    if causal is None:
        if n_causal is None:
            causal = [np.arange(m)] * n_traits
        else:
            if n_causal > m:
                raise ValueError(f"n_causal={n_causal} exceeds the number of SNPs ({m})")
            causal = [np.sort(rng.choice(m, size=n_causal, replace=False)) for _ in range(n_traits)]
    if len(causal) != n_traits:
        raise ValueError(f"got causal SNPs for {len(causal)} traits, expected {n_traits}")

    values = np.empty((n, n_traits))
    genetic = np.empty((n, n_traits))
    betas = []
    for t, idx in enumerate(causal):
        idx = np.asarray(idx, dtype=np.int64)
        if effect_weights is not None:
            b = np.sqrt(np.asarray(effect_weights[t], float)) * rng.choice([-1.0, 1.0], size=idx.size)
        else:
            b = rng.standard_normal(idx.size)
        g = np.zeros(n)
        sd = np.empty(idx.size)
        for a in range(0, idx.size, 4096):  # chunks keep memory bounded for all-SNP traits
            Xs, mu_c, sd_c = _standardize(G[:, idx[a : a + 4096]])
            bc = b[a : a + 4096]
            if alpha != 0.0:
                p = mu_c / 2
                bc = bc * (2 * p * (1 - p) + 1e-12) ** (alpha / 2) * sd_c
                b[a : a + 4096] = bc
            g += _weighted_sum(Xs, bc)
            sd[a : a + 4096] = sd_c
        g_mean = math.fsum(g) / n
        gsd = math.sqrt(math.fsum((g - g_mean) ** 2) / n)
        scale = np.sqrt(h2v[t]) / gsd if gsd > 0 else 0.0
        g = (g - g_mean) * scale
        e = rng.standard_normal(n) * np.sqrt(1 - h2v[t])
        genetic[:, t] = g
        values[:, t] = g + e
        betas.append(b * scale / sd)  # per copy of the counted allele
    return SimulatedTraits(values=values, genetic=genetic, causal=list(causal), betas=betas, h2=h2v)
