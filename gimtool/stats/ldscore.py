"""LD scores (Bulik-Sullivan et al. 2015) from reference genotypes, computed in blocks.

The LD score of SNP j is l_j = sum over SNPs k within the window of j (j itself included) of
the bias-corrected squared correlation r2_jk - (1 - r2_jk) / (n - 2), as LDSC v1 computes it:
genotypes are mean-imputed, centred and scaled by their (ddof=0) standard deviation, and the
window holds every SNP k of the same chromosome with |pos_k - pos_j| <= the window width (cM or bp).

Kernels here take arrays; the streaming driver takes a column reader (a callable) so that it never
sees a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gimtool.conventions import MISSING_INT8


def window_bounds(coords: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows on one chromosome: SNP i sees SNPs left[i] <= k < right[i].

    coords: shape (m,), non-decreasing positions (cM or bp). k is in the window of i when
    |coords[k] - coords[i]| <= max_dist.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 1:
        raise ValueError(f"coords must be 1-D, got shape {coords.shape}")
    if np.any(np.diff(coords) < 0):
        raise ValueError("coords must be sorted")
    left = np.searchsorted(coords, coords - max_dist, side="left")
    right = np.searchsorted(coords, coords + max_dist, side="right")
    return left.astype(np.int64), right.astype(np.int64)


def ldsc_windows(coords: np.ndarray, max_dist: float, chunk: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The windows LDSC v1 actually sums over (its `--chunk-size`, default 50).

    LDSC processes SNPs in chunks of `chunk` and, for a SNP k, pairs it with every SNP from the
    window start of k's chunk start, rounded out to whole chunks; SNPs before the first whose exact
    window leaves SNP 0 behind (rounded up to a chunk) pair with all earlier SNPs. A pair (i < k)
    is counted iff i >= Lr[k]; Lr is non-decreasing, so every SNP's partners form one contiguous
    window [left, right). chunk=1 gives the exact windows of :func:`window_bounds`.
    """
    coords = np.asarray(coords, dtype=np.float64)
    m = len(coords)
    exact_left, _ = window_bounds(coords, max_dist)
    lr = np.zeros(m, dtype=np.int64)
    nz = np.flatnonzero(exact_left > 0)
    b0 = int(np.ceil((nz[0] if len(nz) else m) / chunk) * chunk)
    if b0 < m:
        k = np.arange(b0, m)
        start = (k // chunk) * chunk
        width = np.ceil((start - exact_left[start]) / chunk).astype(np.int64) * chunk
        lr[b0:] = start - width
    right = np.searchsorted(lr, np.arange(m), side="right").astype(np.int64)
    return lr, right


def standardize(G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean-impute, centre and scale genotype columns as LDSC does.

    G: shape (n, m), float with NaN for missing (or int8 with -127). Returns (Z float32 (n, m),
    freq (m,) = frequency of the counted allele among non-missing, sd (m,) of the imputed column,
    ddof=0). Columns with sd == 0 are left as zeros.
    """
    G = np.asarray(G)
    if G.dtype == np.int8:
        X = G.astype(np.float32)
        X[G == MISSING_INT8] = np.nan
    else:
        X = G.astype(np.float32, copy=True)
    miss = np.isnan(X)
    cnt = (~miss).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, np.nansum(X, axis=0, dtype=np.float64) / np.maximum(cnt, 1), 0.0)
    X[miss] = np.broadcast_to(mean.astype(np.float32), X.shape)[miss]
    X -= mean.astype(np.float32)
    # variance of the imputed column over all n (imputed entries contribute 0)
    sd = np.sqrt(np.einsum("ij,ij->j", X, X, dtype=np.float64) / X.shape[0])
    scale = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0).astype(np.float32)
    X *= scale
    return X, mean / 2.0, sd


def unbiased_r2(r: np.ndarray, n: int) -> np.ndarray:
    """LDSC's bias-corrected r^2: r^2 - (1 - r^2) / (n - 2)."""
    denom = n - 2 if n > 2 else n
    r2 = np.square(r)
    return r2 - (1.0 - r2) / denom


def ld_scores_block(
    Z_rows: np.ndarray, Z_win: np.ndarray, win_start: int,
    left: np.ndarray, right: np.ndarray, n: int,
) -> np.ndarray:
    """LD scores of a block of SNPs against the columns that can be in their windows.

    Z_rows: (n, b) standardized genotypes of the b SNPs.
    Z_win: (n, w) standardized genotypes of SNPs win_start..win_start+w-1 (covering every window).
    left, right: (b,) window bounds of the b SNPs, in the SNP index that win_start counts in.
    Returns (b,) float64 LD scores.
    """
    b = Z_rows.shape[1]
    assert Z_rows.shape[0] == Z_win.shape[0] == n, (Z_rows.shape, Z_win.shape, n)
    assert left.shape == right.shape == (b,)
    R = (Z_rows.T @ Z_win) / np.float32(n)  # (b, w)
    U = unbiased_r2(R, n)
    cols = np.arange(win_start, win_start + Z_win.shape[1])
    mask = (cols[None, :] >= left[:, None]) & (cols[None, :] < right[:, None])
    return np.where(mask, U, 0.0).sum(axis=1, dtype=np.float64)


@dataclass
class LDScores:
    """LD scores of the kept SNPs (indices into the reference SNP table), with LDSC's M counts."""

    index: np.ndarray  # (k,) indices of kept SNPs in the reference
    l2: np.ndarray  # (k,)
    maf: np.ndarray  # (k,)
    M: int  # number of kept SNPs
    M_5_50: int  # kept SNPs with MAF > 5%
    n_monomorphic: int


def ld_scores(
    read_columns: Callable[[np.ndarray], np.ndarray],
    chrom: np.ndarray,
    coords: np.ndarray,
    n: int,
    max_dist: float,
    chunk: int = 50,
    block_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> LDScores:
    """LD scores of every polymorphic SNP, computed chromosome by chromosome in SNP blocks.

    read_columns(idx) -> genotypes (n, len(idx)) of the reference SNPs idx (int8 or float with
    NaN missing); it is called on increasing contiguous index ranges. chrom, coords: (m,) per
    SNP; within a chromosome coords must be sorted. Monomorphic SNPs are dropped (as LDSC does)
    before windows are formed. chunk: LDSC's chunk size (50 reproduces LDSC v1's LD scores;
    1 gives exact windows). Memory: n x (block + widest window) float32.
    """
    chrom = np.asarray(chrom)
    coords = np.asarray(coords, dtype=np.float64)
    m = len(chrom)
    # first pass: frequencies, to drop monomorphic SNPs before windows are built
    poly = np.zeros(m, dtype=bool)
    maf_all = np.zeros(m)
    for a in range(0, m, 4 * block_size):
        idx = np.arange(a, min(a + 4 * block_size, m))
        _, freq, sd = standardize(read_columns(idx))
        poly[idx] = sd > 0
        maf_all[idx] = np.minimum(freq, 1 - freq)
    out_idx, out_l2 = [], []
    # chromosomes in order of first appearance
    _, first = np.unique(chrom, return_index=True)
    for c in chrom[np.sort(first)]:
        on = np.flatnonzero((chrom == c) & poly)
        if len(on) == 0:
            continue
        pos = coords[on]
        if np.any(np.diff(pos) < 0):
            raise ValueError(f"chromosome {c}: positions are not sorted")
        left, right = ldsc_windows(pos, max_dist, chunk) if chunk > 1 else window_bounds(pos, max_dist)
        l2 = np.empty(len(on))
        cache_lo, cache = 0, np.zeros((n, 0), dtype=np.float32)
        for a in range(0, len(on), block_size):
            b = min(a + block_size, len(on))
            lo, hi = int(left[a]), int(right[b - 1])
            # slide the cache of standardized columns [cache_lo, cache_lo + width): lo never decreases
            if lo >= cache_lo + cache.shape[1]:
                cache = np.zeros((n, 0), dtype=np.float32)
            else:
                cache = cache[:, lo - cache_lo :]
            cache_lo = lo
            have = cache_lo + cache.shape[1]
            if hi > have:
                Znew, _, _ = standardize(read_columns(on[have:hi]))
                cache = np.concatenate([cache, Znew], axis=1)
            Zr = cache[:, a - cache_lo : b - cache_lo]
            l2[a:b] = ld_scores_block(Zr, cache[:, : hi - cache_lo], cache_lo, left[a:b], right[a:b], n)
            if progress:
                progress(b - a)
        out_idx.append(on)
        out_l2.append(l2)
    index = np.concatenate(out_idx) if out_idx else np.zeros(0, np.int64)
    l2 = np.concatenate(out_l2) if out_l2 else np.zeros(0)
    maf = maf_all[index]
    return LDScores(index=index, l2=l2, maf=maf, M=len(index), M_5_50=int((maf > 0.05).sum()),
                    n_monomorphic=int((~poly).sum()))
