"""LD and locus kernels: the EM r² against a slow numpy EM, bit planes, the locus count."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gimtool.stats import clump as C
from gimtool.stats import ld
from gimtool.stats import loci as L


def em_r2_reference(a: np.ndarray, b: np.ndarray) -> float:
    """|r²| from two-locus haplotype frequencies by plain EM iterations (several starts, best
    likelihood kept). a, b: A1 counts with -127 missing."""
    ok = (a >= 0) & (b >= 0)
    a, b = a[ok].astype(int), b[ok].astype(int)
    known = np.zeros((2, 2))  # [allele at SNP1 is 1?][allele at SNP2 is 1?]
    hh = 0
    for x, y in zip(a, b):
        if x == 1 and y == 1:
            hh += 1
        elif x != 1:
            known[int(x == 2), 1] += y
            known[int(x == 2), 0] += 2 - y
        else:
            known[1, int(y == 2)] += 1
            known[0, int(y == 2)] += 1
    tot = known.sum() + 2 * hh
    best, best_ll = None, -np.inf
    for w in (1e-3, 0.25, 0.5, 0.75, 1 - 1e-3):
        for _ in range(20000):
            f = (known + hh * np.array([[w, 1 - w], [1 - w, w]])) / tot
            den = f[1, 1] * f[0, 0] + f[1, 0] * f[0, 1]
            w_new = f[1, 1] * f[0, 0] / den if den > 0 else 0.5
            if abs(w_new - w) < 1e-15:
                break
            w = w_new
        f = (known + hh * np.array([[w, 1 - w], [1 - w, w]])) / tot
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = np.nansum(np.where(known > 0, known * np.log(f), 0.0))
            if hh:
                ll += hh * np.log(f[1, 1] * f[0, 0] + f[1, 0] * f[0, 1])
        if ll > best_ll + 1e-12:
            best, best_ll = f, ll
    p1, q1 = best[1].sum(), best[:, 1].sum()
    d = best[1, 1] - p1 * q1
    return d * d / (p1 * (1 - p1) * q1 * (1 - q1))


@pytest.fixture(scope="module")
def eur_window(eur_bfile):
    from gimtool.io.plink import Bfile

    bf = Bfile(eur_bfile)
    rows = np.arange(34400, 34600)  # chr20 around rs6077439
    return bf, rows, bf.read(snps=rows)


def test_em_r2_reference_pair(eur_bfile):
    """TOOLS.md: rs6077439 with rs6140736 gives 0.320 in PLINK (EM) and 0.298 by correlation."""
    from gimtool.io.plink import Bfile

    bf = Bfile(eur_bfile)
    ids = bf.bim["SNP"].to_list()
    rows = [ids.index("rs6077439"), ids.index("rs6140736")]
    P = ld.planes_from_int8(bf.read(snps=rows))
    assert round(float(ld.r2_pairs(P, [0], [1])[0]), 3) == 0.320
    assert round(float(ld.r2_pairs(P, [0], [1], "corr")[0]), 3) == 0.298
    G = bf.read(snps=rows)
    assert float(ld.r2_pairs(P, [0], [1])[0]) == pytest.approx(em_r2_reference(G[:, 0], G[:, 1]), rel=1e-9)


def test_em_r2_matches_numpy_em_on_real_ld(eur_window):
    _, _, G = eur_window
    rng = np.random.default_rng(0)
    i = rng.integers(0, G.shape[1], 150)
    j = np.clip(i + rng.integers(1, 30, 150), 0, G.shape[1] - 1)
    P = ld.planes_from_int8(G)
    got = np.abs(ld.r2_pairs(P, i, j))
    ref = np.array([em_r2_reference(G[:, a], G[:, b]) for a, b in zip(i, j)])
    defined = ~np.isnan(got)
    assert defined.sum() > 100
    np.testing.assert_allclose(got[defined], ref[defined], rtol=1e-7, atol=1e-10)


def test_em_r2_with_missing_and_small_samples():
    rng = np.random.default_rng(3)
    for n in (5, 13, 64, 65, 200):
        G = rng.choice(np.array([0, 1, 2, -127], dtype=np.int8), size=(n, 12), p=[0.3, 0.4, 0.2, 0.1])
        P = ld.planes_from_int8(G)
        i, j = np.triu_indices(12, 1)
        got = np.abs(ld.r2_pairs(P, i, j))
        for k in range(i.size):
            ref = em_r2_reference(G[:, i[k]], G[:, j[k]])
            if np.isnan(got[k]):
                continue
            assert got[k] == pytest.approx(ref, rel=1e-6, abs=1e-9), (n, i[k], j[k])
        # correlation: pairwise-complete Pearson r²
        c = ld.r2_pairs(P, i, j, "corr")
        for k in range(i.size):
            ok = (G[:, i[k]] >= 0) & (G[:, j[k]] >= 0)
            x, y = G[ok, i[k]].astype(float), G[ok, j[k]].astype(float)
            if ok.sum() > 2 and x.std() > 0 and y.std() > 0:
                assert c[k] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-9)


def test_planes_from_bed_equal_planes_from_int8(eur_window):
    """The raw .bed path (used by the command) and the int8 path give the same pair sums,
    also with samples left out."""
    bf, rows, G = eur_window
    nb = (bf.n_samples + 3) // 4
    raw = np.memmap(bf.bed_path, dtype=np.uint8, mode="r", offset=3, shape=(bf.n_snps, nb))[rows]
    keep = np.random.default_rng(1).random(bf.n_samples) < 0.7
    a = ld.planes_from_bed(raw, bf.n_samples, keep)
    b = ld.planes_from_int8(G, keep)
    for f in ("hom1", "het", "obs", "n_obs", "a1", "a1_sq"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    sub = ld.planes_from_int8(G[keep])
    i, j = np.arange(0, 50), np.arange(1, 51)
    np.testing.assert_array_equal(ld.r2_pairs(a, i, j), ld.r2_pairs(sub, i, j))


def test_flipped_sums_match_recounting():
    rng = np.random.default_rng(5)
    G = rng.choice(np.array([0, 1, 2, -127], dtype=np.int8), size=(90, 6), p=[0.3, 0.4, 0.25, 0.05])
    F = np.where(G >= 0, 2 - G, G).astype(np.int8)
    i, j = np.array([0, 1, 2]), np.array([3, 4, 5])
    s = ld.pair_sums(ld.planes_from_int8(G), i, j).flipped(np.array([True, False, True]), np.array([True, True, False]))
    G2 = G.copy()
    G2[:, [0, 2, 3, 4]] = F[:, [0, 2, 3, 4]]
    t = ld.pair_sums(ld.planes_from_int8(G2), i, j)
    for f in ("n", "s_i", "s_j", "q_i", "q_j", "s_ij", "hh"):
        np.testing.assert_array_equal(getattr(s, f), getattr(t, f))


def test_bp_radius_and_histogram_bins():
    assert C.bp_radius(250) == 249_999
    assert C.bp_radius(0.5) == 499
    np.testing.assert_array_equal(C.p_histogram_bin([0.5, 0.05, 0.049, 0.01, 0.001, 0.0001, 1e-5]), [0, 0, 1, 1, 2, 3, 4])


def test_clump_kernel_colocated_entries_and_order():
    """Two files: the index SNP's entry in the other file joins its clump with r² 1; ties in P go
    by reference order; SNPs outside the window or below r² stay out."""
    chrom = np.array([1, 1, 1, 1, 2])
    bp = np.array([100, 200, 300, 1_000_000, 100])
    r2 = np.array([
        [1, 0.9, 0.05, 0.9, 0],
        [0.9, 1, 0.5, 0.2, 0],
        [0.05, 0.5, 1, 0.1, 0],
        [0.9, 0.2, 0.1, 1, 0],
        [0, 0, 0, 0, 1],
    ])
    E = C.group_entries(5, np.array([0, 1, 1, 2, 3, 4]), np.array([1, 1, 2, 2, 1, 1]),
                        np.array([1e-6, 1e-6, 0.2, 1e-5, 1e-7, 0.03]))
    res = C.clump(chrom, bp, E, lambda i, j: r2[i, j], p1=1e-4, p2=0.05, r2=0.3, kb=250)
    assert [c.index for c in res] == [3, 0, 2]
    c3, c0, c2 = res
    assert c3.member_snp.size == 0 and c3.total == 0  # SNP 0 is far away
    np.testing.assert_array_equal(c0.member_snp, [1])  # SNP 1 (file 1); its file-2 entry P 0.2 is counted, not listed
    assert c0.total == 2 and c0.histo[0] == 1
    assert (c2.index, c2.file, c2.total) == (2, 2, 0)  # r² 0.05 with SNP 0; SNP 1 already clumped


def test_merge_loci_hand_made():
    chrom = np.array(["1", "1", "1", "1", "2", "10", "1"])
    bp = np.array([1_000_000, 1_250_000, 1_500_001, 1_500_001, 1_000_000, 5, 1_250_000])
    snp = np.array(["a", "b", "c", "c", "d", "e", "b"])
    p = np.array([1e-10, 1e-12, 1e-9, 2e-11, 3e-10, 1e-20, 4e-12])
    ph = np.array([0, 0, 0, 1, 1, 0, 1])
    t = L.merge_loci(chrom, bp, snp, p, ph, ["PC1", "PC2"], kb=250)
    # 1:1.00-1.25 Mb (gap exactly 250 kb merges), 1:1.5 Mb (gap 250,001 splits), 2, 10 (numeric order)
    assert t["CHR"].to_list() == ["1", "1", "2", "10"]
    assert t["START"].to_list() == [1_000_000, 1_500_001, 1_000_000, 5]
    assert t["END"].to_list() == [1_250_000, 1_500_001, 1_000_000, 5]
    assert t["LEAD_SNP"].to_list() == ["b", "c", "d", "e"]
    assert t["LEAD_P"].to_list() == [1e-12, 2e-11, 3e-10, 1e-20]
    assert t["NSNP"].to_list() == [2, 1, 1, 1]  # b counted once although both phenotypes hit it
    assert t["PHENOS"].to_list() == ["PC1,PC2", "PC1,PC2", "PC2", "PC1"]
    assert t["LOCUS"].to_list() == [1, 2, 3, 4]


def test_significance_is_strict_and_maf_folded():
    m = L.significant_mask(np.array([5e-9, 4.9e-9, 1e-10, 1e-10, 1e-10, np.nan]),
                           np.array([0.2, 0.2, 0.995, 0.009, 0.01, 0.3]), 5e-9, 0.01)
    assert m.tolist() == [False, True, False, False, True, False]


def test_loci_from_sumstats_fills_maf_from_reference():
    df = pl.DataFrame({"SNP": ["s1", "s2", "s3"], "CHR": ["1", "1", "1"], "BP": [10, 20, 10_000_000],
                       "P": [1e-10, 1e-10, 1e-10], "A1FREQ": [None, 0.5, None]}, schema_overrides={"A1FREQ": pl.Float64})
    bim = pl.DataFrame({"SNP": ["s1", "x"]})
    t, st = L.loci_from_sumstats([df], ["P1"], bim, lambda rows: np.array([0.001] * len(rows)), p=5e-9)
    # s1 is rare by the reference, s3 has no frequency at all: only s2 is left
    assert t["LEAD_SNP"].to_list() == ["s2"]
    assert st == {"n_sig": 1, "maf_from_ref": 1, "no_maf": 1}


def test_unique_loci():
    mine = pl.DataFrame({"CHR": ["1", "1", "2", "3"], "START": [1_000_000, 5_000_000, 100, 100], "END": [1_100_000, 5_000_000, 200, 200]})
    other1 = pl.DataFrame({"CHR": ["1"], "START": [1_350_000], "END": [1_400_000]})  # 250 kb from locus 1: not unique
    other2 = pl.DataFrame({"CHR": ["2", "1"], "START": [450_201, 5_250_001], "END": [460_000, 5_300_000]})  # 250,001 away: unique
    u = L.unique_loci(mine, [other1, other2], kb=250)
    assert u.tolist() == [False, True, True, True]


@pytest.mark.parametrize("n", [1, 7, 8, 33, 379])
def test_planes_from_bed_random_bytes(n):
    """Every .bed code (missing included) at every sample count parity: the one-gather decode of
    planes_from_bed equals planes_from_int8 of the genotypes the codes stand for."""
    from gimtool.io.plink import encode_bed_chunk

    rng = np.random.default_rng(n)
    G = rng.choice(np.array([0, 1, 2, -127], dtype=np.int8), size=(n, 40), p=[0.3, 0.35, 0.3, 0.05])
    raw = np.frombuffer(encode_bed_chunk(G), dtype=np.uint8).reshape(40, (n + 3) // 4)
    keep = rng.random(n) < 0.8
    a, b = ld.planes_from_bed(raw, n, keep), ld.planes_from_int8(G, keep)
    rows = np.array([5, 0, 39, 7, 7, 12, 30, 31, 2])
    c = ld.planes_from_reader(lambda r: raw[r], rows, n, keep, chunk=4)  # chunks of 4 rows, any order
    d = ld.planes_from_int8(G[:, rows], keep)
    for f in ("hom1", "het", "obs", "n_obs", "a1", "a1_sq", "complete"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        np.testing.assert_array_equal(getattr(c, f), getattr(d, f))


def test_clump_sumstats_aligned_frame_equals_joined():
    """Sumstats in the reference's SNP order skip the SNP join (fast path); the clumps, members
    and counts equal those of the same rows shuffled (and of the rows plus an unknown SNP), which
    go through the join."""
    import polars as pl

    from gimtool.io.plink import encode_bed_chunk
    from gimtool.pipelines.clump import clump_sumstats

    rng = np.random.default_rng(3)
    n, m = 200, 400
    base = rng.choice(np.array([0, 1, 2], dtype=np.int8), size=(n, 1))
    G = np.where(rng.random((n, m)) < 0.8, base, rng.choice(np.array([0, 1, 2], dtype=np.int8), size=(n, m)))
    G[rng.random((n, m)) < 0.01] = -127
    raw = np.frombuffer(encode_bed_chunk(G.astype(np.int8)), dtype=np.uint8).reshape(m, (n + 3) // 4)
    bim = pl.DataFrame({"CHR": ["1"] * 200 + ["2"] * 200, "SNP": [f"rs{k}" for k in range(m)],
                        "CM": [0.0] * m, "BP": np.r_[np.arange(200), np.arange(200)] * 1000 + 1, "A1": ["A"] * m, "A2": ["G"] * m})
    p = 10 ** -rng.uniform(0, 10, m)
    p[::37] = np.nan
    aligned = pl.DataFrame({"SNP": bim["SNP"], "P": p})
    shuffled = aligned.sample(fraction=1.0, shuffle=True, seed=1)
    extra = pl.concat([aligned, pl.DataFrame({"SNP": ["unknown"], "P": [1e-9]})])

    def run(frames):
        return clump_sumstats(bim, frames, lambda rows: raw[rows], n, None, p1=1e-5, p2=0.05, r2=0.2, kb=50)

    a = run([aligned, shuffled])
    for other in (run([shuffled, shuffled]), run([extra, shuffled])):
        assert a.table.equals(other.table) and a.members.equals(other.members)
        assert (a.n_index_eligible, a.n_loaded, a.n_pairs) == (other.n_index_eligible, other.n_loaded, other.n_pairs)
    assert a.table.height > 3
    assert a.file_stats[0] == {**run([shuffled]).file_stats[0]}
    assert a.file_stats[0]["no_p"] == int(np.isnan(p).sum())
