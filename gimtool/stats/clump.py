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


def _position_key(chrom: np.ndarray, bp: np.ndarray) -> np.ndarray:
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
    key = _position_key(np.asarray(chrom), np.asarray(bp, dtype=np.int64))
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


@dataclass
class ClumpReport:
    """Result of :func:`clump_sumstats`: the .clumped table (CLUMP_COLS), the listed members
    (CLUMP_MEMBER_COLS), and what happened to each file's rows."""

    clumps: list[Clump]
    table: "pl.DataFrame"
    members: "pl.DataFrame"
    file_stats: list[dict]
    n_index_eligible: int
    n_loaded: int
    n_pairs: int
    dup_ref_ids: int


def clump_sumstats(
    bim: "pl.DataFrame",
    frames: list["pl.DataFrame"],
    read_packed: Callable[[np.ndarray], np.ndarray],
    n_samples: int,
    keep: np.ndarray | None = None,
    p1: float = 5e-8,
    p2: float = 1e-2,
    r2: float = 0.1,
    kb: float = 250.0,
    r2_method: str = "em",
    labels: list[str] | None = None,
    max_block: int = 256,
) -> ClumpReport:
    """Clump sumstats frames (columns SNP and P at least; file F = position in `frames`, from 1)
    against a reference: `bim` (CHR SNP BP ...), `read_packed(rows)` returning the .bed rows of
    those reference rows (uint8, shape (len(rows), ceil(n_samples/4))), `keep` the samples LD is
    computed from (PLINK: founders). Rows whose P is missing are skipped, as PLINK does."""
    import polars as pl

    from gimtool.errors import InputError
    from gimtool.stats import ld

    labels = labels or [f"sumstats {k}" for k in range(1, len(frames) + 1)]
    m = bim.height
    ref = pl.DataFrame({"SNP": bim["SNP"], "ROW": np.arange(m, dtype=np.int64)})
    n_dup_ref = 0
    if bim["SNP"].n_unique() != m:
        n_dup_ref = int(ref["SNP"].is_duplicated().sum())
        ref = ref.unique("SNP", keep="first", maintain_order=True)
    snp_all, file_all, p_all, stats = [], [], [], []
    for k, (df, label) in enumerate(zip(frames, labels), 1):
        d = df.select(pl.col("SNP").cast(pl.Utf8), pl.col("P").cast(pl.Float64))
        has_p = d["P"].is_not_null() & d["P"].is_not_nan()
        bad = d.filter(has_p & ((pl.col("P") < 0) | (pl.col("P") > 1)))
        if bad.height:
            raise InputError(f"{label}: column P: expected values in [0, 1], found {bad['P'][0]} (SNP {bad['SNP'][0]})")
        if not n_dup_ref and d.height == m and d["SNP"].equals(bim["SNP"]):
            # the reference's SNPs in its order (what `gimtool gwas` writes): row k is reference
            # row k; the join below would give the same rows, found in this order
            ok = has_p.fill_null(False).to_numpy()
            stats.append({"rows": df.height, "no_p": int(m - ok.sum()), "found": int(ok.sum()), "missing": 0,
                          "missing_top": 0, "missing_top_ids": [], "dup": 0})
            snp_all.append(np.flatnonzero(ok).astype(np.int64))
            file_all.append(np.full(int(ok.sum()), k, dtype=np.int64))
            p_all.append(d["P"].to_numpy()[ok].astype(np.float64))
            continue
        d = d.filter(has_p)
        j = d.join(ref, on="SNP", how="left", maintain_order="left")
        found = j.filter(pl.col("ROW").is_not_null())
        missing = j.filter(pl.col("ROW").is_null())
        top = missing.filter(pl.col("P") <= p1)
        stats.append({
            "rows": df.height, "no_p": df.height - d.height, "found": found.height, "missing": missing.height,
            "missing_top": top.height, "missing_top_ids": top["SNP"].head(5).to_list(),
            "dup": int(d["SNP"].is_duplicated().sum()),
        })
        snp_all.append(found["ROW"].to_numpy().astype(np.int64))
        file_all.append(np.full(found.height, k, dtype=np.int64))
        p_all.append(found["P"].to_numpy().astype(np.float64))
    entries = group_entries(m, np.concatenate(snp_all), np.concatenate(file_all), np.concatenate(p_all))
    # runs of equal CHR; a chromosome split over several runs is caught by _position_key
    chrom = bim["CHR"].rle_id().to_numpy().astype(np.int64)
    if m and bim["CHR"].n_unique() != int(chrom[-1]) + 1:
        raise ReferenceOrderError("reference chromosomes are not contiguous blocks")
    bp = bim["BP"].to_numpy().astype(np.int64)
    try:
        _position_key(chrom, bp)
    except ValueError as e:
        raise ReferenceOrderError(str(e)) from None

    need = needed_snps(chrom, bp, entries, p1, kb)
    planes = ld.planes_from_reader(read_packed, need, n_samples, keep) if need.size else None
    lut = np.full(m, -1, dtype=np.int64)
    lut[need] = np.arange(need.size)
    n_pairs = 0

    def r2_fn(i, j):
        nonlocal n_pairs
        n_pairs += i.shape[0]
        return ld.r2_pairs(planes, lut[i], lut[j], r2_method)

    clumps = clump(chrom, bp, entries, r2_fn, p1=p1, p2=p2, r2=r2, kb=kb, max_block=max_block) if need.size else []

    # names of the reference rows the output mentions only (not all m)
    shown = np.unique(np.concatenate([[c.index for c in clumps]] + [c.member_snp for c in clumps])).astype(np.int64) if clumps else np.zeros(0, np.int64)
    names = dict(zip(shown.tolist(), bim["SNP"].gather(shown).to_list()))
    chr_str = dict(zip(shown.tolist(), bim["CHR"].gather(shown).to_list()))
    rows = []
    mem = {"INDEX": [], "SNP": [], "F": [], "KB": [], "R2": [], "P": []}
    for c in clumps:
        ms, mf = c.member_snp.tolist(), c.member_file.tolist()
        sp2 = ",".join(f"{names[s]}({f})" for s, f in zip(ms, mf)) or "NONE"
        rows.append((chr_str[c.index], c.file, names[c.index], int(bp[c.index]), c.p, c.total, *map(int, c.histo), sp2))
        mem["INDEX"].extend([names[c.index]] * len(ms))
        mem["SNP"].extend(names[s] for s in ms)
        mem["F"].extend(mf)
        mem["KB"].extend(((bp[c.member_snp] - bp[c.index]) / 1000).tolist())
        mem["R2"].extend(np.abs(c.member_r2).tolist())
        mem["P"].extend(c.member_p.tolist())
    from gimtool.conventions import CLUMP_COLS, CLUMP_MEMBER_COLS

    dtypes = (pl.Utf8, pl.Int64, pl.Utf8, pl.Int64, pl.Float64) + (pl.Int64,) * 6 + (pl.Utf8,)
    table = pl.DataFrame(rows, schema=dict(zip(CLUMP_COLS, dtypes)), orient="row")
    members = pl.DataFrame(mem, schema=dict(zip(CLUMP_MEMBER_COLS, (pl.Utf8, pl.Utf8, pl.Int64, pl.Float64, pl.Float64, pl.Float64))))
    return ClumpReport(clumps, table, members, stats, int(np.sum(entries.min_p <= p1)), int(need.size), n_pairs,
                       n_dup_ref)
