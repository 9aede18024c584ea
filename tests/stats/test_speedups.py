"""The compiled .bed kernels (gimtool/_speedups.c) against their numpy/scipy references.

The module is built by `pip install` (setup.py); it is optional for users (gimtool falls back to
numpy), but CI must build it, so these tests fail rather than skip when CI is set.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

try:
    from gimtool import _speedups
except ImportError:  # pragma: no cover - exercised only where no C compiler was available
    _speedups = None
    if os.environ.get("CI"):
        raise

pytestmark = pytest.mark.skipif(_speedups is None, reason="gimtool._speedups was not built (no C compiler)")


def test_t_test_p_equals_scipy():
    """P values equal scipy's incomplete beta to ~1e-12 relative over t and dof (down to 1e-300),
    with the reference evaluated on the side that keeps its precision."""
    from scipy.special import betainc

    from gimtool.stats.assoc import t_test_p

    t = np.concatenate([np.linspace(0, 60, 1201), -np.logspace(-8, 3, 300)])
    for nu in (1, 2, 3, 7, 30, 377, 4747, 1e5):
        d = np.full(t.shape, float(nu))
        p = t_test_p(t, d)
        a, x, y = d / 2, d / (d + t * t), t * t / (d + t * t)
        ref = np.where(x >= (a + 1) / (a + 2.5), 1 - betainc(0.5, a, y), betainc(a, 0.5, x))
        ok = ref > 1e-300
        np.testing.assert_allclose(p[ok], ref[ok], rtol=2e-11 if nu > 1e4 else 1e-12, err_msg=f"dof {nu}")
        assert (p[~ok] < 1e-290).all()
    # the scipy path of the same function agrees where x does not round to 1
    rng = np.random.default_rng(0)
    tt, dd = rng.standard_normal(500) * 4, rng.integers(3, 5000, 500).astype(float)
    np.testing.assert_allclose(t_test_p(tt, dd), t_test_p(tt, dd, compiled=False), rtol=1e-11)
    # NaN and degenerate inputs
    p = t_test_p(np.array([np.nan, 1.0, 1.0, np.inf, 0.0]), np.array([10.0, 0.0, np.nan, 10.0, 10.0]))
    assert np.isnan(p[:3]).all() and p[3] == 0.0 and p[4] == 1.0


@pytest.mark.parametrize("n", [1, 5, 31, 32, 33, 64, 65, 150, 1001])
def test_code_counts_equal_numpy_popcounts(n):
    from gimtool.stats.qc import pack_sample_mask, packed_genotype_counts

    rng = np.random.default_rng(n)
    nb = (n + 3) // 4
    raw = rng.integers(0, 256, (9, nb), dtype=np.uint8)
    mask = rng.random(n) < 0.7
    out = np.empty((9, 4), dtype=np.int64)
    _speedups.code_counts(raw, nb, pack_sample_mask(mask).view(np.uint64), out)
    np.testing.assert_array_equal(out, packed_genotype_counts(raw, n, mask))


@pytest.mark.parametrize("kw,zw", [(3, 4), (6, 8), (12, 12), (13, 16), (20, 24), (30, 32), (63, 64)])
def test_products_and_group_sums_equal_decoded_sums(kw, zw):
    """products = Gᵀ X panel by panel; group_sums = per phenotype Σ g·z and hom-A1 counts over its
    excluded samples, for samples excluded by several phenotypes, at every compiled z width."""
    from gimtool.stats.assoc import _CODE_DOSAGE, byte_table

    rng = np.random.default_rng(5)
    n, m = 203, 11
    nb = (n + 3) // 4
    raw = rng.integers(0, 256, (m, nb), dtype=np.uint8)
    g = byte_table(_CODE_DOSAGE)[raw].reshape(m, -1)  # (m, 4 nb), missing = 0
    x = rng.standard_normal((4 * nb, 24))
    out = np.full((m, 32), np.nan)
    _speedups.products(raw, nb, np.ascontiguousarray(x[:, :8]), 8, out, 32, 8)
    _speedups.products(raw, nb, np.ascontiguousarray(x[:, 8:]), 16, out, 32, 16)
    np.testing.assert_allclose(out[:, 8:], g @ x, rtol=1e-12, atol=1e-12)
    assert np.isnan(out[:, :8]).all()  # only its block is written
    for rows in (1, 3, 5):  # fewer rows than, and not a multiple of, the 4-SNP block
        sub = np.empty((rows, 16))
        _speedups.products(raw[:rows], nb, np.ascontiguousarray(x[:, 8:]), 16, sub, 16, 0)
        np.testing.assert_allclose(sub, g[:rows] @ x[:, 8:], rtol=1e-12, atol=1e-12)

    p = 3
    samples = np.array([3, 7, 8, 50, 51, 52, 120, 202])
    groups = [[0], [0, 2], [1]]  # phenotypes excluding each group
    starts = np.array([0, 3, 5, 8])
    z = np.zeros((len(samples), zw))
    z[:, :kw] = rng.standard_normal((len(samples), kw))
    mstart = np.array([0, 1, 3, 4])
    members = np.array([0, 0, 2, 1])
    agg = np.empty((m, kw + 1, p))
    _speedups.group_sums(raw, nb, samples // 4, (2 * (samples % 4)).astype(np.uint8), z, kw, zw, starts, mstart,
                          members, p, agg)
    hom = (g[:, samples] == 2).astype(float)
    for j in range(p):
        rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i, gr in enumerate(groups) if j in gr])
        np.testing.assert_allclose(agg[:, :kw, j], g[:, samples[rows]] @ z[rows, :kw], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(agg[:, kw, j], hom[:, rows].sum(axis=1))


def test_bad_sizes_are_errors():
    raw = np.zeros((2, 5), dtype=np.uint8)
    with pytest.raises(ValueError, match="inconsistent"):
        _speedups.products(raw, 5, np.zeros((20, 8)), 8, np.zeros((2, 4)), 4, 0)
    with pytest.raises(ValueError, match="width"):
        _speedups.products(raw, 5, np.zeros((20, 12)), 12, np.zeros((2, 12)), 12, 0)
    with pytest.raises(TypeError, match="xp"):
        _speedups.products(raw, 5, np.zeros((20, 8), dtype=np.float32), 8, np.zeros((2, 8)), 8, 0)
    with pytest.raises(ValueError, match="inconsistent"):
        _speedups.group_sums(raw, 5, np.array([99]), np.zeros(1, np.uint8), np.zeros((1, 4)), 3, 4,
                              np.array([0, 1]), np.array([0, 1]), np.array([0]), 1, np.zeros((2, 4, 1)))


def test_format_rows_text_and_errors():
    """Rows are the prefix text, then each column after a tab: floats as %.7g (NaN as NA), ints."""
    prefix = b"rs1\t1rs2\t2"
    offsets = np.array([0, 5, 10], dtype=np.int64)
    x = np.array([0.000123456789, np.nan])
    n = np.array([4747, -3], dtype=np.int64)
    assert _speedups.format_rows(prefix, offsets, "fi", (x, n), 7) == b"rs1\t1\t0.0001234568\t4747\nrs2\t2\tNA\t-3\n"
    with pytest.raises(ValueError, match="length"):
        _speedups.format_rows(prefix, offsets, "f", (np.zeros(3),), 7)
    with pytest.raises(ValueError, match="kind"):
        _speedups.format_rows(prefix, offsets, "x", (x,), 7)
    with pytest.raises(ValueError, match="offsets"):
        _speedups.format_rows(prefix, np.array([0, 50, 10], dtype=np.int64), "f", (x,), 7)
