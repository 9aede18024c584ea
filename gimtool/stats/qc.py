"""Genotype QC kernels: genotype counts, missingness, allele frequencies, the exact HWE test,
and genetic positions; and the 2-bit codes of .bed rows and of the genotype store (the
sample-major transpose, packing and unpacking). Arrays are samples x SNPs, int8 counts of A1
with missing = -127, unless they are packed 2-bit codes (uint8, PLINK's: 00 two copies of A1,
01 missing, 10 one copy, 11 none; element j in byte j // 4, bits 2 (j % 4)).
"""

from __future__ import annotations

import numpy as np

from gimtool.conventions import MISSING_INT8 as MISSING


def genotype_counts(G: np.ndarray) -> np.ndarray:
    """Per-SNP counts of genotypes 0, 1, 2 and missing.

    G: (n_samples, n_snps) int8. Returns (n_snps, 4) int64: [n0, n1, n2, n_missing].
    """
    assert G.ndim == 2 and G.dtype == np.int8
    n = G.shape[0]
    n0 = np.count_nonzero(G == 0, axis=0)
    n1 = np.count_nonzero(G == 1, axis=0)
    n2 = np.count_nonzero(G == 2, axis=0)
    return np.stack([n0, n1, n2, n - n0 - n1 - n2], axis=1).astype(np.int64)


