"""LD clumping with PLINK 1.9's semantics (``plink --clump``), as arrays in and clumps out.

What PLINK 1.9 does, and this module reproduces:

* Entries are (SNP, file, P) triples of association results whose SNP is in the reference. A SNP
  is *index-eligible* when one of its entries has P ≤ p1; index SNPs are taken in order of their
  smallest P, ties broken by reference (.bim) order.
* An index SNP that is already in a clump is skipped. Otherwise it absorbs every SNP that has an
  entry (of any P), is not yet in a clump, lies on its chromosome within ``kb`` (|Δbp| ≤
  kb·1000 − 1, PLINK's radius) and has |r²| > r2 with it. Each absorbed entry is counted in the
  P histogram (TOTAL, NSIG: P ≥ 0.05, S05, S01, S001, S0001); those with P < p2 are listed
  (SP2), in position order and file order within a position.
* Entries of the index SNP in other files join its clump with r² = 1 (counted, listed when
  P < p2), and only then is the index SNP itself marked as clumped. The index SNP is reported with
  the file of its smallest P.

r² is computed lazily, only between index SNPs actually used and the SNPs that can still join
them, in blocks: consecutive index SNPs (in P order) that lie too far apart to absorb one another
are handled together, their candidate pairs sent to ``r2_fn`` in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SMALL_EPSILON = 2.0**-44  # PLINK 1.9's


def bp_radius(kb: float) -> int:
    """PLINK 1.9's window half-width in bp for ``--clump-kb kb`` (inclusive)."""
    return int(kb * 1000 * (1 + SMALL_EPSILON) - 1)


def p_histogram_bin(p: np.ndarray) -> np.ndarray:
    """Column of each P in (NSIG, S05, S01, S001, S0001): P ≥ .05, [.01, .05), [.001, .01), ..."""
    p = np.asarray(p, dtype=np.float64)
    return np.select([p < 0.0001, p < 0.001, p < 0.01, p < 0.05], [4, 3, 2, 1], 0)


@dataclass
class Clump:
    """One clump. Indices are reference (.bim) rows; files are 1-based like PLINK's F column."""

    index: int
    file: int
    p: float
    histo: np.ndarray  # (5,) counts: NSIG S05 S01 S001 S0001; TOTAL is their sum
    member_snp: np.ndarray  # (k,) members with P < p2, in SP2 order
    member_file: np.ndarray  # (k,)
    member_r2: np.ndarray  # (k,) signed r² with the index SNP (1 for its own entries in other files)
    member_p: np.ndarray  # (k,)

    @property
    def total(self) -> int:
        return int(self.histo.sum())


@dataclass
class Entries:
    """Association results grouped by reference SNP (CSR layout), built by :func:`group_entries`."""

    start: np.ndarray  # (m + 1,) entries of SNP s are rows start[s]:start[s + 1]
    file: np.ndarray  # (E,) 1-based file of each entry
    p: np.ndarray  # (E,)
    min_p: np.ndarray  # (m,) smallest P of each SNP (inf when it has none)

    def has(self) -> np.ndarray:
        return self.start[1:] > self.start[:-1]


