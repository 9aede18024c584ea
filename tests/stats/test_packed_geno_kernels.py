"""prep-geno's kernels on packed .bed rows (gimtool.stats.qc): the sample-major 2-bit transpose
into the genotype store and the store's decoding, the repacking of a sample subset, missing
calls per sample and genotype counts. The compiled module and the numpy fallback must both give
what decoding the rows gives."""

from __future__ import annotations

import numpy as np
import pytest

from gimtool.conventions import MISSING_INT8
from gimtool.io.plink import encode_bed_chunk
from gimtool.stats import qc


def _rows(g: np.ndarray) -> np.ndarray:
    return np.frombuffer(encode_bed_chunk(g), dtype=np.uint8).reshape(g.shape[1], -1)


@pytest.fixture(params=["compiled", "numpy"])
def backend(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(qc, "_speedups", lambda: None)
    elif qc._speedups() is None:
        pytest.skip("gimtool._speedups not built")
    return request.param


def _genotypes(rng, n, m, missing=0.05):
    g = rng.integers(0, 3, (n, m)).astype(np.int8)
    g[rng.random(g.shape) < missing] = MISSING_INT8
    return g


def _two_bit(g: np.ndarray) -> np.ndarray:
    """The genotype store's rows of g (n, m) int8, by definition: one .bed code per SNP, SNP j in
    byte j // 4 at bits 2 (j % 4), the unused bits 0."""
    code = {2: 0, int(MISSING_INT8): 1, 1: 2, 0: 3}
    n, m = g.shape
    out = np.zeros((n, (m + 3) // 4), dtype=np.uint8)
    for i in range(n):
        for j in range(m):
            out[i, j // 4] |= code[int(g[i, j])] << (2 * (j % 4))
    return out


# sizes around the kernels' blocks: 4 samples or SNPs a byte, 32 x 32 transposes, 128-sample
# block columns, 256-SNP passes
SIZES = [(1, 1), (4, 3), (7, 5), (257, 33), (513, 71), (161, 517), (1003, 300)]


@pytest.mark.parametrize("n,m", SIZES)
def test_sample_major_2bit_transpose(backend, n, m):
    rng = np.random.default_rng(n * 1000 + m)
    g = _genotypes(rng, n, m)
    raw = _rows(g)
    subsets = [np.arange(n), np.sort(rng.choice(n, max(1, n // 2), replace=False)), rng.permutation(n)[: max(1, n // 3)]]
    for idx in subsets:
        expect = _two_bit(g[idx])
        for threads in (1, 2, 3):
            got = qc.SampleMajorPacker(n, idx, threads=threads).pack(raw)
            assert got.flags.c_contiguous and got.dtype == np.uint8
            np.testing.assert_array_equal(got, expect)
        # kept rows picked in place from a span, into a reused buffer (prep-geno's call)
        sel = np.flatnonzero(rng.random(m) < 0.7)
        buf = np.full(len(idx) * m, 7, dtype=np.uint8)
        got = qc.SampleMajorPacker(n, idx, threads=2).pack(raw, sel, out=buf)
        np.testing.assert_array_equal(got, _two_bit(g[idx][:, sel]))
        # SNP chunks starting on multiples of 4 give the column ranges of the whole
        for a in range(0, m, 8):
            np.testing.assert_array_equal(qc.SampleMajorPacker(n, idx).pack(raw[a : a + 8]), expect[:, a // 4 : (a + 8 + 3) // 4])


@pytest.mark.parametrize("n,m", [(1, 1), (9, 7), (33, 130)])
def test_unpack_2bit_and_codes(backend, n, m):
    rng = np.random.default_rng(n + m)
    g = _genotypes(rng, n, m, missing=0.2)
    packed = _two_bit(g)
    np.testing.assert_array_equal(qc.pack_codes(qc.int8_to_codes(g)), packed)
    rows = rng.integers(0, n, 11)
    for first in range(min(m, 6)):
        for ncols in {0, 1, 2, 3, 5, m - first}:
            if first + ncols <= m:
                got = qc.unpack_2bit(packed, rows, first, ncols)
                assert got.dtype == np.int8 and got.shape == (len(rows), ncols)
                np.testing.assert_array_equal(got, g[rows, first : first + ncols])
    bad = g.copy()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match="genotype value 3"):
        qc.int8_to_codes(bad)


@pytest.mark.parametrize("n,m", SIZES)
def test_repack_samples_equals_encoding_the_subset(backend, n, m):
    rng = np.random.default_rng(n + 7 * m)
    g = _genotypes(rng, n, m)
    raw = _rows(g)
    subsets = [np.arange(n), np.arange(1, n) if n > 1 else np.arange(n), np.sort(rng.choice(n, max(1, n // 2), replace=False)),
               np.r_[np.arange(n // 3), np.arange(n // 2, n)], rng.permutation(n)[: max(1, n // 3)], np.array([n - 1])]
    for idx in subsets:
        got = qc.repack_samples(raw, n, idx)
        assert got.tobytes() == encode_bed_chunk(g[idx]), (n, m, len(idx))
        sel = np.unique(np.r_[m - 1, np.flatnonzero(rng.random(m) < 0.6)])  # rows picked in place
        for threads in (1, 2, 3):
            got = qc.repack_samples(raw, n, idx, sel, threads=threads, out=np.full(m * n, 7, dtype=np.uint8))
            assert got.tobytes() == encode_bed_chunk(g[idx][:, sel]), (n, m, len(idx), threads)


def test_missing_per_sample_and_counts(backend):
    rng = np.random.default_rng(3)
    n, m = 1001, 97
    g = _genotypes(rng, n, m, missing=0.03)
    g[5] = MISSING_INT8  # one person missing everywhere
    raw = _rows(g)
    counts = np.zeros(4 * raw.shape[1], dtype=np.int64)
    qc.packed_missing_per_sample(raw, counts)
    qc.packed_missing_per_sample(raw[:10], counts)  # adds
    expect = (g == MISSING_INT8).sum(1) + (g[:, :10] == MISSING_INT8).sum(1)
    np.testing.assert_array_equal(counts[:n], expect)
    assert counts[n:].sum() == 0
    mask = rng.random(n) < 0.7
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(qc.packed_genotype_counts(raw, n, mask, threads=threads), qc.genotype_counts(g[mask]))