def pack_sample_mask(sample_mask: np.ndarray) -> np.ndarray:
    """2-bit mask bytes (0b11 per kept sample) in .bed byte layout, padded to whole uint64 words."""
    n = len(sample_mask)
    bits = np.zeros(((n + 3) // 4) * 4, dtype=np.uint8)
    bits[:n] = sample_mask
    b = bits.reshape(-1, 4) * 3
    packed = (b[:, 0] | (b[:, 1] << 2) | (b[:, 2] << 4) | (b[:, 3] << 6)).astype(np.uint8)
    return np.concatenate([packed, np.zeros((-len(packed)) % 8, dtype=np.uint8)])


def packed_genotype_counts(rows: np.ndarray, n_samples: int, sample_mask: np.ndarray | None = None,
                           threads: int = 1) -> np.ndarray:
    """Per-SNP counts [n0, n1, n2, n_missing] straight from .bed rows, without decoding.

    rows: (m, ceil(n_samples / 4)) uint8, PLINK 2-bit codes (00 hom A1 = 2 copies, 01 missing,
    10 het, 11 hom A2 = 0 copies). Codes are counted with popcounts on 64-bit words; samples
    outside `sample_mask` (n_samples,) bool are masked to 00 and subtracted with the padding.
    Compiled: `threads` row ranges in parallel.
    """
    m, nb = rows.shape
    assert nb == (n_samples + 3) // 4
    keep = np.ones(n_samples, dtype=bool) if sample_mask is None else np.asarray(sample_mask, dtype=bool)
    sp = _speedups()
    if sp is not None and m:
        out = np.empty((m, 4), dtype=np.int64)
        rows, words = np.ascontiguousarray(rows), pack_sample_mask(keep).view(np.uint64)
        parts = np.unique(np.linspace(0, m, max(1, threads) + 1).astype(int))

        def work(a, b):
            sp.code_counts(rows[a:b], nb, words, out[a:b])

        if len(parts) > 2:
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(len(parts) - 1) as pool:
                list(pool.map(work, parts[:-1], parts[1:]))
        else:
            work(0, m)
        return out
    pad = (-nb) % 8
    if pad:
        rows = np.concatenate([rows, np.zeros((m, pad), dtype=np.uint8)], axis=1)
    w = np.ascontiguousarray(rows).view(np.uint64)  # (m, words)
    mask = pack_sample_mask(keep).view(np.uint64)[None, :]
    lo_bits = np.uint64(0x5555555555555555)
    lo = w & lo_bits & mask
    hi = (w >> np.uint64(1)) & lo_bits & mask
    n_hom_a2 = np.bitwise_count(lo & hi).sum(axis=1, dtype=np.int64)
    n_missing = np.bitwise_count(lo).sum(axis=1, dtype=np.int64) - n_hom_a2
    n_het = np.bitwise_count(hi).sum(axis=1, dtype=np.int64) - n_hom_a2
    n_hom_a1 = int(keep.sum()) - n_missing - n_het - n_hom_a2
    return np.stack([n_hom_a2, n_het, n_hom_a1, n_missing], axis=1)


def _speedups():
    """gimtool._speedups when it was built, else None (every caller has a numpy path)."""
    try:
        from gimtool import _speedups
    except ImportError:
        return None
    return _speedups


def packed_missing_per_sample(rows: np.ndarray, counts: np.ndarray) -> None:
    """Add each sample's missing calls over the .bed rows (m, nb) to counts (4 nb,) int64."""
    m, nb = rows.shape
    assert counts.shape == (4 * nb,) and counts.dtype == np.int64
    sp = _speedups()
    if sp is not None:
        sp.missing_per_sample(np.ascontiguousarray(rows), nb, counts)
        return
    for s in range(4):
        counts[s::4] += np.count_nonzero(((rows >> (2 * s)) & 3) == 1, axis=0)


def repack_samples(rows: np.ndarray, n_samples: int, idx: np.ndarray, sel: np.ndarray | None = None,
                   threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """The .bed rows (m, ceil(n_samples / 4)) of the samples idx (in that order), as new .bed
    rows (m, ceil(len(idx) / 4)) uint8, the last byte padded with 00 as PLINK does; of the rows
    rows[sel] only (picked in place) when sel is given. Compiled: `threads` row ranges in
    parallel, into the buffer `out` when given (reused across chunks: no fresh pages)."""
    nb = rows.shape[1]
    assert nb == (n_samples + 3) // 4
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    sel = np.arange(rows.shape[0], dtype=np.int64) if sel is None else np.ascontiguousarray(sel, dtype=np.int64)
    m = len(sel)
    sp = _speedups()
    if sp is not None and len(idx):
        # runs of consecutive samples: (first, length)
        brk = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.r_[0, brk]
        runs = np.stack([idx[starts], np.diff(np.r_[starts, len(idx)])], axis=1).astype(np.int64)
        shape = (m, (len(idx) + 3) // 4)
        out = np.empty(shape, dtype=np.uint8) if out is None else out.reshape(-1)[: shape[0] * shape[1]].reshape(shape)
        rows, runs = np.ascontiguousarray(rows), np.ascontiguousarray(runs)
        parts = np.unique(np.linspace(0, m, max(1, threads) + 1).astype(int))

        def work(a, b):
            sp.repack(rows, nb, sel[a:b], runs, len(idx), out[a:b])

        if len(parts) > 2:
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(len(parts) - 1) as pool:
                list(pool.map(work, parts[:-1], parts[1:]))
        elif m:
            work(0, m)
        return out
    codes = (rows[sel][:, idx // 4] >> (2 * (idx % 4)).astype(np.uint8)) & 3
    codes = np.concatenate([codes, np.zeros((m, (-len(idx)) % 4), dtype=np.uint8)], axis=1).reshape(m, -1, 4)
    return (codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)).astype(np.uint8)


# .bed 2-bit code -> count of A1 (00 two copies, 01 missing, 10 one, 11 none)
_CODE_TO_INT8 = np.array([2, MISSING, 1, 0], dtype=np.int8)


class SampleMajorPacker:
    """.bed rows (SNP-major, packed) -> the samples `idx` as sample-major 2-bit rows, what the
    genotype store (version 2) holds: (len(idx), ceil(m / 4)) uint8, the .bed's own codes, SNP j
    of a sample in byte j // 4, bits 2 (j % 4); the unused bits of the last byte are 0.
    Compiled: a transpose of 32 x 32 blocks of 2-bit codes in registers, `threads` SNP ranges in
    parallel; numpy: the codes gathered, transposed and packed."""

    def __init__(self, n_samples: int, idx: np.ndarray, threads: int = 1):
        self.n_samples = n_samples
        self.nb = (n_samples + 3) // 4
        self.idx = np.asarray(idx, dtype=np.int64)
        self.smap = np.full(n_samples, -1, dtype=np.int64)
        self.smap[self.idx] = np.arange(len(self.idx))
        self.threads = max(1, threads)
        self.sp = _speedups()

    def pack(self, rows: np.ndarray, sel: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """The store's rows of the .bed rows `rows` (m, nb), or of rows[sel] (sel: row numbers,
        read in place), into `out` when given (reused across chunks: no fresh pages to fault in)."""
        nb = rows.shape[1]
        assert nb == self.nb
        sel = np.arange(rows.shape[0], dtype=np.int64) if sel is None else np.ascontiguousarray(sel, dtype=np.int64)
        m = len(sel)
        shape = (len(self.idx), (m + 3) // 4)
        if self.sp is None:
            codes = (rows[sel][:, self.idx // 4] >> (2 * (self.idx % 4)).astype(np.uint8)) & 3  # (m, k)
            packed = pack_codes(np.ascontiguousarray(codes.T))
            if out is None:
                return packed
            out = out.reshape(-1)[: packed.size].reshape(shape)
            out[...] = packed
            return out
        rows = np.ascontiguousarray(rows)
        out = np.empty(shape, dtype=np.uint8) if out is None else out.reshape(-1)[: shape[0] * shape[1]].reshape(shape)
        if m == 0 or len(self.idx) == 0:
            return out
        # SNP ranges on whole 256-SNP passes of the kernel (so on whole output bytes)
        t = self.threads
        parts = np.unique([0, *(int(round(m * i / t / 256)) * 256 for i in range(1, t)), m])

        def work(a, b):
            self.sp.transpose_2bit(rows, nb, sel[a:b], self.n_samples, self.smap, out, shape[1], a // 4)

        if len(parts) > 2:
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(len(parts) - 1) as pool:
                list(pool.map(work, parts[:-1], parts[1:]))
        else:
            work(0, m)
        return out


# int8 count of A1 (as a uint8 byte) -> .bed 2-bit code; 4 marks a value with no code
_INT8_TO_CODE = np.full(256, 4, dtype=np.uint8)
_INT8_TO_CODE[[2, 1, 0, MISSING & 0xFF]] = [0, 2, 3, 1]


def int8_to_codes(G: np.ndarray) -> np.ndarray:
    """int8 counts of A1 (missing = MISSING) -> .bed 2-bit codes, same shape, uint8. Raises
    ValueError on any other value (the 2-bit store has no code for it)."""
    codes = _INT8_TO_CODE[np.asarray(G, dtype=np.int8).view(np.uint8)]
    if codes.size and codes.max() > 3:
        bad = np.asarray(G).ravel()[np.argmax(codes.ravel() > 3)]
        raise ValueError(f"genotype value {int(bad)} is not 0, 1, 2 or missing ({MISSING})")
    return codes


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """(k, m) 2-bit codes -> (k, ceil(m / 4)) uint8, element j in byte j // 4 bits 2 (j % 4), 0-padded."""
    k, m = codes.shape
    c = np.zeros((k, 4 * ((m + 3) // 4)), dtype=np.uint8)
    c[:, :m] = codes
    c = c.reshape(k, -1, 4)
    return c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)


# byte -> its 4 elements' int8 counts of A1
_BYTE_TO_INT8 = np.stack([_CODE_TO_INT8[(np.arange(256) >> (2 * s)) & 3] for s in range(4)], axis=1)


def unpack_2bit(packed: np.ndarray, rows: np.ndarray, first: int, ncols: int) -> np.ndarray:
    """Elements first .. first + ncols - 1 of the rows `rows` of 2-bit rows packed (n, nbytes)
    uint8 (any array with the buffer protocol, e.g. a memmap), as (len(rows), ncols) int8 counts
    of A1 (missing = MISSING). Only the bytes holding those elements are read."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    sp = _speedups()
    if sp is not None:
        out = np.empty((len(rows), ncols), dtype=np.int8)
        if len(rows) and ncols:
            sp.unpack_2bit(packed, packed.shape[1], rows, first, out, ncols)
        return out
    b0, b1 = first // 4, (first + ncols + 3) // 4
    g = _BYTE_TO_INT8[np.asarray(packed[rows, b0:b1])].reshape(len(rows), -1)
    return np.ascontiguousarray(g[:, first - 4 * b0 : first - 4 * b0 + ncols])


def sample_missing_counts(G: np.ndarray) -> np.ndarray:
    """Missing genotypes per sample, shape (n_samples,)."""
    return np.count_nonzero(G == MISSING, axis=1)


def allele_freq(counts: np.ndarray) -> np.ndarray:
    """A1 frequency from genotype counts (n_snps, 4); NaN where every genotype is missing."""
    called = counts[:, 0] + counts[:, 1] + counts[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts[:, 1] + 2.0 * counts[:, 2]) / (2.0 * called)


def hwe_exact_p(counts: np.ndarray, window_sd: float = 14.0) -> np.ndarray:
    """Two-sided exact Hardy-Weinberg test (Wigginton, Cutler & Abecasis 2005) for many SNPs.

    counts: (n_snps, 4) [n0, n1, n2, n_missing]. The p-value sums the probabilities of every
    heterozygote count no more likely than the observed one, given the allele counts, as
    PLINK does. The het-count distribution is evaluated in closed form (log-gamma) on a window
    of `window_sd` standard deviations around its mode, where all but a negligible share of the
    mass lies; an observed count outside that window gets an upper bound on its p-value that is
    far below any usable threshold. Returns (n_snps,) float64; NaN where nothing is called.
    """
    n_hom_a = counts[:, 2].astype(np.int64)  # A1/A1
    n_het = counts[:, 1].astype(np.int64)
    n_hom_b = counts[:, 0].astype(np.int64)
    n = n_hom_a + n_het + n_hom_b
    n_a = 2 * n_hom_a + n_het
    n_b = 2 * n_hom_b + n_het
    rare = np.minimum(n_a, n_b)
    p = np.full(len(n), np.nan)
    ok = n > 0
    if not ok.any():
        return p
    # mode of the het distribution and its spread
    with np.errstate(invalid="ignore", divide="ignore"):
        mode = np.where(n > 0, (n_a * n_b) / np.maximum(2 * n - 1, 1), 0.0)
    sd = np.sqrt(np.maximum(mode, 1.0))
    half = np.ceil(window_sd * sd + 20).astype(np.int64)
    lo = np.maximum(0, np.floor(mode).astype(np.int64) - half)
    hi = np.minimum(rare, np.floor(mode).astype(np.int64) + half)
    # het counts share the parity of the rare allele count
    lo = lo + ((lo - rare) % 2)
    width = int(np.max((hi - lo) // 2 + 1)) if ok.any() else 1
    out = np.full(len(n), np.nan)
    idx = np.flatnonzero(ok)
    from scipy.special import gammaln  # here, not at the top: gwas imports this module, not this test

    # process in blocks to bound memory (block x width matrix)
    block = max(1, 4_000_000 // max(width, 1))
    for s in range(0, len(idx), block):
        ii = idx[s : s + block]
        k = lo[ii, None] + 2 * np.arange(width)[None, :]  # candidate het counts
        valid = k <= hi[ii, None]
        nn, na, nb = n[ii, None], n_a[ii, None], n_b[ii, None]
        kk = np.where(valid, k, 0)
        haa = (na - kk) // 2
        hbb = (nb - kk) // 2
        const = gammaln(nn + 1) + gammaln(na + 1) + gammaln(nb + 1) - gammaln(2 * nn + 1)
        logp = kk * np.log(2.0) + const - gammaln(kk + 1) - gammaln(haa + 1) - gammaln(hbb + 1)
        logp = np.where(valid, logp, -np.inf)
        obs = n_het[ii]
        hh = obs[:, None]
        logp_obs = (
            obs * np.log(2.0) + const[:, 0] - gammaln(obs + 1) - gammaln((n_a[ii] - obs) // 2 + 1)
            - gammaln((n_b[ii] - obs) // 2 + 1)
        )
        m = np.max(logp, axis=1)
        prob = np.exp(logp - m[:, None])
        total = prob.sum(axis=1)
        # relative tolerance as PLINK uses, so ties in exact arithmetic count as "as likely"
        le = logp <= (logp_obs[:, None] + 1e-7)
        pval = (prob * le).sum(axis=1) / total
        inside = (hh[:, 0] >= lo[ii]) & (hh[:, 0] <= hi[ii])
        bound = np.minimum(1.0, np.exp(logp_obs - m) * (rare[ii] + 1))
        out[ii] = np.where(inside, np.minimum(pval, 1.0), bound)
    return out


def detect_cm_units(chrom: np.ndarray, bp: np.ndarray, pos: np.ndarray) -> str:
    """Say whether a bim's genetic-position column is 'zero', 'morgans' or 'cm'.

    Human maps run at about 1 cM per Mb; a column in Morgans runs at about 0.01 per Mb.
    The rate is read off the span of each chromosome (so sorting or gaps don't matter).
    """
    if not np.any(pos != 0):
        return "zero"
    span_gen = 0.0
    span_mb = 0.0
    for c in np.unique(chrom):
        sel = chrom == c
        span_gen += float(pos[sel].max() - pos[sel].min())
        span_mb += float(bp[sel].max() - bp[sel].min()) / 1e6
    if span_mb <= 0 or span_gen <= 0:
        return "cm"
    return "morgans" if span_gen / span_mb < 0.1 else "cm"


def interpolate_cm(bp: np.ndarray, map_bp: np.ndarray, map_cm: np.ndarray) -> np.ndarray:
    """Genetic positions (cM) of `bp` by linear interpolation in a one-chromosome map.

    Beyond the ends of the map, positions continue at the rate of the terminal interval.
    map_bp must be increasing.
    """
    bp = np.asarray(bp, dtype=np.float64)
    map_bp = np.asarray(map_bp, dtype=np.float64)
    map_cm = np.asarray(map_cm, dtype=np.float64)
    if len(map_bp) == 1:
        return np.full(bp.shape, map_cm[0])
    out = np.interp(bp, map_bp, map_cm)
    lo_rate = (map_cm[1] - map_cm[0]) / (map_bp[1] - map_bp[0])
    hi_rate = (map_cm[-1] - map_cm[-2]) / (map_bp[-1] - map_bp[-2])
    below = bp < map_bp[0]
    above = bp > map_bp[-1]
    out[below] = map_cm[0] + (bp[below] - map_bp[0]) * lo_rate
    out[above] = map_cm[-1] + (bp[above] - map_bp[-1]) * hi_rate
    return out
