"""QC kernels against slow, obvious references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

from gimtool.io.plink import MISSING_INT8, encode_bed_chunk
from gimtool.stats import qc


def _slow_hwe(n0: int, n1: int, n2: int) -> float:
    """Enumerate every het count with the allele counts fixed (Wigginton et al. 2005)."""
    n = n0 + n1 + n2
    na, nb = 2 * n2 + n1, 2 * n0 + n1
    ks = np.arange(min(na, nb) % 2, min(na, nb) + 1, 2)
    lp = (ks * np.log(2) + gammaln(n + 1) + gammaln(na + 1) + gammaln(nb + 1) - gammaln(2 * n + 1)
          - gammaln(ks + 1) - gammaln((na - ks) // 2 + 1) - gammaln((nb - ks) // 2 + 1))
    pr = np.exp(lp)
    po = pr[ks == n1][0]
    return float(pr[pr <= po * (1 + 1e-7)].sum())


def test_hwe_exact_matches_enumeration():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(200):
        n = int(rng.integers(3, 4000))
        g = rng.binomial(2, rng.uniform(0.001, 0.5), size=n)
        if rng.random() < 0.3:  # heterozygote deficit
            g[rng.random(n) < 0.3] = 0
        rows.append([np.sum(g == 0), np.sum(g == 1), np.sum(g == 2), 0])
    rows += [[0, 0, 10, 0], [5, 0, 5, 0], [0, 10, 0, 0], [1000, 0, 1000, 0]]  # monomorphic, extreme
    counts = np.array(rows)
    got = qc.hwe_exact_p(counts)
    ref = np.array([_slow_hwe(*r[:3]) for r in rows])
    big = ref > 1e-250
    np.testing.assert_allclose(got[big], ref[big], rtol=1e-8)
    assert np.all(got[~big] < 1e-200)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), m=st.integers(1, 9), seed=st.integers(0, 2**31), frac=st.floats(0, 1))
def test_packed_counts_equal_decoded_counts(n, m, seed, frac):
    rng = np.random.default_rng(seed)
    G = rng.choice(np.array([0, 1, 2, MISSING_INT8], dtype=np.int8), size=(n, m))
    rows = np.frombuffer(encode_bed_chunk(G), dtype=np.uint8).reshape(m, -1)
    mask = rng.random(n) < frac
    np.testing.assert_array_equal(qc.packed_genotype_counts(rows, n), qc.genotype_counts(G))
    np.testing.assert_array_equal(qc.packed_genotype_counts(rows, n, mask), qc.genotype_counts(np.ascontiguousarray(G[mask])))


def test_interpolation_and_units():
    cm = qc.interpolate_cm(np.array([0, 5, 15, 30]), np.array([10, 20]), np.array([1.0, 3.0]))
    np.testing.assert_allclose(cm, [-1.0, 0.0, 2.0, 5.0])  # terminal rate (0.2 cM per bp unit) beyond the ends
    chrom = np.array([1, 1, 2, 2])
    bp = np.array([1e6, 5e7, 2e6, 8e7])
    assert qc.detect_cm_units(chrom, bp, np.array([0.01, 0.5, 0.02, 0.8])) == "morgans"
    assert qc.detect_cm_units(chrom, bp, np.array([1.0, 50.0, 2.0, 80.0])) == "cm"
    assert qc.detect_cm_units(chrom, bp, np.zeros(4)) == "zero"
