"""Pairwise LD (r²) between SNPs, computed from bit-packed genotypes.

Two estimators:

* :func:`em_r2` — PLINK 1.9's clumping r²: two-locus haplotype frequencies estimated by maximum
  likelihood, the phase of double heterozygotes resolved by solving the EM's stationary-point
  cubic analytically (PLINK's ``em_phase_hethet``), including its choice among several roots.
* :func:`corr_r2` — squared Pearson correlation of allele counts.

Both take :class:`PairSums`, the handful of per-pair counts they need, which
:func:`pair_sums` gets with AND + popcount over bit planes (:class:`Planes`), the way PLINK does,
rather than over int8 or float matrices: one SNP of 5,000 people is 79 machine words per plane.

Orientation: genotype arrays are samples × SNPs, values are counts of the .bim A1 allele
(0, 1, 2) and missing = -127 (gimtool's int8 convention). Planes are SNPs × words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gimtool.conventions import MISSING_INT8

# PLINK 1.9's tolerances (plink_common.h): powers of two near 1e-13, 1e-9 and 3e-11.
SMALL_EPSILON = 2.0**-44
EPSILON = 2.0**-30
SMALLISH_EPSILON = 2.0**-35

# .bed byte -> 4-bit nibble of its 4 samples, one lookup per genotype class.
# PLINK codes per sample: 0 = hom A1, 1 = missing, 2 = het, 3 = hom A2.
_codes = (np.arange(256, dtype=np.uint16)[:, None] >> (2 * np.arange(4))) & 3  # 256 x 4
_bits = (1 << np.arange(4)).astype(np.uint16)
_LUT_HOM1 = ((_codes == 0) * _bits).sum(1).astype(np.uint8)
_LUT_HET = ((_codes == 2) * _bits).sum(1).astype(np.uint8)
_LUT_OBS = ((_codes != 1) * _bits).sum(1).astype(np.uint8)
_LUT16_CACHE: list[np.ndarray] = []


def _lut16_all() -> np.ndarray:
    """Two .bed bytes (a little-endian uint16, 8 samples) -> the three planes' dense bytes in one
    little-endian uint32 (bytes 0, 1, 2: hom1, het, obs), so one gather decodes all three. Built on
    first use (65,536 entries; a few ms that commands not reading .bed rows need not pay)."""
    if not _LUT16_CACHE:
        v = np.arange(65536, dtype=np.uint32)
        planes = [(lut[v & 0xFF] | (lut[v >> 8] << 4)).astype(np.uint32) for lut in (_LUT_HOM1, _LUT_HET, _LUT_OBS)]
        _LUT16_CACHE.append((planes[0] | (planes[1] << 8) | (planes[2] << 16)).astype("<u4"))
    return _LUT16_CACHE[0]


@dataclass
class Planes:
    """Bit-packed genotypes of k SNPs over the kept samples.

    hom1, het, obs: uint64 arrays, shape (k, W): bit s of a row is set when sample s is
    homozygous A1 / heterozygous / observed (not missing, and kept). Samples not kept and the
    padding bits are zero in all three.
    n_obs: (k,) observed kept samples; a1: (k,) count of A1 alleles among them; a1_sq: (k,) sum
    of squared A1 counts.
    complete: every SNP is observed in every kept sample (pair counts then need fewer popcounts).
    """

    hom1: np.ndarray
    het: np.ndarray
    obs: np.ndarray
    n_obs: np.ndarray
    a1: np.ndarray
    a1_sq: np.ndarray
    complete: bool

    @property
    def n_snps(self) -> int:
        return self.hom1.shape[0]

    def a1_freq(self) -> np.ndarray:
        """(k,) A1 frequency among observed kept samples (NaN where none is observed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.a1 / (2.0 * self.n_obs)


def _to_words(dense: np.ndarray) -> np.ndarray:
    """(k, nbytes) uint8 -> (k, W) uint64, zero-padded to whole words."""
    k, nb = dense.shape
    pad = (-nb) % 8
    if pad:
        dense = np.concatenate([dense, np.zeros((k, pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(dense).view(np.uint64)


def _sample_mask_words(n_samples: int, keep: np.ndarray | None) -> np.ndarray:
    mask = np.ones(n_samples, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if mask.shape != (n_samples,):
        raise ValueError(f"sample mask has shape {mask.shape}, expected ({n_samples},)")
    return _to_words(np.packbits(mask, bitorder="little")[None, :])[0]


def _finish(hom1: np.ndarray, het: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> Planes:
    hom1 &= mask
    het &= mask
    obs &= mask
    n_obs = np.bitwise_count(obs).sum(axis=1, dtype=np.int64)
    n_hom1 = np.bitwise_count(hom1).sum(axis=1, dtype=np.int64)
    n_het = np.bitwise_count(het).sum(axis=1, dtype=np.int64)
    n_keep = int(np.bitwise_count(mask).sum())
    return Planes(hom1, het, obs, n_obs, 2 * n_hom1 + n_het, 4 * n_hom1 + n_het, bool(np.all(n_obs == n_keep)))


def planes_from_bed(packed: np.ndarray, n_samples: int, keep: np.ndarray | None = None) -> Planes:
    """Planes from raw .bed rows.

    packed: uint8, shape (k, ceil(n_samples / 4)): SNP-major .bed rows as stored on disk.
    keep: optional bool mask of shape (n_samples,) (e.g. founders only).
    """
    packed = np.asarray(packed, dtype=np.uint8)
    nb = (n_samples + 3) // 4
    if packed.ndim != 2 or packed.shape[1] != nb:
        raise ValueError(f"expected .bed rows of shape (k, {nb}), got {packed.shape}")
    return planes_from_reader(lambda rows: packed[rows[0] : rows[-1] + 1], np.arange(packed.shape[0]), n_samples, keep)


def planes_from_reader(read_packed, rows: np.ndarray, n_samples: int, keep: np.ndarray | None = None,
                       chunk: int = 2048) -> Planes:
    """Planes of the .bed rows `rows`, read `chunk` rows at a time with `read_packed(rows)` (which
    returns uint8 of shape (len(rows), ceil(n_samples / 4))) and decoded straight into the planes:
    the temporaries stay a few MB (in a fresh process, touching new memory costs as much as the
    decoding itself)."""
    rows = np.asarray(rows, dtype=np.int64)
    k = rows.shape[0]
    nb = (n_samples + 3) // 4
    npairs = (nb + 1) // 2  # 8 samples per uint16 of two .bed bytes
    width = -(-npairs // 8) * 8  # plane bytes per SNP: whole uint64 words, zero-padded
    planes = [np.zeros((k, width), dtype=np.uint8) for _ in range(3)]
    lut = _lut16_all()
    buf = np.empty((min(chunk, k), 2 * npairs), dtype=np.uint8)
    dec = np.empty((min(chunk, k), npairs), dtype="<u4")
    if nb % 2:
        buf[:, nb] = 0b01010101  # padding byte: 4 missing samples, removed by the mask
    for a in range(0, k, chunk):
        b = min(k, a + chunk)
        raw = np.asarray(read_packed(rows[a:b]), dtype=np.uint8)
        if raw.shape != (b - a, nb):
            raise ValueError(f"expected .bed rows of shape ({b - a}, {nb}), got {raw.shape}")
        buf[: b - a, :nb] = raw
        # one gather of 4-byte entries, then each plane's byte out of them (little-endian byte order)
        got = np.take(lut, buf[: b - a].view("<u2"), out=dec[: b - a]).view(np.uint8).reshape(b - a, npairs, 4)
        for p, out in enumerate(planes):
            out[a:b, :npairs] = got[:, :, p]
    mask = _sample_mask_words(n_samples, keep)
    return _finish(*(x.view(np.uint64) for x in planes), mask)


def planes_from_int8(G: np.ndarray, keep: np.ndarray | None = None) -> Planes:
    """Planes from genotypes of shape (n_samples, k): counts of A1, missing = -127."""
    G = np.asarray(G)
    if G.ndim != 2:
        raise ValueError(f"expected genotypes of shape (n_samples, k), got {G.shape}")
    n = G.shape[0]

    def plane(b):
        return _to_words(np.packbits(b.T, axis=1, bitorder="little"))

    mask = _sample_mask_words(n, keep)
    return _finish(plane(G == 2), plane(G == 1), plane(G != MISSING_INT8), mask)


@dataclass
class PairSums:
    """Counts over the samples observed at both SNPs of each pair; all arrays of shape (P,).

    n: such samples; s_i, s_j: sum of A1 counts at SNP i / j; q_i, q_j: sum of squared counts;
    s_ij: sum of products; hh: samples heterozygous at both (the phase-ambiguous ones).
    """

    n: np.ndarray
    s_i: np.ndarray
    s_j: np.ndarray
    q_i: np.ndarray
    q_j: np.ndarray
    s_ij: np.ndarray
    hh: np.ndarray

    def flipped(self, flip_i: np.ndarray, flip_j: np.ndarray) -> "PairSums":
        """The same sums with the allele counted (A1 -> A2) swapped where flip_i / flip_j is True."""
        n = self.n
        s_i = np.where(flip_i, 2 * n - self.s_i, self.s_i)
        q_i = np.where(flip_i, 4 * n - 4 * self.s_i + self.q_i, self.q_i)
        s_j = np.where(flip_j, 2 * n - self.s_j, self.s_j)
        q_j = np.where(flip_j, 4 * n - 4 * self.s_j + self.q_j, self.q_j)
        s_ij = self.s_ij
        s_ij = np.where(flip_i, 2 * self.s_j - s_ij, s_ij)  # sum (2 - a) b
        s_ij = np.where(flip_j, 2 * s_i - s_ij, s_ij)  # sum a' (2 - b), a' possibly flipped already
        return PairSums(n, s_i, s_j, q_i, q_j, s_ij, self.hh)


def _popcount_and(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return np.bitwise_count(X & Y).sum(axis=1, dtype=np.int64)


def pair_sums(planes: Planes, i: np.ndarray, j: np.ndarray) -> PairSums:
    """Counts for the SNP pairs (i[p], j[p]) (row indices into `planes`), shape (P,) each."""
    i = np.asarray(i, dtype=np.intp)
    j = np.asarray(j, dtype=np.intp)
    Ai, Hi, Aj, Hj = planes.hom1[i], planes.het[i], planes.hom1[j], planes.het[j]
    AA, AH, HA, HH = _popcount_and(Ai, Aj), _popcount_and(Ai, Hj), _popcount_and(Hi, Aj), _popcount_and(Hi, Hj)
    s_ij = 4 * AA + 2 * AH + 2 * HA + HH
    if planes.complete:
        # every kept sample observed: the sums over pairs are the per-SNP sums
        n = planes.n_obs[i]
        s_i, s_j = planes.a1[i], planes.a1[j]
        q_i, q_j = planes.a1_sq[i], planes.a1_sq[j]
    else:
        Mi, Mj = planes.obs[i], planes.obs[j]
        Am, Hm, mA, mH = _popcount_and(Ai, Mj), _popcount_and(Hi, Mj), _popcount_and(Mi, Aj), _popcount_and(Mi, Hj)
        n = _popcount_and(Mi, Mj)
        s_i, s_j = 2 * Am + Hm, 2 * mA + mH
        q_i, q_j = 4 * Am + Hm, 4 * mA + mH
    return PairSums(n, s_i, s_j, q_i, q_j, s_ij, HH)


def corr_r2(s: PairSums) -> np.ndarray:
    """Squared correlation of allele counts, shape (P,); NaN where a SNP is monomorphic."""
    n = s.n.astype(np.float64)
    cov = n * s.s_ij - s.s_i.astype(np.float64) * s.s_j
    vi = n * s.q_i - s.s_i.astype(np.float64) ** 2
    vj = n * s.q_j - s.s_j.astype(np.float64) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov * cov / (vi * vj)


def _cubic_real_roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real roots of x³ + a x² + b x + c, sorted, multiple roots once (PLINK's cubic_real_roots).

    Returns (roots (P, 3) with unused slots NaN, count (P,)).
    """
    P = a.shape[0]
    roots = np.full((P, 3), np.nan)
    cnt = np.ones(P, dtype=np.int64)
    a2 = a * a
    qq = (a2 - 3 * b) * (1.0 / 9.0)
    rr = (2 * a2 * a - 9 * a * b + 27 * c) * (1.0 / 54.0)
    r2 = rr * rr
    q3 = qq * qq * qq
    adiv3 = a * (1.0 / 3.0)
    three = r2 < q3
    with np.errstate(invalid="ignore", divide="ignore"):
        if three.any():
            sq = np.sqrt(qq[three])
            d = np.arccos(rr[three] / (qq[three] * sq)) * (1.0 / 3.0)
            sq = sq * -2
            ad = adiv3[three]
            s = np.stack([sq * np.cos(d) - ad, sq * np.cos(d + (2.0 * np.pi / 3.0)) - ad,
                          sq * np.cos(d - (2.0 * np.pi / 3.0)) - ad], axis=1)
            s.sort(axis=1)
            first_dup = s[:, 1] - s[:, 0] < EPSILON
            out = s.copy()
            k = np.full(s.shape[0], 3)
            # duplicate at the bottom: drop the middle root
            out[first_dup, 1] = s[first_dup, 2]
            out[first_dup, 2] = np.nan
            k[first_dup] = np.where(out[first_dup, 1] - out[first_dup, 0] < EPSILON, 1, 2)
            top_dup = ~first_dup & (s[:, 2] - s[:, 1] < EPSILON)
            k[top_dup] = 2
            for col in (1, 2):
                out[k <= col, col] = np.nan
            roots[three] = out
            cnt[three] = k
        one = ~three
        if one.any():
            rr1, ad = rr[one], adiv3[one]
            d = -np.power(np.abs(rr1) + np.sqrt(r2[one] - q3[one]), 1.0 / 3.0)
            zero = d == 0.0
            d = np.where(rr1 < 0.0, -d, d)
            sq = qq[one] / d
            s0 = d + sq - ad
            double = ~zero & (np.abs(d - sq) < EPSILON * 8)
            out = np.full((d.shape[0], 3), np.nan)
            out[:, 0] = np.where(zero, -ad, s0)
            other = -d - ad
            lo = np.where(d >= 0.0, other, s0)
            hi = np.where(d >= 0.0, s0, other)
            out[double, 0] = lo[double]
            out[double, 1] = hi[double]
            roots[one] = out
            cnt[one] = np.where(double, 2, 1)
    return roots, cnt


def _lnlike(k11, k12, k21, k22, center, f11, f12, f21, f22, half, x):
    """Log likelihood of the haplotype frequencies with `x` of the double-het share put on 11/22."""
    f11 = f11 + x
    f22 = f22 + x
    f12 = f12 + (half - x)
    f21 = f21 + (half - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = center * np.log(f11 * f22 + f12 * f21)
        for k, f in ((k11, f11), (k12, f12), (k21, f21), (k22, f22)):
            ll = ll + np.where(k != 0.0, k * np.log(np.where(k != 0.0, f, 1.0)), 0.0)
    return ll


def _cubic_candidates(f11, f12, f21, f22, half):
    """Candidate shifts of f11 where the likelihood's stationary points are a cubic's real roots
    (pairs with double heterozygotes and a non-zero product term), shape (k,) inputs.

    Returns (roots (k, 3) clipped to [0, half], first kept root (k,), one past the last (k,)),
    the roots outside [-eps, half + eps] dropped as PLINK does."""
    p1122, p1221 = f11 * f22, f12 * f21
    ca = 0.5 * (f11 + f22 - f12 - f21 - 3 * half)
    cb = 0.5 * (p1122 + p1221 + half * (f12 + f21 - f11 - f22 + half))
    cc = -0.5 * half * p1122
    R, cnt = _cubic_real_roots(ca, cb, cc)
    h = half[:, None]
    slot = np.arange(3)[None, :]
    live = slot < cnt[:, None]
    e = (live & (R <= h + SMALLISH_EPSILON)).sum(1)  # roots are sorted: the kept ones are a prefix
    st = (live & (slot < e[:, None]) & (R < -SMALLISH_EPSILON)).sum(1)
    lost = st == e
    Rc = R.copy()
    rows = np.arange(R.shape[0])
    first = np.clip(st, 0, 2)
    last = np.clip(e - 1, 0, 2)
    Rc[rows[~lost], first[~lost]] = np.maximum(Rc[rows[~lost], first[~lost]], 0.0)
    Rc[rows[~lost], last[~lost]] = np.minimum(Rc[rows[~lost], last[~lost]], h[~lost, 0])
    # every root dropped: a double root at a boundary; PLINK then weighs both boundaries
    Rc[lost] = np.nan
    Rc[lost, 0] = 0.0
    Rc[lost, 1] = h[lost, 0]
    return Rc, np.where(lost, 0, st), np.where(lost, 2, e)


def em_haplotype_freqs(s: PairSums) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood two-locus haplotype frequencies, PLINK 1.9's ``em_phase_hethet``.

    Returns (f11, f1x, fx1, ok), shape (P,) each: frequency of the haplotype carrying the counted
    allele at both SNPs, the counted allele's frequency at SNP i and at SNP j, and whether the
    estimate exists (PLINK skips a pair when it does not: no phase-unambiguous information).
    """
    hh = s.hh.astype(np.float64)
    k11 = (s.s_ij - s.hh) * 0.5
    k1x = (s.s_i - s.hh).astype(np.float64)
    kx1 = (s.s_j - s.hh).astype(np.float64)
    k12 = k1x - k11
    k21 = kx1 - k11
    k22 = 2.0 * (s.n - s.hh) - k11 - k12 - k21
    twice_tot = k11 + k12 + k21 + k22 + 2 * hh
    with np.errstate(divide="ignore", invalid="ignore"):
        recip = 1.0 / twice_tot
    f11, f12, f21, f22 = k11 * recip, k12 * recip, k21 * recip, k22 * recip
    p1122, p1221 = f11 * f22, f12 * f21
    half = hh * recip
    f1x = f11 + f12 + half
    fx1 = f11 + f21 + half
    has_center = hh > 0
    has_prod = (p1122 != 0.0) | (p1221 != 0.0)
    ok = (twice_tot != 0.0) & (has_center | has_prod)

    P = hh.shape[0]
    cand = np.full((P, 3), np.nan)
    start = np.zeros(P, dtype=np.int64)
    end = np.ones(P, dtype=np.int64)

    cub = ok & has_center & has_prod
    if cub.any():
        cand[cub], start[cub], end[cub] = _cubic_candidates(f11[cub], f12[cub], f21[cub], f22[cub], half[cub])

    flat = ok & has_center & ~has_prod
    if flat.any():
        xx = (f11 + f22)[flat]
        xy = (f12 + f21)[flat]
        h = half[flat]
        three = (xx + SMALLISH_EPSILON < h + xy) & (xy + SMALLISH_EPSILON < h + xx)
        c = np.full((h.shape[0], 3), np.nan)
        c[:, 0] = 0.0
        c[:, 1] = np.where(three, (h + xy - xx) * 0.5, h)
        c[three, 2] = h[three]
        cand[flat], start[flat], end[flat] = c, 0, np.where(three, 3, 2)

    # PLINK keeps the likelihood of the first candidate as the bar and takes the last candidate
    # that beats it (not the best of all); reproduced so that the rare multi-root cases agree.
    rows = np.arange(P)
    best = np.where(has_center, cand[rows, np.clip(start, 0, 2)], 0.0)
    multi = has_center & ok & (end > start + 1)
    if multi.any():
        args = [a[multi][:, None] for a in (k11, k12, k21, k22, hh, f11, f12, f21, f22, half)]
        C = cand[multi]
        LL = _lnlike(*args, C)
        st = start[multi]
        bar = LL[np.arange(C.shape[0]), st]
        slot = np.arange(3)[None, :]
        better = (slot > st[:, None]) & (slot < end[multi][:, None]) & (LL > bar[:, None])
        last_better = np.where(better.any(1), 2 - np.argmax(better[:, ::-1], axis=1), st)
        best[multi] = C[np.arange(C.shape[0]), last_better]
    f11 = f11 + np.where(has_center, best, 0.0)
    return f11, f1x, fx1, ok


def em_r2(s: PairSums) -> np.ndarray:
    """Signed r² from the EM haplotype frequencies (negative when the counted alleles are in
    repulsion), shape (P,); NaN where PLINK would skip the pair. Compare |r²| with a threshold."""
    f11, f1x, fx1, ok = em_haplotype_freqs(s)
    expected = fx1 * f1x
    d = f11 - expected
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(np.abs(d) >= SMALL_EPSILON, np.abs(d) * d / (expected * (1.0 - f1x) * (1.0 - fx1)), 0.0)
    return np.where(ok, r2, np.nan)


def minor_is_a2(planes: Planes) -> np.ndarray:
    """(k,) True where A1 is the major allele (frequency > 0.5); PLINK 1.9 then counts A2."""
    return planes.a1_freq() > 0.5


def r2_pairs(planes: Planes, i: np.ndarray, j: np.ndarray, method: str = "em") -> np.ndarray:
    """r² for pairs (i[p], j[p]) of rows of `planes`, shape (P,).

    method "em": PLINK 1.9's clumping r² (signed; SNP i is PLINK's first SNP and each SNP counts
    its minor allele, as PLINK does unless --keep-allele-order); "corr": squared correlation.
    NaN marks undefined pairs.
    """
    s = pair_sums(planes, i, j)
    if method == "corr":
        return corr_r2(s)
    if method != "em":
        raise ValueError(f"r² method {method!r} not known, only 'em', 'corr'")
    flip = minor_is_a2(planes)
    return em_r2(s.flipped(flip[np.asarray(i)], flip[np.asarray(j)]))
