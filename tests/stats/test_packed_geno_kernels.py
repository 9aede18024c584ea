"""prep-geno's kernels on packed .bed rows (gimtool.stats.qc): the sample-major decode of the
genotype store, the repacking of a sample subset, missing calls per sample and genotype counts.
The compiled module and the numpy fallback must both give what decoding the rows gives."""

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


# sizes around the kernels' blocks: 4 samples a byte, 8 x 8 transposes, 32-row and 256-sample tiles
SIZES = [(1, 1), (4, 3), (7, 5), (257, 33), (513, 71), (1003, 300)]


@pytest.mark.parametrize("n,m", SIZES)
def test_sample_major_decode(backend, n, m):
    rng = np.random.default_rng(n * 1000 + m)
    g = _genotypes(rng, n, m)
    raw = _rows(g)
    subsets = [np.arange(n), np.sort(rng.choice(n, max(1, n // 2), replace=False)), rng.permutation(n)[: max(1, n // 3)]]
    for idx in subsets:
        for threads in (1, 2):
            got = qc.SampleMajorDecoder(n, idx, threads=threads).decode(raw)
            assert got.flags.c_contiguous and got.dtype == np.int8
            np.testing.assert_array_equal(got, g[idx])


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
    np.testing.assert_array_equal(qc.packed_genotype_counts(raw, n, mask), qc.genotype_counts(g[mask]))
