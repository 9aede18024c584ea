"""PLINK 2 filesets (.pgen/.pvar/.psam), read through pgenlib (plink2's own reader).

A :class:`Pfile` looks to the pipelines exactly like a :class:`gimtool.io.plink.Bfile` of what
``plink2 --pfile P --make-bed`` writes:

- genotypes are the **hardcalls** stored in the .pgen, counted in copies of ALT. plink2 stores a
  hardcall beside every dosage when it imports one (a dosage x becomes round(x) when
  |x - round(x)| <= --hard-call-threshold, 0.1 by default, otherwise a missing call), and
  ``--make-bed`` writes those stored hardcalls; reading them here gives the same genotypes.
- the variant table has the bim's columns: CHR, SNP (ID), CM (the CM column, 0 without one, as
  plink2 writes the bim), BP (POS), A1 = ALT (the counted allele), A2 = REF.
- the sample table has the fam's columns: FID (``0`` when the .psam has no FID column, as
  plink2 writes it), IID, FATHER/MOTHER (PAT/MAT, ``0`` when absent), SEX (1, 2 or 0) and PHENO
  (the first phenotype column, ``-9`` when absent or missing).

``bed_path``, ``bim_path`` and ``fam_path`` name the .pgen, .pvar and .psam, so that messages of
the pipelines name the file that was read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from gimtool.conventions import BIM_COLS, FAM_COLS, MISSING_INT8
from gimtool.errors import InputError
from gimtool.io.plink import Bfile, encode_bed_chunk, fileset_paths

_PGEN_MISSING = -9  # pgenlib's missing hardcall
_SEX = {"1": "1", "M": "1", "m": "1", "2": "2", "F": "2", "f": "2"}
_PSAM_FIXED = {"FID", "IID", "SID", "PAT", "MAT", "SEX"}


def _header_lines(path: Path) -> tuple[int, list[str] | None]:
    """Number of lines before the data and the column names of the '#' header line (None if absent)."""
    skip = 0
    with open(path) as fh:
        for line in fh:
            if line.startswith("##"):
                skip += 1
                continue
            if line.startswith("#"):
                return skip + 1, line[1:].split()
            return skip, None
    return skip, None


def _read_table(path: Path, skip: int, names: list[str], what: str) -> pl.DataFrame:
    """All columns as strings; a row with the wrong number of fields is an error naming its line."""
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if lineno <= skip or not line.strip():
                continue
            tok = line.split()
            if len(tok) != len(names):
                raise InputError(f"{path}: line {lineno}: expected {len(names)} columns ({' '.join(names)}), found {len(tok)}")
            rows.append(tok)
    if not rows:
        raise InputError(f"{path}: .{what} file has no rows")
    return pl.DataFrame(rows, schema=names, orient="row")


def _numeric(df: pl.DataFrame, col: str, dtype, path: Path, skip: int) -> pl.Series:
    s = df[col].cast(dtype, strict=False)
    bad = s.is_null() & df[col].is_not_null()
    if bad.any():
        i = int(bad.arg_max())
        raise InputError(f"{path}: data row {i + 1} (line {skip + i + 1}): column {col} must be numeric, found {df[col][i]!r}")
    return s


def read_pvar(path: str | os.PathLike) -> pl.DataFrame:
    """Read a .pvar (with a #CHROM header, CM column optional; or headerless .bim-style) as the
    bim columns CHR SNP CM BP A1 A2, A1 = ALT. Multi-allelic variants are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: .pvar file not found")
    skip, header = _header_lines(path)
    if header is None:  # plink2 reads a headerless .pvar as a .bim, with or without the CM column
        with open(path) as fh:
            ncol = len(next((ln for i, ln in enumerate(fh) if i >= skip and ln.strip()), "").split())
        names = ["CHROM", "ID", "CM", "POS", "ALT", "REF"] if ncol == 6 else ["CHROM", "ID", "POS", "ALT", "REF"]
    else:
        names = header
        missing = [c for c in ("CHROM", "POS", "ID", "REF", "ALT") if c not in names]
        if missing:
            raise InputError(f"{path}: line {skip}: header lacks column(s) {', '.join(missing)} (expected #CHROM POS ID REF ALT [CM])")
    df = _read_table(path, skip, names, "pvar")
    multi = df["ALT"].str.contains(",", literal=True)
    if multi.any():
        i = int(multi.arg_max())
        raise InputError(
            f"{path}: variant {df['ID'][i]} has {df['ALT'][i].count(',') + 2} alleles; gimtool reads biallelic "
            "variants only (split or drop them first: plink2 --max-alleles 2)")
    cm = _numeric(df, "CM", pl.Float64, path, skip) if "CM" in df.columns else pl.Series([0.0] * df.height)
    return pl.DataFrame({
        "CHR": df["CHROM"], "SNP": df["ID"], "CM": cm, "BP": _numeric(df, "POS", pl.Int64, path, skip),
        "A1": df["ALT"], "A2": df["REF"],
    }).select(BIM_COLS)


def read_psam(path: str | os.PathLike) -> pl.DataFrame:
    """Read a .psam (#FID IID ... or #IID ...; or a headerless .fam) as the fam columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: .psam file not found")
    skip, header = _header_lines(path)
    names = header if header is not None else ["FID", "IID", "PAT", "MAT", "SEX", "PHENO1"]
    if "IID" not in names:
        raise InputError(f"{path}: header has no IID column (expected #FID IID ... or #IID ...)")
    df = _read_table(path, skip, names, "psam")
    n = df.height
    zeros = pl.Series(["0"] * n)
    parent = {c: df[c].replace("NA", "0") if c in df.columns else zeros for c in ("PAT", "MAT")}
    sex = df["SEX"].replace_strict(_SEX, default="0") if "SEX" in df.columns else zeros
    phenos = [c for c in names if c not in _PSAM_FIXED]
    pheno = df[phenos[0]].replace("NA", "-9") if phenos else pl.Series(["-9"] * n)
    fam = pl.DataFrame(dict(zip(FAM_COLS, (df["FID"] if "FID" in df.columns else zeros, df["IID"],
                                           parent["PAT"], parent["MAT"], sex, pheno))))
    dup = fam.select("FID", "IID").is_duplicated()
    if dup.any():
        i = int(dup.arg_max())
        raise InputError(f"{path}: duplicate sample ID (FID {fam['FID'][i]}, IID {fam['IID'][i]})")
    return fam


def _import_pgenlib():
    try:
        import pgenlib
    except ImportError:  # pragma: no cover - a dependency, but say what to do
        raise InputError("--pfile needs the pgenlib package: pip install pgenlib") from None
    return pgenlib


class Pfile:
    """A validated PLINK 2 fileset, read as hardcalls (see the module docstring).

    >>> pf = Pfile("data/cohort")
    >>> G = pf.read(snps=slice(0, 1000))        # samples x SNPs, int8 counts of ALT, missing = MISSING_INT8
    """

    def __init__(self, prefix: str | os.PathLike):
        prefix, (self.bed_path, self.bim_path, self.fam_path) = fileset_paths(prefix, (".pgen", ".pvar", ".psam"))
        self.prefix = prefix
        for p in (self.bed_path, self.bim_path, self.fam_path):
            if not p.is_file():
                hint = " (a .pvar.zst: decompress it with plink2 --zst-decompress)" if p.suffix == ".pvar" and Path(
                    str(p) + ".zst").is_file() else ""
                raise InputError(f"{p}: file not found (--pfile {prefix} needs .pgen, .pvar and .psam){hint}")
        self.fam = read_psam(self.fam_path)
        self.bim = read_pvar(self.bim_path)
        self.n_samples = self.fam.height
        self.n_snps = self.bim.height
        pgenlib = _import_pgenlib()
        try:
            self._pgen = pgenlib.PgenReader(bytes(self.bed_path), raw_sample_ct=self.n_samples)
        except RuntimeError as e:
            raise InputError(f"{self.bed_path}: pgenlib cannot open it: {str(e).strip()}") from None
        if self._pgen.get_variant_ct() != self.n_snps:
            raise InputError(f"{self.bed_path}: holds {self._pgen.get_variant_ct()} variants but "
                             f"{self.bim_path} lists {self.n_snps}")

    def _read_variant_major(self, snps) -> np.ndarray:
        """Hardcalls of the selected SNPs, shape (m, n_samples) int8, pgenlib's missing = -9."""
        if isinstance(snps, slice):
            a, b, step = snps.indices(self.n_snps)
            if step == 1:
                out = np.empty((max(b - a, 0), self.n_samples), dtype=np.int8)
                if b > a:
                    self._pgen.read_range(a, b, out)
                return out
            snps = np.arange(a, b, step)
        idx = np.asarray(snps, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_snps):
            raise IndexError(f"SNP index out of range 0..{self.n_snps - 1}")
        out = np.empty((idx.size, self.n_samples), dtype=np.int8)
        if idx.size:
            self._pgen.read_list(idx.astype(np.uint32), out)
        return out

    def read(
        self,
        snps: slice | Sequence[int] | np.ndarray | None = None,
        samples: slice | Sequence[int] | np.ndarray | None = None,
        dtype: str = "int8",
        num_threads: int | None = 1,
    ) -> np.ndarray:
        """Genotypes, shape (n_samples_selected, n_snps_selected), C-contiguous, as :meth:`Bfile.read`:
        int8 counts of ALT with missing = MISSING_INT8; float32/float64 with missing = NaN.
        (pgenlib reads on one thread: num_threads is accepted for the common interface.)"""
        gv = self._read_variant_major(slice(None) if snps is None else snps)
        if samples is not None:
            gv = gv[:, samples]
        miss = gv == _PGEN_MISSING
        if np.dtype(dtype) == np.int8:
            gv[miss] = MISSING_INT8
            return np.ascontiguousarray(gv.T)
        g = gv.T.astype(dtype, order="C")
        g[miss.T] = np.nan
        return g

    def packed(self, snps: slice | np.ndarray) -> np.ndarray:
        """The selected SNPs as .bed rows (PLINK 1 2-bit codes, A1 = ALT), shape (m, ceil(n_samples / 4)) uint8."""
        gv = self._read_variant_major(snps)
        gv[gv == _PGEN_MISSING] = MISSING_INT8
        nb = (self.n_samples + 3) // 4
        return np.frombuffer(encode_bed_chunk(gv.T), dtype=np.uint8).reshape(gv.shape[0], nb)

    iter_chunks = Bfile.iter_chunks  # the same chunking over read()

    def close(self) -> None:
        if self._pgen is not None:
            self._pgen.close()
            self._pgen = None
