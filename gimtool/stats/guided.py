"""Genotype-guided readout: the directions of a representation that carry association with the
genotypes, fit on one set of people and applied to any (`gimtool pcs --guided-by`).

Why. The paper's readout, the top PCs of z, keeps the directions of largest variance. On
simulated cohorts the genetic signal in z is spread over many low-variance directions: z holds
ridge R^2 0.59-0.64 of the true genetic values, its top 10 PCs (99 % of its variance) only
0.19-0.26 (issue 14's audit). This readout ranks directions by association with the genotypes
instead, so gains from training are not confused with what a variance readout happens to keep.

How (a thresholded reduced-rank regression of the genotypes on z):
  1. centre z on the fit people, regress out covariates if given, and whiten it:
     Zw = Zc U diag(lambda)^-1/2 (n, q), so Zw' Zw = n I. Directions of negligible variance
     (lambda < 1e-8 max) are dropped.
  2. for every SNP j, standardized genotypes g_j (n,): b_j = Zw' g_j / n (q,) is its regression
     on whitened z and R2_j = |b_j|^2 / var(g_j) its multiple R^2; F = (R2 / q) / ((1 - R2) / (n - q - 1))
     tests it against no association.
  3. M = sum over SNPs with P(F) < p_threshold of b_j b_j' (q, q); its top-k eigenvectors V are
     the readout, W = U diag(lambda)^-1/2 V in z's coordinates. Scores have variance 1 on the fit
     people. When fewer than k directions carry selected SNPs, the rest are the leading PCs of z
     orthogonal to them (a small variance-ordered term added to M breaks the tie).
  4. rotation = "varimax" (`pcs --guided-rotation varimax`): the directions that carry selected
     SNPs are rotated within their span so that each selected SNP loads on as few of them as possible (Kaiser's
     varimax on the SNPs' loadings V' b_j), then ordered by their sum of squares. The span, the
     unit variance and the zero covariance of the scores are unchanged; what changes is that each
     direction follows one group of loci instead of a mix, so that a GWAS of each score has the
     power of that group alone. The top eigenvectors of M mix a weak factor's loci into the
     directions of strong ones. Measured (benchmarks/results/guided_rotation.md, Table 1's 8
     readouts of each cohort): on cpu-large the rotated 10 find more true loci in 7 of 8 rows
     (82 -> 102 in all), on brainlike fewer in 5 of 8 (59 -> 53), likely because noise SNPs that
     pass the threshold each pull a direction (not measured). Over every finished run of both
     cohorts it gained on balance (README, "Rotating the guided directions"), and `pcs` rotates by
     default since 2026-12-03 (pipelines.pcs.GUIDED_ROTATION).
     rotation = "none" (this function's default): the eigenvectors as they are.
The fit people's genotypes are all it sees: test people never shape the readout, so a GWAS of
the scores on them is as valid as one of PCs fit on the training people.

Arrays are samples x features; no files, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

_TIE_BREAK = 1e-6  # weight of the variance-ordered term relative to trace(M)
ROTATIONS = ("none", "varimax")


def varimax(loadings: np.ndarray, max_iter: int = 500, tol: float = 1e-10) -> np.ndarray:
    """The orthogonal rotation R (k, k) that maximizes the varimax criterion of loadings @ R
    (p, k): the summed variance over columns of the squared loadings (Kaiser 1958; the usual SVD
    iteration)."""
    p, k = loadings.shape
    R = np.eye(k)
    crit = 0.0
    for _ in range(max_iter):
        L = loadings @ R
        u, sv, vt = np.linalg.svd(loadings.T @ (L ** 3 - L * ((L ** 2).sum(0) / p)))
        R = u @ vt
        if sv.sum() <= crit * (1 + tol):
            break
        crit = sv.sum()
    return R


@dataclass
class GuidedFit:
    """mean (d,), components (k, d) (scores = (x - mean) @ components.T), eigenvalues (k,) of M,
    explained (k,) = share of trace(M), and what the fit used: selected / tested SNPs, dims q, and
    how many directions the rotation turned (0: none)."""

    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray
    explained: np.ndarray
    n_selected: int
    n_tested: int
    q: int
    rotated: int = 0


def _residualize(x: np.ndarray, covar: np.ndarray | None) -> np.ndarray:
    x = x - x.mean(0)
    if covar is None or covar.shape[1] == 0:
        return x
    c = covar - covar.mean(0)
    beta, *_ = np.linalg.lstsq(c, x, rcond=None)
    return x - c @ beta


def fit_guided(z: np.ndarray, genotype_chunks: Iterable[np.ndarray], k: int, p_threshold: float = 1e-5,
               covar: np.ndarray | None = None, rotation: str = "none") -> GuidedFit:
    """Fit the readout on z (n, d) and standardized genotype chunks (n, m_c) of the same people
    (stats.pca.standardize_genotypes; the fit does not depend on each column's scale).

    covar (n, c): regressed out of z and of every chunk first (ancestry PCs, age, sex).
    rotation: "none" or "varimax" (step 4 above).
    """
    from scipy.stats import f as f_dist

    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation {rotation!r}: expected one of {', '.join(ROTATIONS)}")
    if k > d:
        raise ValueError(f"asked for {k} directions of a {d}-dimensional representation")
    mean = z.mean(0)
    zc = _residualize(z, covar)
    lam, U = np.linalg.eigh(zc.T @ zc / n)
    lam, U = lam[::-1], U[:, ::-1]
    keep = lam > 1e-8 * max(lam[0], 1e-300)
    lam, U = lam[keep], U[:, keep]
    q = lam.size
    if q < k or n - q - 1 < 1:
        raise ValueError(f"the representation has {q} non-degenerate directions for {n} people; need k = {k} <= q < n - 1")
    zw = zc @ (U / np.sqrt(lam))
    M = np.zeros((q, q))
    picked = []  # the selected SNPs' coefficients, for the rotation
    n_sel = n_tested = 0
    for g in genotype_chunks:
        g = _residualize(np.asarray(g, dtype=np.float64), covar)
        var = (g * g).sum(0) / n
        b = zw.T @ g / n  # (q, m)
        r2 = np.divide((b * b).sum(0), var, out=np.zeros(g.shape[1]), where=var > 0)
        F = (r2 / q) / np.maximum(1 - r2, 1e-12) * (n - q - 1)
        sel = (var > 0) & (f_dist.sf(F, q, n - q - 1) < p_threshold)
        n_tested += int((var > 0).sum())
        n_sel += int(sel.sum())
        bs = b[:, sel] / np.sqrt(var[sel])
        M += bs @ bs.T
        if rotation != "none":
            picked.append(bs)
    tr = np.trace(M)
    M += np.diag(lam / lam.sum()) * (_TIE_BREAK * tr if tr > 0 else 1.0)
    ev, V = np.linalg.eigh(M)
    ev, V = ev[::-1][:k], V[:, ::-1][:, :k]
    # rotate only the directions that carry selected SNPs, not those the tie-break term filled
    r = int((ev > 1e3 * _TIE_BREAK * tr).sum()) if tr > 0 else 0
    if rotation == "varimax" and r >= 2:
        B = np.concatenate(picked, axis=1)  # (q, selected)
        V[:, :r] = V[:, :r] @ varimax(B.T @ V[:, :r])
        ss = ((B.T @ V[:, :r]) ** 2).sum(0)  # each rotated direction's sum of squares over the SNPs
        order = np.argsort(-ss, kind="stable")
        V[:, :r] = V[:, :r][:, order]
        ev[:r] = ss[order]
    else:
        r = 0
    W = (U / np.sqrt(lam)) @ V  # (d, k)
    comps = W.T
    # sign: each direction's largest-magnitude loading positive, so fits are repeatable
    s = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    comps = comps * np.where(s == 0, 1, s)[:, None]
    explained = ev / tr if tr > 0 else np.zeros(k)
    return GuidedFit(mean, comps, ev, explained, n_sel, n_tested, q, r)
