"""The genotype store written by `prep-geno` and read by `train`, `mi` (and anything needing
one person's whole genome in one contiguous read).

Layout of ``<out>.geno/``::

    genotypes.i8   raw int8, shape (n_samples, n_snps), C order: sample-major; counts of A1,
                   missing = -127 (gimtool.conventions.MISSING_INT8). Memory-mapped when read.
    snps.tsv       CHR SNP CM BP A1 A2   (CM in centimorgans)
    samples.tsv    FID IID
    meta.json      {"format": "gimtool-genostore", "version": 1, "n_samples", "n_snps",
                    "dtype": "int8", "snp_hash": sha256 of the SNP table}

The writer fills the matrix SNP chunk by SNP chunk (a transposed write into the memmap), so
memory stays bounded whatever the cohort size.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.conventions import MISSING_INT8, SAMPLE_COLS, SNP_COLS
from gimtool.errors import InputError
from gimtool.io.atomic import TempNameWriter
from gimtool.io.stores import read_meta

FORMAT = "gimtool-genostore"
VERSION = 1
GENO_FILE = "genotypes.i8"


def snp_table_hash(snps: pl.DataFrame) -> str:
    """A hash of the SNP table (CHR SNP BP A1 A2), used to refuse a checkpoint trained on other SNPs."""
    h = hashlib.sha256()
    for c in ("CHR", "SNP", "BP", "A1", "A2"):
        # the column's values as text joined by \x1f (polars: 10x faster than str() of each value)
        h.update(snps[c].cast(pl.Utf8).str.join("\x1f").item().encode())
        h.update(b"\x1e")
    return h.hexdigest()


class GenoStoreWriter(TempNameWriter):
    """Create a store at `path` (written to a temporary folder, renamed on :meth:`close`)."""

    def __init__(self, path: str | os.PathLike, samples: pl.DataFrame, snps: pl.DataFrame):
        super().__init__(path, folder=True)
        self.samples = samples.select(list(SAMPLE_COLS))
        self.snps = snps.select(list(SNP_COLS))
        self.n_samples, self.n_snps = self.samples.height, self.snps.height
        # Written with pwrite, one sample row-piece at a time, rather than through a memmap: dirty
        # pages of a writable memmap count against the process until flushed, and a sample-major
        # file filled SNP chunk by SNP chunk would otherwise keep the whole matrix resident.
        self._fd = os.open(self.tmp / GENO_FILE, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, self.n_samples * self.n_snps)
        self._next = 0

    def write(self, G: np.ndarray) -> None:
        """Append the next SNP chunk, G of shape (n_samples, m) int8."""
        if G.ndim != 2 or G.shape[0] != self.n_samples:
            raise ValueError(f"expected ({self.n_samples}, m) genotypes, got {G.shape}")
        m = G.shape[1]
        if self._next + m > self.n_snps:
            raise ValueError(f"more SNPs written than the {self.n_snps} declared")
        G = np.ascontiguousarray(G, dtype=np.int8)
        for i in range(self.n_samples):
            os.pwrite(self._fd, G[i].data, i * self.n_snps + self._next)
        self._next += m

    def _finish(self) -> None:
        if self._next != self.n_snps:
            self.abort()
            raise ValueError(f"wrote {self._next} of {self.n_snps} SNPs")
        os.close(self._fd)
        self.snps.write_csv(self.tmp / "snps.tsv", separator="\t")
        self.samples.write_csv(self.tmp / "samples.tsv", separator="\t")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "n_samples": self.n_samples,
            "n_snps": self.n_snps,
            "dtype": "int8",
            "missing": MISSING_INT8,
            "snp_hash": snp_table_hash(self.snps),
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if self.path.exists() and not self.path.is_dir():
            self.path.unlink()

    def _release(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class GenoStore:
    """Read a genotype store. `genotypes` is a read-only memmap (n_samples x n_snps, int8)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_meta(self.path, FORMAT, "genotype", "prep-geno")
        self.n_samples = int(self.meta["n_samples"])
        self.n_snps = int(self.meta["n_snps"])
        self.snps = pl.read_csv(
            self.path / "snps.tsv", separator="\t",
            schema_overrides={"CHR": pl.Int64, "SNP": pl.Utf8, "CM": pl.Float64, "BP": pl.Int64, "A1": pl.Utf8, "A2": pl.Utf8},
        )
        self.samples = pl.read_csv(self.path / "samples.tsv", separator="\t", schema_overrides={"FID": pl.Utf8, "IID": pl.Utf8})
        gfile = self.path / GENO_FILE
        expected = self.n_samples * self.n_snps
        if not gfile.is_file() or gfile.stat().st_size != expected:
            size = gfile.stat().st_size if gfile.is_file() else "missing"
            raise InputError(f"{gfile}: size {size} does not fit {self.n_samples} x {self.n_snps} int8 genotypes")
        if self.snps.height != self.n_snps or self.samples.height != self.n_samples:
            raise InputError(f"{self.path}: snps.tsv/samples.tsv row counts do not match meta.json")
        self.genotypes = np.memmap(gfile, dtype=np.int8, mode="r", shape=(self.n_samples, self.n_snps))

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
