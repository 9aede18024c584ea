"""One way in for genotypes: a PLINK 1 fileset (--bfile) or a PLINK 2 one (--pfile).

Both readers offer the same interface (:class:`GenotypeSource`), so a pipeline takes ``bfile`` and
``pfile`` arguments, calls :func:`open_genotypes` and never asks which one it got. Genotypes are
samples × SNPs int8 counts of the bim's A1 (the .pvar's ALT), missing = MISSING_INT8.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, NamedTuple, Protocol

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.io.pgen import Pfile
from gimtool.io.plink import Bfile


class GenotypeSource(Protocol):
    """What :class:`Bfile` and :class:`Pfile` both provide."""

    prefix: str
    bed_path: Path  # the genotype file (.bed or .pgen)
    bim_path: Path  # the variant table (.bim or .pvar)
    fam_path: Path  # the sample table (.fam or .psam)
    fam: pl.DataFrame  # FAM_COLS
    bim: pl.DataFrame  # BIM_COLS, CM as written (0 when absent)
    n_samples: int
    n_snps: int

    def read(self, snps=None, samples=None, dtype: str = "int8", num_threads: int | None = 1) -> np.ndarray: ...
    def packed(self, snps) -> np.ndarray: ...
    def iter_chunks(self, chunk_size: int, samples=None, dtype: str = "int8", num_threads: int | None = 1,
                    start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]: ...
    def close(self) -> None: ...


class GenotypeFiles(NamedTuple):
    """The fileset a user named: `--bfile` or `--pfile` (open with ``open_genotypes(*files)``)."""

    bfile: str | None = None
    pfile: str | None = None

    @classmethod
    def given(cls, bfile, pfile) -> "GenotypeFiles | None":
        """None when neither option was given; an error when both were."""
        if bfile is None and pfile is None:
            return None
        genotype_flag(bfile, pfile)
        return cls(None if bfile is None else str(bfile), None if pfile is None else str(pfile))


def genotype_flag(bfile: str | os.PathLike | None, pfile: str | os.PathLike | None) -> str:
    """`--bfile P` or `--pfile P`, as the user gave it (for messages); checks that exactly one is given."""
    if bfile is not None and pfile is not None:
        raise InputError("--bfile and --pfile are mutually exclusive: give one genotype fileset")
    if bfile is None and pfile is None:
        raise InputError("no genotypes: give --bfile PREFIX (.bed/.bim/.fam) or --pfile PREFIX (.pgen/.pvar/.psam)")
    return f"--bfile {bfile}" if bfile is not None else f"--pfile {pfile}"


def open_genotypes(bfile: str | os.PathLike | None = None, pfile: str | os.PathLike | None = None) -> GenotypeSource:
    """The fileset named by exactly one of `bfile` (PLINK 1) and `pfile` (PLINK 2)."""
    genotype_flag(bfile, pfile)
    return Bfile(bfile) if bfile is not None else Pfile(pfile)