def group_entries(n_snps: int, snp: np.ndarray, file: np.ndarray, p: np.ndarray) -> Entries:
    """Group entries (reference row, 1-based file, P), shape (E,) each, by SNP; within a SNP in
    file order, then input order (the order PLINK walks them)."""
    snp = np.asarray(snp, dtype=np.int64)
    file = np.asarray(file, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    if not (snp.shape == file.shape == p.shape):
        raise ValueError(f"entry arrays differ in shape: {snp.shape}, {file.shape}, {p.shape}")
    order = np.lexsort((np.arange(snp.shape[0]), file, snp))
    snp, file, p = snp[order], file[order], p[order]
    start = np.zeros(n_snps + 1, dtype=np.int64)
    np.add.at(start, snp + 1, 1)
    start = np.cumsum(start)
    min_p = np.full(n_snps, np.inf)
    np.minimum.at(min_p, snp, p)
    return Entries(start, file, p, min_p)


def position_key(chrom: np.ndarray, bp: np.ndarray) -> np.ndarray:
    """A sorted int64 key (chromosome block, bp); chromosomes must be contiguous blocks and
    positions non-decreasing within each."""
    m = chrom.shape[0]
    change = np.flatnonzero(chrom[1:] != chrom[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    if np.unique(chrom[starts]).shape[0] != starts.shape[0]:
        raise ValueError("reference chromosomes are not contiguous blocks")
    block = np.repeat(np.arange(starts.shape[0], dtype=np.int64), np.diff(np.concatenate([starts, [m]])))
    if np.any(np.diff(bp)[np.diff(block) == 0] < 0):
        raise ValueError("reference positions are not sorted within a chromosome")
    if bp.shape[0] and (bp.min() < 0 or bp.max() >= 2**40):
        raise ValueError("positions must lie in [0, 2^40)")
    return (block << 42) + bp


def windows(chrom: np.ndarray, bp: np.ndarray, rows: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) reference rows within `radius` bp of each SNP in `rows`, on its chromosome."""
    key = position_key(np.asarray(chrom), np.asarray(bp, dtype=np.int64))
    rows = np.asarray(rows, dtype=np.int64)
    lo = np.searchsorted(key, key[rows] - radius, side="left")
    hi = np.searchsorted(key, key[rows] + radius, side="right")
    return lo, hi


def index_order(entries: Entries, p1: float) -> np.ndarray:
    """Index-eligible reference rows in processing order (smallest P first, ties by row)."""
    rows = np.flatnonzero(entries.min_p <= p1)
    return rows[np.lexsort((rows, entries.min_p[rows]))]


def needed_snps(chrom: np.ndarray, bp: np.ndarray, entries: Entries, p1: float, kb: float) -> np.ndarray:
    """Reference rows whose genotypes clumping may read: entries within the window of an
    index-eligible SNP (the index SNPs included), sorted."""
    rows = index_order(entries, p1)
    if rows.shape[0] == 0:
        return rows
    lo, hi = windows(chrom, bp, rows, bp_radius(kb))
    m = chrom.shape[0]
    cover = np.zeros(m + 1, dtype=np.int64)
    np.add.at(cover, lo, 1)
    np.add.at(cover, hi, -1)
    return np.flatnonzero((np.cumsum(cover)[:m] > 0) & entries.has())


def clump(
    chrom: np.ndarray,
    bp: np.ndarray,
    entries: Entries,
    r2_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    p1: float = 1e-4,
    p2: float = 1e-2,
    r2: float = 0.5,
    kb: float = 250.0,
    max_block: int = 256,
) -> list[Clump]:
    """PLINK 1.9 clumping.

    chrom: (m,) chromosome code of each reference SNP (any comparable values; contiguous blocks);
    bp: (m,) positions, sorted within each chromosome; entries: from :func:`group_entries`;
    r2_fn(i, j): signed r² of reference rows i[p] (the index SNP) and j[p], shape (P,), NaN when
    undefined. Returns the clumps in processing order.
    """
    chrom = np.asarray(chrom)
    bp = np.asarray(bp, dtype=np.int64)
    m = chrom.shape[0]
    if bp.shape != (m,) or entries.min_p.shape != (m,):
        raise ValueError(f"chrom {chrom.shape}, bp {bp.shape} and entries ({entries.min_p.shape}) disagree")
    radius = bp_radius(kb)
    order = index_order(entries, p1)
    lo, hi = windows(chrom, bp, order, radius)
    has = entries.has()
    clumped = np.zeros(m, dtype=bool)
    out: list[Clump] = []
    bins = p_histogram_bin(entries.p)

    pos = 0
    n = order.shape[0]
    while pos < n:
        # a block: the next unclumped index SNPs, none within reach of an earlier one in the block
        block: list[int] = []
        while pos < n and len(block) < max_block:
            k = pos
            r = order[k]
            if clumped[r]:
                pos += 1
                continue
            if block:
                prev = order[block]
                if np.any((chrom[prev] == chrom[r]) & (np.abs(bp[prev] - bp[r]) <= radius)):
                    break
            block.append(k)
            pos += 1
        cands = []
        for k in block:
            r = order[k]
            c = np.arange(lo[k], hi[k])
            c = c[has[c] & ~clumped[c] & (c != r)]
            cands.append(c)
        sizes = np.array([c.shape[0] for c in cands])
        if sizes.sum():
            I = np.repeat(order[block], sizes)
            J = np.concatenate(cands)
            R = np.asarray(r2_fn(I, J), dtype=np.float64)
            if R.shape != I.shape:
                raise ValueError(f"r2_fn returned shape {R.shape}, expected {I.shape}")
        else:
            R = np.zeros(0)
        offs = np.concatenate([[0], np.cumsum(sizes)])
        for b, k in enumerate(block):
            r = order[k]
            if clumped[r]:  # cannot happen by construction of the block; kept as a guard
                continue
            c = cands[b]
            rc = R[offs[b] : offs[b + 1]]
            with np.errstate(invalid="ignore"):
                take = ~clumped[c] & (np.abs(rc) > r2)
            absorbed, ar2 = c[take], rc[take]
            out.append(_make_clump(r, absorbed, ar2, entries, bins, p2))
            clumped[absorbed] = True
            if entries.start[r + 1] - entries.start[r] > 1:
                clumped[r] = True
    return out


def _make_clump(r: int, absorbed: np.ndarray, ar2: np.ndarray, entries: Entries, bins: np.ndarray, p2: float) -> Clump:
    st = entries.start
    # entries of the index SNP: the first one with its smallest P is the index entry
    own = np.arange(st[r], st[r + 1])
    pmin = entries.min_p[r]
    lead = own[np.argmax(entries.p[own] == pmin)]
    own_other = own[own != lead]
    left = absorbed < r
    parts_snp = [absorbed[left], np.full(1 if own_other.size else 0, r), absorbed[~left]]
    parts_r2 = [ar2[left], np.ones(1 if own_other.size else 0), ar2[~left]]
    snps = np.concatenate(parts_snp).astype(np.int64)
    snp_r2 = np.concatenate(parts_r2)
    counts = st[snps + 1] - st[snps]
    if snps.shape[0] and r in snps:
        counts[snps == r] = own_other.shape[0]
    # expand each absorbed SNP to its entries (file order)
    ent = np.repeat(st[snps], counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    if own_other.size:
        # the index SNP's own entries are all but the lead one; splice them in place
        is_own = np.repeat(snps == r, counts)
        ent[is_own] = own_other
    ent_r2 = np.repeat(snp_r2, counts)
    ent_snp = np.repeat(snps, counts)
    histo = np.bincount(bins[ent], minlength=5).astype(np.int64)
    listed = entries.p[ent] < p2
    return Clump(
        index=int(r),
        file=int(entries.file[lead]),
        p=float(pmin),
        histo=histo,
        member_snp=ent_snp[listed],
        member_file=entries.file[ent][listed],
        member_r2=ent_r2[listed],
        member_p=entries.p[ent][listed],
    )


class ReferenceOrderError(ValueError):
    """The reference's chromosomes are not contiguous or its positions not sorted."""
