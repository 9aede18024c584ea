"""The genotype store: version 2 (2-bit sample-major rows) round-trips the genotypes it was given
(int8 chunks, or .bed rows transposed by prep-geno's kernel), its array-like returns what an int8
memmap of the same values returns for every index form the readers use, and version 1 (int8)
stores on disk still open."""

from __future__ import annotations

import json
import pickle

import numpy as np
import polars as pl
import pytest

from gimtool.conventions import MISSING_INT8
from gimtool.errors import InputError
from gimtool.io.genostore import GENO_FILE, GENO_FILE_V1, GenoStore, GenoStoreWriter, PackedGenotypes, snp_table_hash
from gimtool.io.plink import Bfile, encode_bed_chunk, write_bfile
from gimtool.stats import qc
from gimtool.train.freq import a1_frequencies


def _genotypes(rng, n, m, missing=0.03):
    g = rng.integers(0, 3, (n, m)).astype(np.int8)
    g[rng.random(g.shape) < missing] = MISSING_INT8
    g[:, 0] = MISSING_INT8 if n > 1 else g[:, 0]  # a SNP missing in everyone but the first person
    g[0, 0] = 2
    return g


def _tables(n, m):
    samples = pl.DataFrame({"FID": [f"f{i}" for i in range(n)], "IID": [f"i{i}" for i in range(n)]})
    snps = pl.DataFrame({"CHR": np.ones(m, dtype=np.int64), "SNP": [f"rs{j}" for j in range(m)], "CM": np.arange(m) * 0.01,
                         "BP": np.arange(m, dtype=np.int64) * 100 + 1, "A1": ["A"] * m, "A2": ["G"] * m})
    return samples, snps


def _write(path, g, chunks):
    samples, snps = _tables(*g.shape)
    with GenoStoreWriter(path, samples, snps) as w:
        a = 0
        for c in chunks:
            w.write(g[:, a : a + c])
            a += c
    return GenoStore(path)


