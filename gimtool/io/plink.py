"""PLINK 1 binary filesets (.bed/.bim/.fam).

Reading goes through bed-reader (``count_A1=True``: a genotype is the count of the bim's 5th
column allele, A1, as in PLINK and BOLT-LMM's ALLELE1). Genotypes are int8 arrays oriented
**samples × SNPs** with missing = :data:`MISSING_INT8`. Writing streams SNP chunks, so a
fileset of any size is written in bounded memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import polars as pl

from gimtool.conventions import BIM_COLS, FAM_COLS, MISSING_INT8
from gimtool.errors import InputError
from gimtool.io.atomic import TempNameWriter, atomic_path

BED_MAGIC = bytes([0x6C, 0x1B, 0x01])

# genotype (count of A1) -> 2-bit PLINK code: 2 -> 00, 1 -> 10, 0 -> 11, missing -> 01
_CODE = np.zeros(256, dtype=np.uint8)
_CODE[2] = 0b00
_CODE[1] = 0b10
_CODE[0] = 0b11
_CODE[MISSING_INT8 & 0xFF] = 0b01


def _split_lines(path: Path, ncol: int, what: str) -> tuple[list[list[str]], list[int]]:
    """Rows of `ncol` whitespace-separated fields, and the file line number of each (blank lines skipped)."""
    rows, linenos = [], []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            tok = line.split()
            if not tok:
                continue
            if len(tok) != ncol:
                raise InputError(f"{path}: line {lineno}: expected {ncol} columns ({what}), found {len(tok)}")
            rows.append(tok)
            linenos.append(lineno)
    return rows, linenos


def read_fam(path: str | os.PathLike) -> pl.DataFrame:
    """Read a .fam: FID IID FATHER MOTHER SEX PHENO (all strings). Duplicate (FID, IID) is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: .fam file not found")
    rows, linenos = _split_lines(path, 6, " ".join(FAM_COLS))
    if not rows:
        raise InputError(f"{path}: .fam file has no samples")
    seen: dict[tuple[str, str], int] = {}
    for i, r in zip(linenos, rows):
        key = (r[0], r[1])
        if key in seen:
            raise InputError(f"{path}: line {i}: duplicate sample ID (FID {r[0]}, IID {r[1]}), first seen on line {seen[key]}")
        seen[key] = i
    return pl.DataFrame(rows, schema=list(FAM_COLS), orient="row")


