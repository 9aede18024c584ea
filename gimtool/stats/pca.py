"""Principal components: of embeddings (fit on one sample set, applied to any) and of genotypes
(ancestry PCs from the standardized genotype matrix, exact or randomized), plus LD pruning.

Arrays are samples × features (or samples × SNPs). No files, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from gimtool.conventions import MISSING_INT8


# -- embeddings -------------------------------------------------------------------------------

@dataclass
class PcaFit:
    """mean (d,), components (k, d) with unit rows, eigenvalues (k,) = variance along each
    component (ddof 1), explained (k,) = share of the total variance."""

    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray
    explained: np.ndarray


def _fix_signs(comps: np.ndarray) -> np.ndarray:
    """Each component's largest-magnitude loading positive, so fits are repeatable."""
    idx = np.argmax(np.abs(comps), axis=1)
    s = np.sign(comps[np.arange(len(comps)), idx])
    s[s == 0] = 1
    return comps * s[:, None]


def fit_pca(x: np.ndarray, k: int) -> PcaFit:
    """PCA of x (n, d), centered (not scaled), by SVD. Needs n ≥ 2 and k ≤ min(n, d)."""
    x = np.asarray(x, dtype=np.float64)
    assert x.ndim == 2, f"x must be (n, d), got {x.shape}"
    n, d = x.shape
    if k > min(n, d):
        raise ValueError(f"asked for {k} components from {n} samples x {d} features; at most {min(n, d)}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    ev = s**2 / max(n - 1, 1)
    total = ev.sum()
    comps = _fix_signs(vt[:k])
    return PcaFit(mean, comps, ev[:k], ev[:k] / total if total > 0 else np.zeros(k))


def apply_pca(x: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Scores (n, k) of x (n, d) on fitted components (k, d)."""
    x = np.asarray(x, dtype=np.float64)
    assert x.shape[1] == components.shape[1] == mean.shape[0], (x.shape, components.shape, mean.shape)
    return (x - mean) @ components.T


# -- genotypes --------------------------------------------------------------------------------

def standardize_genotypes(g: np.ndarray, freq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(g − 2f) / sqrt(2f(1−f)) with missing calls set to 0 (the mean); monomorphic SNPs → 0.

    g: (n, m) int8 counts with MISSING_INT8 (or float with NaN). Returns (x (n, m) float64, f (m,)).
    """
    gf = g.astype(np.float64)
    miss = (g == MISSING_INT8) if g.dtype == np.int8 else np.isnan(gf)
    gf[miss] = np.nan
    if freq is None:
        with np.errstate(invalid="ignore"):
            freq = np.nanmean(gf, axis=0) / 2.0
    sd = np.sqrt(2.0 * freq * (1.0 - freq))
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (gf - 2.0 * freq) / sd
    x[~np.isfinite(x)] = 0.0
    return x, freq


def grm_pca(chunks: Iterable[np.ndarray], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA through the n × n relationship matrix K = X Xᵀ / m accumulated over SNP chunks.

    chunks: standardized (n, m_c) arrays. Returns eigenvectors (n, k), unit norm, and eigenvalues
    (k,) of K, largest first (the quantities of `plink2 --pca`). Memory O(n²).
    """
    kmat = np.zeros((n, n))
    m = 0
    for x in chunks:
        assert x.shape[0] == n
        kmat += x @ x.T
        m += x.shape[1]
    kmat /= max(m, 1)
    w, v = np.linalg.eigh(kmat)
    order = np.argsort(w)[::-1][:k]
    return _fix_signs(v[:, order].T).T, w[order]


def randomized_pca(
    chunks: Callable[[], Iterable[np.ndarray]], n: int, k: int, rng: np.random.Generator,
    oversample: int = 20, n_iter: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenpairs of K = X Xᵀ / m by randomized subspace iteration (Halko et al. 2011).

    `chunks()` yields the standardized (n, m_c) SNP chunks anew on each call; each iteration is
    one pass over the genotypes and memory is O(n (k + oversample)).
    """
    ell = k + oversample
    q = np.linalg.qr(rng.standard_normal((n, ell)))[0]
    m = 0
    for it in range(n_iter + 1):
        y = np.zeros((n, ell))
        m = 0
        for x in chunks():
            y += x @ (x.T @ q)
            m += x.shape[1]
        if it < n_iter:
            q = np.linalg.qr(y)[0]
    # Rayleigh-Ritz on the final basis: K q ≈ y / m
    qf = np.linalg.qr(y)[0]
    b = np.zeros((ell, ell))
    for x in chunks():
        t = x.T @ qf
        b += t.T @ t
    b /= max(m, 1)
    w, v = np.linalg.eigh(b)
    order = np.argsort(w)[::-1][:k]
    vecs = qf @ v[:, order]
    return _fix_signs(vecs.T).T, w[order]


def prune_window(x: np.ndarray, r2_max: float, maf: np.ndarray, removed: np.ndarray) -> None:
    """Greedy pruning inside one window: while a pair of kept SNPs has r² > r2_max, remove the one
    with the lower MAF (the later one on ties). x: (n, w) standardized; `removed` (w,) updated."""
    idx = np.flatnonzero(~removed)
    if len(idx) < 2:
        return
    xs = x[:, idx]
    norms = np.sqrt((xs * xs).sum(0))
    norms[norms == 0] = 1.0
    r = (xs.T @ xs) / np.outer(norms, norms)
    r2 = r * r
    np.fill_diagonal(r2, 0.0)
    alive = np.ones(len(idx), dtype=bool)
    while True:
        sub = r2[np.ix_(alive, alive)]
        if sub.size == 0 or sub.max() <= r2_max:
            break
        a_idx = np.flatnonzero(alive)
        i, j = np.unravel_index(np.argmax(sub), sub.shape)
        i, j = a_idx[min(i, j)], a_idx[max(i, j)]
        drop = i if maf[idx[i]] < maf[idx[j]] else j
        alive[drop] = False
    removed[idx[~alive]] = True


def ld_prune(
    read: Callable[[int, int], np.ndarray], chrom: np.ndarray, maf: np.ndarray, window: int, step: int,
    r2_max: float, block: int = 4096,
) -> np.ndarray:
    """PLINK-style `--indep-pairwise window step r2` (window and step in SNPs), per chromosome.

    read(a, b) returns standardized genotypes (n, b − a) of SNPs a..b−1; maf (m,) breaks ties
    (the rarer SNP of a correlated pair goes). Returns a keep mask (m,). Genotypes are read in
    blocks of `block` SNPs plus one window of overlap, so memory is O(n · block).
    """
    m = len(chrom)
    assert len(maf) == m
    removed = np.zeros(m, dtype=bool)
    bounds = np.flatnonzero(np.r_[True, chrom[1:] != chrom[:-1], True])
    for c0, c1 in zip(bounds[:-1], bounds[1:]):
        cache_a, cache_b, cache = -1, -1, None
        for a in range(c0, c1, step):
            b = min(a + window, c1)
            if cache is None or b > cache_b:
                cache_a, cache_b = a, min(c1, a + max(block, window))
                cache = read(cache_a, cache_b)
            sub = removed[a:b].copy()
            prune_window(cache[:, a - cache_a : b - cache_a], r2_max, maf[a:b], sub)
            removed[a:b] = sub
            if b == c1:
                break
    return ~removed