@pytest.fixture(params=["compiled", "numpy"])
def backend(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(qc, "_speedups", lambda: None)
    elif qc._speedups() is None:
        pytest.skip("gimtool._speedups not built")
    return request.param


@pytest.mark.parametrize("n,m,chunks", [(1, 1, [1]), (5, 7, [3, 1, 3]), (13, 41, [5, 17, 19]), (40, 1030, [257, 773])])
def test_int8_chunks_round_trip(tmp_path, backend, n, m, chunks):
    rng = np.random.default_rng(n * m)
    g = _genotypes(rng, n, m)
    store = _write(tmp_path / "s.geno", g, chunks)
    assert store.version == 2 and isinstance(store.genotypes, PackedGenotypes)
    assert (tmp_path / "s.geno" / GENO_FILE).stat().st_size == n * ((m + 3) // 4)
    assert store.meta["encoding"] == "plink-2bit" and store.meta["snp_hash"] == snp_table_hash(store.snps)
    np.testing.assert_array_equal(np.asarray(store.genotypes), g)
    np.testing.assert_array_equal(store.rows([n - 1, 0]), g[[n - 1, 0]])


def test_equals_bed_reader_with_a_subset_and_a_permutation(tmp_path, backend):
    """prep-geno's path: .bed rows transposed by SampleMajorPacker, written in chunks that start on
    multiples of 4 SNPs, for a --keep subset in a shuffled order; the store equals bed-reader's
    decode of the .bed."""
    rng = np.random.default_rng(5)
    n, m = 203, 1001
    g = _genotypes(rng, n, m, missing=0.05)
    samples, snps = _tables(n, m)
    fam = samples.with_columns(pl.lit("0").alias("FATHER"), pl.lit("0").alias("MOTHER"), pl.lit(0).alias("SEX"),
                               pl.lit("-9").alias("PHENO"))
    bim = snps.with_columns(pl.col("CHR").cast(pl.Utf8))
    write_bfile(str(tmp_path / "b"), g, fam, bim)
    bf = Bfile(str(tmp_path / "b"))
    rows = bf.packed(slice(0, m))
    for idx in (np.arange(n), np.sort(rng.choice(n, 150, replace=False)), rng.permutation(n)[:77]):
        packer = qc.SampleMajorPacker(n, idx, threads=2)
        with GenoStoreWriter(tmp_path / "p.geno", samples[idx], snps) as w:
            for a in range(0, m, 256):
                blk = rows[a : a + 256]
                w.write_packed(packer.pack(blk), len(blk))
        got = np.asarray(GenoStore(tmp_path / "p.geno").genotypes)
        np.testing.assert_array_equal(got, bf.read(samples=idx))
        np.testing.assert_array_equal(got, g[idx])


def _keys(n, m, rng):
    rows = [0, n - 1, -1, -n, np.int64(3), slice(None), slice(2, 9), slice(None, None, 3), slice(9, 2, -2), slice(5, 5),
            slice(-4, None), np.array([4, 1, 4, 0]), [7, 2], np.array([[1, 2], [3, 0]]), rng.random(n) < 0.4,
            np.array([], dtype=np.int64), np.array([-1, -2]), ...]
    cols = [0, m - 1, -3, slice(None), slice(3, 30), slice(1, None, 4), slice(20, 2, -3), slice(None, None, -1),
            slice(7, 7), np.array([5, 2, 5, m - 1]), rng.random(m) < 0.3, np.array([], dtype=np.int64), [0], ...]
    for r in rows:
        yield r
        for c in cols:
            yield (r, c)


def test_indexing_returns_what_an_int8_memmap_returns(tmp_path):
    rng = np.random.default_rng(11)
    n, m = 12, 37
    g = _genotypes(rng, n, m, missing=0.2)
    packed = _write(tmp_path / "s.geno", g, [m]).genotypes
    path = tmp_path / "ref.i8"
    g.tofile(path)
    ref = np.memmap(path, dtype=np.int8, mode="r", shape=(n, m))
    assert packed.shape == ref.shape and packed.dtype == ref.dtype and packed.ndim == ref.ndim and len(packed) == len(ref)
    assert packed.size == ref.size
    for key in _keys(n, m, rng):
        try:
            want = np.asarray(ref[key])
        except IndexError:
            with pytest.raises(IndexError):
                packed[key]
            continue
        got = packed[key]
        assert np.shape(got) == want.shape and np.asarray(got).dtype == np.int8, key
        np.testing.assert_array_equal(got, want, err_msg=str(key))
    for bad in (n, -n - 1, np.array([0, n]), (0, m), (slice(None), np.array([m])), np.ones(n + 1, dtype=bool),
                (0, 0, 0), (None, 0), 1.5):
        with pytest.raises(IndexError):
            packed[bad]
    assert [np.asarray(r).tolist() for r in packed] == g.tolist()  # iteration by index, as for an array


def test_readers_get_the_same_from_both_versions(tmp_path):
    """Version 1 (int8) stores on disk still open; what train's allele frequencies and mi's
    row reader compute is the same on both versions."""
    rng = np.random.default_rng(2)
    n, m = 30, 45
    g = _genotypes(rng, n, m)
    v2 = _write(tmp_path / "v2.geno", g, [10, 35])
    d = tmp_path / "v1.geno"
    d.mkdir()
    g.tofile(d / GENO_FILE_V1)
    for f in ("snps.tsv", "samples.tsv"):
        (d / f).write_bytes((tmp_path / "v2.geno" / f).read_bytes())
    meta = {"format": "gimtool-genostore", "version": 1, "n_samples": n, "n_snps": m, "dtype": "int8", "missing": -127,
            "snp_hash": v2.snp_hash}
    (d / "meta.json").write_text(json.dumps(meta))
    v1 = GenoStore(d)
    assert v1.version == 1 and isinstance(v1.genotypes, np.memmap)
    np.testing.assert_array_equal(np.asarray(v1.genotypes), g)
    assert v1.snp_hash == v2.snp_hash and v1.snps.equals(v2.snps) and v1.samples.equals(v2.samples)
    rows = np.array([3, 9, 4, 28])
    np.testing.assert_array_equal(a1_frequencies(v2.genotypes, rows, chunk=3), a1_frequencies(v1.genotypes, rows, chunk=3))
    np.testing.assert_array_equal(v2.genotypes[rows, 5:40], v1.genotypes[rows, 5:40])
    # a v1 store of the wrong size, and a version this gimtool does not know, are refused
    (d / GENO_FILE_V1).write_bytes(g.tobytes()[:-1])
    with pytest.raises(InputError, match="does not fit"):
        GenoStore(d)
    (d / "meta.json").write_text(json.dumps({**meta, "version": 3}))
    with pytest.raises(InputError, match="version 3"):
        GenoStore(d)


def test_pickles_by_path(tmp_path):
    g = _genotypes(np.random.default_rng(4), 6, 9)
    G = _write(tmp_path / "s.geno", g, [9]).genotypes
    data = pickle.dumps(G)
    assert len(data) < 400  # the path, not the matrix
    np.testing.assert_array_equal(np.asarray(pickle.loads(data)), g)


def test_writer_refuses_what_the_store_cannot_hold(tmp_path):
    rng = np.random.default_rng(8)
    g = _genotypes(rng, 5, 10)
    samples, snps = _tables(5, 10)
    raw = np.frombuffer(encode_bed_chunk(g), dtype=np.uint8).reshape(10, -1)
    packer = qc.SampleMajorPacker(5, np.arange(5))
    with pytest.raises(ValueError, match="genotype value 3"):
        with GenoStoreWriter(tmp_path / "a.geno", samples, snps) as w:
            w.write(np.full((5, 10), 3, dtype=np.int8))
    with pytest.raises(ValueError, match="multiple of 4"):
        with GenoStoreWriter(tmp_path / "b.geno", samples, snps) as w:
            w.write(g[:, :3])
            w.write_packed(packer.pack(raw[3:]), 7)
    with pytest.raises(ValueError, match="may only end"):
        with GenoStoreWriter(tmp_path / "c.geno", samples, snps) as w:
            w.write_packed(packer.pack(raw[:6]), 6)
    with pytest.raises(ValueError, match="more SNPs"):
        with GenoStoreWriter(tmp_path / "d.geno", samples, snps) as w:
            w.write(np.concatenate([g, g], axis=1))
    with pytest.raises(ValueError, match="wrote 9 of 10"):
        with GenoStoreWriter(tmp_path / "e.geno", samples, snps) as w:
            w.write(g[:, :9])
    assert not any(p.name.endswith(".geno") for p in tmp_path.iterdir())
    with GenoStoreWriter(tmp_path / "f.geno", samples, snps) as w:  # int8 and 2-bit chunks mixed
        w.write(g[:, :4])
        w.write_packed(packer.pack(raw[4:8]), 4)
        w.write(g[:, 8:])
    np.testing.assert_array_equal(np.asarray(GenoStore(tmp_path / "f.geno").genotypes), g)