def read_bim(path: str | os.PathLike) -> pl.DataFrame:
    """Read a .bim: CHR (str) SNP CM (float) BP (int) A1 A2.

    Tab-separated files (what PLINK writes) are parsed by polars; anything else (spaces) falls
    back to a line-by-line reader that names the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: .bim file not found")
    with open(path) as fh:
        first = fh.readline()
    if first.count("\t") == 5 and len(first.split()) == 6:
        try:
            df = pl.read_csv(
                path, separator="\t", has_header=False, new_columns=list(BIM_COLS), quote_char=None,
                schema_overrides={"CHR": pl.Utf8, "SNP": pl.Utf8, "CM": pl.Float64, "BP": pl.Int64, "A1": pl.Utf8, "A2": pl.Utf8},
            )
            if df.width == 6 and df.null_count().sum_horizontal().item() == 0:
                return df
        except (pl.exceptions.ComputeError, pl.exceptions.PolarsError):
            pass  # the slow path below says which line is wrong
    rows, linenos = _split_lines(path, 6, " ".join(BIM_COLS))
    if not rows:
        raise InputError(f"{path}: .bim file has no SNPs")
    df = pl.DataFrame(rows, schema=list(BIM_COLS), orient="row")
    for col, conv in (("CM", float), ("BP", int)):
        for lineno, v in zip(linenos, df[col].to_list()):
            try:
                conv(v)
            except ValueError:
                raise InputError(f"{path}: line {lineno}: column {col} must be numeric, found {v!r}") from None
    return df.with_columns(pl.col("CM").cast(pl.Float64), pl.col("BP").cast(pl.Int64))


def fileset_paths(prefix: str | os.PathLike, exts: tuple[str, ...]) -> tuple[str, list[Path]]:
    """(prefix without any of `exts`, [prefix + ext for each ext]): a fileset named either way."""
    prefix = str(prefix)
    for ext in exts:
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    return prefix, [Path(prefix + ext) for ext in exts]


class Bfile:
    """A validated PLINK 1 fileset.

    >>> bf = Bfile("data/EUR_subset")
    >>> G = bf.read(snps=slice(0, 1000))        # samples x SNPs, int8, missing = MISSING_INT8
    """

    def __init__(self, prefix: str | os.PathLike):
        self.prefix, (self.bed_path, self.bim_path, self.fam_path) = fileset_paths(prefix, (".bed", ".bim", ".fam"))
        for p in (self.bed_path, self.bim_path, self.fam_path):
            if not p.is_file():
                raise InputError(f"{p}: file not found (--bfile {self.prefix} needs .bed, .bim and .fam)")
        self.fam = read_fam(self.fam_path)
        self.bim = read_bim(self.bim_path)
        self.n_samples = self.fam.height
        self.n_snps = self.bim.height
        with open(self.bed_path, "rb") as fh:
            magic = fh.read(3)
        if magic != BED_MAGIC:
            raise InputError(
                f"{self.bed_path}: not a SNP-major PLINK .bed (first bytes {magic.hex()}, expected 6c1b01)"
            )
        expected = 3 + self.n_snps * ((self.n_samples + 3) // 4)
        actual = self.bed_path.stat().st_size
        if actual != expected:
            raise InputError(
                f"{self.bed_path}: size {actual} bytes does not fit {self.n_snps} SNPs (.bim) x "
                f"{self.n_samples} samples (.fam); expected {expected} bytes"
            )
        self._bed = None

    def _open(self):
        if self._bed is None:
            from bed_reader import open_bed

            self._bed = open_bed(
                self.bed_path,
                iid_count=self.n_samples,
                sid_count=self.n_snps,
                count_A1=True,
                skip_format_check=True,
            )
        return self._bed

    def read(
        self,
        snps: slice | Sequence[int] | np.ndarray | None = None,
        samples: slice | Sequence[int] | np.ndarray | None = None,
        dtype: str = "int8",
        num_threads: int | None = 1,
    ) -> np.ndarray:
        """Genotypes, shape (n_samples_selected, n_snps_selected), C-contiguous.

        int8: counts of A1 with missing = MISSING_INT8; float32/float64: missing = NaN.
        """
        s = slice(None) if samples is None else samples
        v = slice(None) if snps is None else snps
        return self._open().read(index=np.s_[s, v], dtype=dtype, order="C", num_threads=num_threads)

    def packed(self, snps: slice | np.ndarray) -> np.ndarray:
        """The raw 2-bit rows of the .bed for the given SNPs, shape (m, ceil(n_samples / 4)) uint8."""
        nb = (self.n_samples + 3) // 4
        mm = np.memmap(self.bed_path, dtype=np.uint8, mode="r", offset=3, shape=(self.n_snps, nb))
        return np.asarray(mm[snps])

    def iter_chunks(
        self, chunk_size: int, samples=None, dtype: str = "int8", num_threads: int | None = 1,
        start: int = 0, stop: int | None = None,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (start, stop, genotypes[samples, start:stop]) over SNP chunks (any reader with
        n_snps and read(): Pfile uses it too)."""
        stop = self.n_snps if stop is None else stop
        for a in range(start, stop, chunk_size):
            b = min(a + chunk_size, stop)
            yield a, b, self.read(snps=slice(a, b), samples=samples, dtype=dtype, num_threads=num_threads)

    def close(self) -> None:
        if self._bed is not None:
            self._bed.__exit__(None, None, None)
            self._bed = None


