"""The genotype store written by `prep-geno` and read by `train`, `mi`, `pcs --guided-by` (and
anything needing one person's whole genome in one contiguous read).

Layout of ``<out>.geno/`` (version 2, written since issue 15)::

    genotypes.2bit  uint8, shape (n_samples, ceil(n_snps / 4)), C order: sample-major, 4 SNPs a
                    byte in PLINK .bed codes: SNP j of a sample in byte j // 4, bits 2 (j % 4)
                    (low bits first); 00 = 2 copies of A1, 01 = missing, 10 = 1 copy, 11 = none.
                    The unused bits of a row's last byte are 0. Memory-mapped when read.
    snps.tsv        CHR SNP CM BP A1 A2   (CM in centimorgans)
    samples.tsv     FID IID
    meta.json       {"format": "gimtool-genostore", "version": 2, "n_samples", "n_snps",
                     "encoding": "plink-2bit", "row_bytes", "dtype": "int8" (what reads return),
                     "missing": -127, "snp_hash": sha256 of the SNP table}

Version 1 stores (still read) hold ``genotypes.i8`` instead: raw int8, shape (n_samples, n_snps),
counts of A1, missing = -127 (gimtool.conventions.MISSING_INT8); 4x the bytes.

Readers see the same thing from both versions: ``GenoStore.genotypes`` is an (n_samples,
n_snps) int8 array-like (a memmap for version 1, a :class:`PackedGenotypes` that decodes the
rows it is indexed with for version 2), counts of A1 with missing = -127.

The writer fills the matrix SNP chunk by SNP chunk (each person's piece of a chunk written at its
offset), so memory stays bounded whatever the cohort size. prep-geno hands it 2-bit rows
transposed straight from the .bed (:meth:`GenoStoreWriter.write_packed`); other writers hand it
int8 chunks (:meth:`GenoStoreWriter.write`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.conventions import MISSING_INT8, SAMPLE_COLS, SNP_COLS
from gimtool.errors import InputError
from gimtool.io.atomic import TempNameWriter
from gimtool.io.stores import read_meta
from gimtool.stats import qc

FORMAT = "gimtool-genostore"
VERSION = 2
GENO_FILE = "genotypes.2bit"
GENO_FILE_V1 = "genotypes.i8"


def snp_table_hash(snps: pl.DataFrame) -> str:
    """A hash of the SNP table (CHR SNP BP A1 A2), used to refuse a checkpoint trained on other SNPs."""
    h = hashlib.sha256()
    for c in ("CHR", "SNP", "BP", "A1", "A2"):
        # the column's values as text joined by \x1f (polars: 10x faster than str() of each value)
        h.update(snps[c].cast(pl.Utf8).str.join("\x1f").item().encode())
        h.update(b"\x1e")
    return h.hexdigest()


class GenoStoreWriter(TempNameWriter):
    """Create a (version 2) store at `path` (written to a temporary folder, renamed on :meth:`close`).

    The SNPs arrive in order, chunk by chunk, either as int8 genotypes (:meth:`write`, any chunk
    size) or as 2-bit rows (:meth:`write_packed`, chunks starting on a multiple of 4 SNPs)."""

    def __init__(self, path: str | os.PathLike, samples: pl.DataFrame, snps: pl.DataFrame):
        super().__init__(path, folder=True)
        self.samples = samples.select(list(SAMPLE_COLS))
        self.snps = snps.select(list(SNP_COLS))
        self.n_samples, self.n_snps = self.samples.height, self.snps.height
        self.row_bytes = (self.n_snps + 3) // 4
        # Written with pwrite, one sample row-piece at a time, rather than through a memmap: dirty
        # pages of a writable memmap count against the process until flushed, and a sample-major
        # file filled SNP chunk by SNP chunk would otherwise keep the whole matrix resident.
        self._fd = os.open(self.tmp / GENO_FILE, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, self.n_samples * self.row_bytes)
        self._next = 0  # SNPs on disk (a multiple of 4 until the end)
        self._carry = np.zeros((self.n_samples, 0), dtype=np.uint8)  # codes of < 4 SNPs not yet written
        self._snp_hash: str | None = None

    def write_tables(self) -> None:
        """Write snps.tsv and samples.tsv and hash the SNP table now (else :meth:`close` does):
        prep-geno has its writer thread do it while the matrix is transposed."""
        self.snps.write_csv(self.tmp / "snps.tsv", separator="\t")
        self.samples.write_csv(self.tmp / "samples.tsv", separator="\t")
        self._snp_hash = snp_table_hash(self.snps)

    def write(self, G: np.ndarray) -> None:
        """Append the next SNP chunk, G of shape (n_samples, m) int8 (counts of A1, missing =
        MISSING_INT8; any other value is a ValueError)."""
        if G.ndim != 2 or G.shape[0] != self.n_samples:
            raise ValueError(f"expected ({self.n_samples}, m) genotypes, got {G.shape}")
        self._check_room(G.shape[1])
        codes = qc.int8_to_codes(G)
        if self._carry.shape[1]:
            codes = np.concatenate([self._carry, codes], axis=1)
        whole = codes.shape[1] if self._next + codes.shape[1] == self.n_snps else codes.shape[1] // 4 * 4
        self._write_block(qc.pack_codes(codes[:, :whole]), whole)
        self._carry = np.ascontiguousarray(codes[:, whole:])

    def write_packed(self, block: np.ndarray, m: int) -> None:
        """Append the next m SNPs as 2-bit rows, block (n_samples, ceil(m / 4)) uint8 in the
        store's layout (qc.SampleMajorPacker's output)."""
        if block.shape != (self.n_samples, (m + 3) // 4) or block.dtype != np.uint8:
            raise ValueError(f"expected ({self.n_samples}, {(m + 3) // 4}) uint8 rows, got {block.shape} {block.dtype}")
        if self._carry.shape[1]:
            raise ValueError("2-bit rows must start on a multiple of 4 SNPs")
        self._check_room(m)
        if m % 4 and self._next + m != self.n_snps:
            raise ValueError(f"2-bit rows of {m} SNPs (not a multiple of 4) may only end the store")
        self._write_block(block, m)

    def _check_room(self, m: int) -> None:
        if self._next + self._carry.shape[1] + m > self.n_snps:
            raise ValueError(f"more SNPs written than the {self.n_snps} declared")

    def _write_block(self, block: np.ndarray, m: int) -> None:
        """Write the 2-bit rows of the next m SNPs: each sample's piece at its offset (one write
        when the block is the whole matrix)."""
        if m == 0:
            return
        w = block.shape[1]
        mv = memoryview(np.ascontiguousarray(block)).cast("B")
        byte0 = self._next // 4
        sp = qc._speedups()
        if w == self.row_bytes:  # the whole matrix (byte0 is 0): one write, however long it takes
            done = 0
            while done < len(mv):
                done += os.pwrite(self._fd, mv[done:], done)
        elif sp is not None and hasattr(sp, "pwrite_rows"):
            sp.pwrite_rows(self._fd, mv, w, self.row_bytes, byte0)  # the loop below in C, without the GIL
        else:
            fd, rb = self._fd, self.row_bytes
            for i in range(self.n_samples):
                os.pwrite(fd, mv[i * w : (i + 1) * w], i * rb + byte0)
        self._next += m

    def _finish(self) -> None:
        if self._next != self.n_snps:
            self.abort()
            raise ValueError(f"wrote {self._next + self._carry.shape[1]} of {self.n_snps} SNPs")
        os.close(self._fd)
        if self._snp_hash is None:
            self.write_tables()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "n_samples": self.n_samples,
            "n_snps": self.n_snps,
            "encoding": "plink-2bit",
            "row_bytes": self.row_bytes,
            "dtype": "int8",
            "missing": MISSING_INT8,
            "snp_hash": self._snp_hash,
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if self.path.exists() and not self.path.is_dir():
            self.path.unlink()

    def _release(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def _row_index(key, n: int) -> tuple[np.ndarray, object]:
    """A row key of an (n, .) array -> (the rows to decode, int64 1-D; where each lands in the
    result: None for an integer key, else the index into the decoded block that gives the
    result the shape numpy would)."""
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        i = int(key)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis 0 with size {n}")
        return np.array([i % n], dtype=np.int64), None
    if key is Ellipsis:
        key = slice(None)
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64), slice(None)
    arr = _int_index(key, n, 0)
    return arr.ravel(), np.arange(arr.size).reshape(arr.shape)


def _int_index(key, n: int, axis: int) -> np.ndarray:
    """An array-like key (integers or a boolean mask) along an axis of size n, as int64 in [0, n)."""
    arr = np.asarray(key)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean index of shape {arr.shape} does not match axis {axis} of size {n}")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise IndexError(f"only integers, slices, integer or boolean arrays are valid indices (got {arr.dtype})")
    arr = arr.astype(np.int64)
    if arr.min() < -n or arr.max() >= n:
        raise IndexError(f"index out of bounds for axis {axis} with size {n}")
    return np.where(arr < 0, arr + n, arr)


def _col_range(key, m: int) -> tuple[int, int, object]:
    """A column key of an (., m) array -> (first column to decode, how many, the key relative to
    the first): only the bytes holding the columns asked for are decoded."""
    if key is Ellipsis:
        key = slice(None)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        j = int(key)
        if not -m <= j < m:
            raise IndexError(f"index {j} is out of bounds for axis 1 with size {m}")
        return j % m, 1, 0
    if isinstance(key, slice):
        start, stop, step = key.indices(m)
        cols = range(start, stop, step)
        if not cols:
            return 0, 0, slice(0, 0)
        lo, hi = min(cols[0], cols[-1]), max(cols[0], cols[-1]) + 1
        rel_stop = stop - lo
        return lo, hi - lo, slice(start - lo, rel_stop if rel_stop >= 0 else None, step)
    arr = _int_index(key, m, 1)
    if arr.size == 0:
        return 0, 0, arr
    lo = int(arr.min())
    return lo, int(arr.max()) + 1 - lo, arr - lo


class PackedGenotypes:
    """A version-2 store's genotype matrix as a read-only int8 array-like, (n_samples, n_snps):
    counts of A1, missing = MISSING_INT8, decoded from the memory-mapped 2-bit rows on access.

    Indexing returns what indexing an int8 array of those values returns: an integer row (a 1-D
    row), a slice, an integer array or boolean mask of rows, and (rows, columns) tuples of these
    (integer arrays on both axes pair up as numpy's do). Only the rows asked for, and the bytes
    of the columns asked for, are decoded. ``np.asarray`` decodes the whole matrix."""

    dtype = np.dtype(np.int8)
    ndim = 2

    def __init__(self, path: str | os.PathLike, n_samples: int, n_snps: int):
        self.path = Path(path)
        self.shape = (int(n_samples), int(n_snps))
        row_bytes = (self.shape[1] + 3) // 4
        # np.memmap cannot map an empty file
        self.packed = (np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.shape[0], row_bytes))
                       if self.shape[0] * row_bytes else np.zeros((self.shape[0], row_bytes), dtype=np.uint8))

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"PackedGenotypes({str(self.path)!r}, shape={self.shape}, dtype=int8)"

    def __reduce__(self):
        # pickled by path (a DataLoader worker maps the file itself), never by value
        return (PackedGenotypes, (str(self.path), *self.shape))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        g = self[:]
        return g if dtype is None else g.astype(dtype, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > 2 or any(k is None for k in key) or sum(k is Ellipsis for k in key) > 1:
            raise IndexError(f"PackedGenotypes takes (rows) or (rows, columns) indices, got {key!r}")
        rows, where = _row_index(key[0], self.shape[0])
        first, ncols, rel = _col_range(key[1] if len(key) == 2 else slice(None), self.shape[1])
        block = qc.unpack_2bit(self.packed, rows, first, ncols)  # (len(rows), ncols)
        if where is None:
            return block[0][rel]
        if isinstance(rel, np.ndarray):
            return block[where, rel]  # integer arrays on both axes pair up, as numpy's do
        if isinstance(where, np.ndarray) and where.ndim != 1:
            return block[where, rel]
        # one row per decoded row, in order: no copy when the columns are the decoded range
        return block if rel == slice(0, ncols, 1) else block[:, rel]


class GenoStore:
    """Read a genotype store (version 2, or 1). `genotypes` is a read-only (n_samples x n_snps)
    int8 array-like: a :class:`PackedGenotypes` (version 2) or an int8 memmap (version 1)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_meta(self.path, FORMAT, "genotype", "prep-geno")
        self.version = int(self.meta.get("version", 1))
        if self.version not in (1, 2):
            raise InputError(f"{self.path / 'meta.json'}: genotype store version {self.version}; this gimtool reads "
                             f"versions 1 and 2 (update gimtool, or remake the store with this one's prep-geno)")
        self.n_samples = int(self.meta["n_samples"])
        self.n_snps = int(self.meta["n_snps"])
        self.snps = pl.read_csv(
            self.path / "snps.tsv", separator="\t",
            schema_overrides={"CHR": pl.Int64, "SNP": pl.Utf8, "CM": pl.Float64, "BP": pl.Int64, "A1": pl.Utf8, "A2": pl.Utf8},
        )
        self.samples = pl.read_csv(self.path / "samples.tsv", separator="\t", schema_overrides={"FID": pl.Utf8, "IID": pl.Utf8})
        if self.version == 1:
            gfile, row_bytes, what = self.path / GENO_FILE_V1, self.n_snps, "int8 genotypes"
        else:
            gfile, row_bytes, what = self.path / GENO_FILE, (self.n_snps + 3) // 4, "2-bit genotypes"
        expected = self.n_samples * row_bytes
        if not gfile.is_file() or gfile.stat().st_size != expected:
            size = gfile.stat().st_size if gfile.is_file() else "missing"
            raise InputError(f"{gfile}: size {size} does not fit {self.n_samples} x {self.n_snps} {what} "
                             f"({expected} bytes)")
        if self.snps.height != self.n_snps or self.samples.height != self.n_samples:
            raise InputError(f"{self.path}: snps.tsv/samples.tsv row counts do not match meta.json")
        if self.version == 1:
            self.genotypes = np.memmap(gfile, dtype=np.int8, mode="r", shape=(self.n_samples, self.n_snps))
        else:
            self.genotypes = PackedGenotypes(gfile, self.n_samples, self.n_snps)

    @property
    def snp_hash(self) -> str:
        return self.meta["snp_hash"]

    def positions(self) -> dict[str, np.ndarray]:
        """Per-SNP arrays the genetic encoder needs: chrom (int64), bp (int64), cm (float64)."""
        return {
            "chrom": self.snps["CHR"].to_numpy().astype(np.int64),
            "bp": self.snps["BP"].to_numpy().astype(np.int64),
            "cm": self.snps["CM"].to_numpy().astype(np.float64),
        }

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Genotypes of the given samples, shape (len(index), n_snps), int8 (a copy)."""
        return np.asarray(self.genotypes[np.asarray(index)])