def encode_bed_chunk(G: np.ndarray) -> bytes:
    """Pack genotypes (samples x SNPs, int8 counts of A1) into SNP-major .bed bytes."""
    n, m = G.shape
    codes = _CODE[G.view(np.uint8).T]  # SNPs x samples
    pad = (-n) % 4
    if pad:
        codes = np.concatenate([codes, np.full((m, pad), 0b00, dtype=np.uint8)], axis=1)
    c = codes.reshape(m, -1, 4)
    packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    return packed.astype(np.uint8).tobytes()


class BedWriter(TempNameWriter):
    """Stream a .bed file SNP chunk by SNP chunk (samples x SNPs int8 arrays).

    Writes to a temporary name; :meth:`close` renames it into place, so an interrupted write never
    leaves a .bed that looks complete. Use :func:`write_bim` / :func:`write_fam` for the text files.
    """

    def __init__(self, path: str | os.PathLike, n_samples: int):
        super().__init__(path)
        self.n_samples = n_samples
        self.n_snps = 0
        self._fh = open(self.tmp, "wb")
        self._fh.write(BED_MAGIC)

    def write(self, G: np.ndarray) -> None:
        if G.ndim != 2 or G.shape[0] != self.n_samples:
            raise ValueError(f"expected genotypes of shape ({self.n_samples}, m), got {G.shape}")
        self._fh.write(encode_bed_chunk(np.ascontiguousarray(G, dtype=np.int8)))
        self.n_snps += G.shape[1]

    def write_packed(self, rows: np.ndarray) -> None:
        """Append SNPs already in .bed form: rows (m, ceil(n_samples / 4)) uint8 for the same samples."""
        if rows.ndim != 2 or rows.shape[1] != (self.n_samples + 3) // 4 or rows.dtype != np.uint8:
            raise ValueError(f"expected packed rows of shape (m, {(self.n_samples + 3) // 4}) uint8, got {rows.shape} {rows.dtype}")
        self._fh.write(memoryview(np.ascontiguousarray(rows)).cast("B"))  # no intermediate bytes copy
        self.n_snps += rows.shape[0]

    def _finish(self) -> None:
        self._fh.close()

    def _release(self) -> None:
        self._fh.close()
        return False


def write_bim(bim: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a .bim (tab-separated, no header) atomically; CM written with full precision."""
    cols = [pl.col(c).cast(pl.Utf8) for c in BIM_COLS]
    with atomic_path(path) as tmp:
        bim.select(cols).write_csv(tmp, separator="\t", include_header=False)


def write_fam(fam: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a .fam (space-separated, no header) atomically. Missing parent/sex/pheno columns are filled."""
    defaults = {"FATHER": "0", "MOTHER": "0", "SEX": "0", "PHENO": "-9"}
    df = fam.with_columns([pl.lit(v).alias(k) for k, v in defaults.items() if k not in fam.columns])
    with atomic_path(path) as tmp:
        df.select([pl.col(c).cast(pl.Utf8) for c in FAM_COLS]).write_csv(tmp, separator=" ", include_header=False)


def write_bfile(prefix: str | os.PathLike, G: np.ndarray, fam: pl.DataFrame, bim: pl.DataFrame, chunk_size: int = 10_000) -> None:
    """Write a whole in-memory fileset: G (samples x SNPs int8), fam (FID IID ...), bim (BIM_COLS)."""
    prefix = str(prefix)
    if G.shape != (fam.height, bim.height):
        raise ValueError(f"genotypes {G.shape} do not match fam ({fam.height}) x bim ({bim.height})")
    with BedWriter(prefix + ".bed", fam.height) as w:
        for a in range(0, G.shape[1], chunk_size):
            w.write(G[:, a : a + chunk_size])
    write_bim(bim, prefix + ".bim")
    write_fam(fam, prefix + ".fam")
