"""Summary statistics files: gimtool's own, BOLT-LMM `--statsFile`, PLINK 2 `.glm.linear`.

gimtool writes one gzipped TSV per phenotype with the columns of
:data:`gimtool.conventions.SUMSTATS_COLS` (BOLT-LMM names; BETA is per copy of ALLELE1, missing
written ``NA``). :func:`read_sumstats` reads any of the three formats, recognized by the header,
and returns one frame in gimtool's schema and dtypes:

=========  =======  ==========================================================================
column     dtype    from BOLT-LMM / PLINK 2
=========  =======  ==========================================================================
SNP        Utf8     SNP / ID
CHR        Utf8     CHR / #CHROM
BP         Int64    BP / POS
GENPOS     Float64  GENPOS / null
ALLELE1    Utf8     ALLELE1 / A1 (the allele BETA counts)
ALLELE0    Utf8     ALLELE0 / AX, else the one of REF, ALT that is not A1
A1FREQ     Float64  A1FREQ / A1_FREQ (null when the file has none)
N          Int64    null (BOLT prints only F_MISS) / OBS_CT
BETA, SE   Float64  as given
CHISQ      Float64  CHISQ_BOLT_LMM[_INF] or chi2(1) quantile of P / T_STAT²
P          Float64  best available: P_BOLT_LMM, else P_BOLT_LMM_INF, else P_LINREG / P
=========  =======  ==========================================================================

Rows PLINK 2 could not test (``NA`` statistics) are kept with null BETA/SE/CHISQ/P; with
covariate rows present (no ``hide-covar``), only ``TEST == ADD`` rows are kept.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.conventions import MISSING, SUMSTATS_COLS

SUMSTATS_DTYPES = {
    "SNP": pl.Utf8,
    "CHR": pl.Utf8,
    "BP": pl.Int64,
    "GENPOS": pl.Float64,
    "ALLELE1": pl.Utf8,
    "ALLELE0": pl.Utf8,
    "A1FREQ": pl.Float64,
    "N": pl.Int64,
    "BETA": pl.Float64,
    "SE": pl.Float64,
    "CHISQ": pl.Float64,
    "P": pl.Float64,
}
assert tuple(SUMSTATS_DTYPES) == SUMSTATS_COLS

# Columns each format must have (the others are optional).
_BOLT_NEEDED = ("SNP", "CHR", "BP", "ALLELE1", "ALLELE0", "BETA", "SE")
_BOLT_P = ("P_BOLT_LMM", "P_BOLT_LMM_INF", "P_LINREG")
_PLINK2_NEEDED = ("#CHROM", "POS", "ID", "REF", "ALT", "A1", "BETA", "SE", "P")
_NULL_TOKENS = ["NA", "nan", "NaN", "inf", "-inf", ""]


def write_sumstats(df: pl.DataFrame, path: str | os.PathLike, compresslevel: int = 1, sig_digits: int | None = 7) -> None:
    """Write `df` (at least the SUMSTATS_COLS) as a gzipped TSV, atomically; extra columns are dropped.

    Floats are written with `sig_digits` significant digits (7: more than PLINK 2 and BOLT print,
    and half the text, hence half the gzip time, of full precision). A `.gz` suffix is not added:
    the caller names the file (``<out>.<PHENO>.sumstats.gz``).
    """
    SharedSnpWriter(df, sig_digits).write(df, path, compresslevel)


class SharedSnpWriter:
    """Writes sumstats files over the same SNPs (one per phenotype of a scan) with the SNP columns
    (SNP ... ALLELE0) formatted once, not once per file; :func:`write_sumstats` is the one-file case.

    The statistics columns are formatted by the compiled module when it is built (%g-style, 7
    significant digits, one pass in C), else by polars (rounded to 7 significant digits, shortest
    form); the two differ only in notation (``4.03207e-05`` or ``0.0000403207``).
    """

    SNP_COLS = SUMSTATS_COLS[:6]
    STAT_COLS = SUMSTATS_COLS[6:]
    HEADER = ("\t".join(SUMSTATS_COLS) + "\n").encode()

    def __init__(self, snps: pl.DataFrame, sig_digits: int | None = 7):
        self.sig_digits = sig_digits
        self.height = snps.height
        # the SNP columns as CSV text (quoted as write_csv quotes): one line per row
        self.text = _csv_bytes(_formatted(snps, self.SNP_COLS, sig_digits), header=False)
        nl = np.flatnonzero(np.frombuffer(self.text, dtype=np.uint8) == 10)
        self.offsets = None  # row i is text_nonl[offsets[i]:offsets[i+1]], for the compiled writer
        if len(nl) == self.height:  # no line break inside a field
            self.text_nonl = np.delete(np.frombuffer(self.text, dtype=np.uint8), nl).tobytes()
            self.offsets = np.concatenate([[0], nl + 1 - np.arange(1, self.height + 1)]).astype(np.int64)
        self._series = None

    def write(self, df: pl.DataFrame, path: str | os.PathLike, compresslevel: int = 1) -> None:
        """`df`: a frame in the sumstats schema whose SNP columns are those given to the writer."""
        _check_columns(df)
        if df.height != self.height:
            raise ValueError(f"sumstats frame has {df.height} rows; the writer's SNPs are {self.height}")
        body = self._body_compiled(df)
        if body is None:
            body = self._body_polars(df)
        _write_gz(self.HEADER + body, path, compresslevel)

    def _body_compiled(self, df: pl.DataFrame) -> bytes | None:
        if self.offsets is None or not self.sig_digits or df["N"].null_count():
            return None
        try:
            from gimtool import _speedups
        except ImportError:
            return None
        cols = tuple(
            np.ascontiguousarray(df[c].cast(SUMSTATS_DTYPES[c]).to_numpy(), dtype=np.int64 if c == "N" else np.float64)
            for c in self.STAT_COLS
        )  # null floats come out as NaN, written NA
        kinds = "".join("i" if c == "N" else "f" for c in self.STAT_COLS)
        return _speedups.format_rows(self.text_nonl, self.offsets, kinds, cols, self.sig_digits)

    def _body_polars(self, df: pl.DataFrame) -> bytes:
        if self._series is None:
            lines = self.text.decode().split("\n")[: self.height]
            self._series = pl.Series("SNP_COLS", lines, dtype=pl.Utf8)
        stats = _formatted(df, self.STAT_COLS, self.sig_digits)
        body = pl.concat([pl.DataFrame([self._series]), stats], how="horizontal")
        # the prefix is already CSV text; numbers never need quotes
        return _csv_bytes(body, header=False, quote_style="never")


def _check_columns(df: pl.DataFrame) -> None:
    missing = [c for c in SUMSTATS_COLS if c not in df.columns]
    if missing:
        raise ValueError(f"sumstats frame lacks column(s) {', '.join(missing)}; has {', '.join(df.columns)}")


def _formatted(df: pl.DataFrame, cols, sig_digits: int | None) -> pl.DataFrame:
    """`cols` of `df` in the schema's dtypes, NaN as null, floats rounded to `sig_digits`."""
    out = df.select([pl.col(c).cast(SUMSTATS_DTYPES[c]) for c in cols])
    floats = [c for c in cols if SUMSTATS_DTYPES[c] == pl.Float64]
    out = out.with_columns([pl.col(c).fill_nan(None) for c in floats])
    if sig_digits:
        out = out.with_columns([pl.col(c).round_sig_figs(sig_digits) for c in floats])
    return out


def _csv_bytes(df: pl.DataFrame, header: bool, quote_style: str = "necessary") -> bytes:
    buf = io.BytesIO()
    df.write_csv(buf, separator="\t", null_value=MISSING, include_header=header, quote_style=quote_style)
    return buf.getvalue()


def _write_gz(text: bytes, path: str | os.PathLike, compresslevel: int) -> None:
    from gimtool.io.atomic import atomic_path

    data = gzip_bytes(text, compresslevel)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def gzip_bytes(data: bytes, level: int = 1) -> bytes:
    """One gzip member of `data` with mtime 0 (identical inputs give byte-identical files).

    ISA-L (the `isal` package) when installed: 3-4x faster than zlib at level 1, and smaller.
    """
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
        return gzip.compress(data, compresslevel=level, mtime=0)
    return igzip.compress(data, min(level, 3), mtime=0)


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            # whole-buffer decompression (every gzip member, as bgzip writes): faster than streaming
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path}: not a readable gzip file ({e})") from None
    return raw


def _header(data: bytes, path: Path) -> tuple[list[str], bytes]:
    """The column names, and the data as tab-separated text (any whitespace when the header has no tab)."""
    first = data.split(b"\n", 1)[0].decode().rstrip("\r")
    if "\t" not in first:
        text = data.decode()
        data = "\n".join("\t".join(ln.split()) for ln in text.splitlines() if ln.strip()).encode()
        first = data.split(b"\n", 1)[0].decode()
    header = first.split("\t")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{path}: line 1: duplicate column name(s) {', '.join(dup)}")
    return header, data


def _parse_strings(data: bytes, path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(
            io.BytesIO(data), separator="\t", infer_schema=False, has_header=True, quote_char=None,
        )
    except pl.exceptions.ComputeError as e:
        raise InputError(f"{path}: not a well-formed tab-separated table ({str(e).splitlines()[0]})") from None


def _parse_typed(data: bytes, header: list[str], numeric: dict) -> pl.DataFrame | None:
    """The table with the `numeric` columns parsed by polars' CSV reader, the others strings; None
    when that is not certain to equal the string path followed by :func:`_num`: a field that does
    not parse (padded with spaces, a malformed number), a null token or empty field in a string
    column, or a ragged line. The caller then takes the string path, which names the bad field."""
    try:
        df = pl.read_csv(
            io.BytesIO(data), separator="\t", infer_schema=False, has_header=True, quote_char=None,
            schema_overrides=numeric, null_values=_NULL_TOKENS,
        )
    except (pl.exceptions.PolarsError, OSError):  # OSError: a damaged gzip stream
        return None
    if df.columns != header or any(df[c].dtype != t for c, t in numeric.items()):
        return None
    strings = [c for c in header if c not in numeric]
    if strings and any(df.select(pl.col(strings).null_count()).row(0)):
        return None
    return df


def _read_typed(path: Path) -> tuple[list[str], pl.DataFrame] | None:
    """(header, table) by :func:`_parse_typed` straight from the file's bytes, gzipped or not
    (polars decompresses every member and checks the CRC); None when the file needs the general
    path: no tab in its first line, duplicate column names, anything _parse_typed refuses."""
    with open(path, "rb") as fh:
        content = fh.read()
    first = content
    if content[:2] == b"\x1f\x8b":
        try:
            first = zlib.decompressobj(31).decompress(content, 1 << 20)  # the start is enough for the header
        except zlib.error:
            return None
    if b"\n" not in first:
        return None
    line = first.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = line.decode().split("\t")
    except UnicodeDecodeError:
        return None
    if len(header) < 2 or len(set(header)) != len(header):
        return None
    df = _parse_typed(content, header, _numeric_columns(sumstats_format(header), header))
    return None if df is None else (header, df)


def _numeric_columns(fmt: str, header: list[str]) -> dict:
    """The columns :func:`read_sumstats` converts with :func:`_num` for a format, with their dtypes."""
    if fmt == "gimtool":
        cols = {c: t for c, t in SUMSTATS_DTYPES.items() if t != pl.Utf8}
    elif fmt == "bolt":
        cols = {"BP": pl.Int64, "GENPOS": pl.Float64, "A1FREQ": pl.Float64, "BETA": pl.Float64, "SE": pl.Float64}
        cols.update({c: pl.Float64 for c in _BOLT_P + ("CHISQ_BOLT_LMM", "CHISQ_BOLT_LMM_INF", "CHISQ_LINREG")})
    else:
        cols = {"POS": pl.Int64, "OBS_CT": pl.Int64, "A1_FREQ": pl.Float64, "BETA": pl.Float64, "SE": pl.Float64,
                "T_STAT": pl.Float64, "P": pl.Float64}
    return {c: t for c, t in cols.items() if c in header}


def _num(df: pl.DataFrame, col: str, path: Path, dtype=pl.Float64) -> pl.Series:
    if df[col].dtype == dtype:  # parsed already by _parse_typed
        return df[col]
    s = df[col].str.strip_chars()
    s = pl.select(pl.when(s.is_in(_NULL_TOKENS)).then(None).otherwise(s).alias(col))[col]
    try:
        return s.cast(dtype, strict=True)
    except pl.exceptions.InvalidOperationError:
        bad_mask = s.cast(dtype, strict=False).is_null() & s.is_not_null()
        i = int(np.flatnonzero(bad_mask.to_numpy())[0])
        kind = "an integer" if dtype == pl.Int64 else "a number or NA"
        raise InputError(f"{path}: line {i + 2}: column {col}: expected {kind}, found {s[i]!r}") from None


def _require(path: Path, header: list[str], needed, fmt: str) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(
            f"{path}: {fmt} sumstats lack column(s) {', '.join(missing)}; expected {' '.join(needed)}, "
            f"found {' '.join(header)}"
        )


def sumstats_format(header: list[str]) -> str:
    """'plink2', 'bolt' or 'gimtool' from a header (a best guess; :func:`read_sumstats` validates)."""
    if header and header[0] == "#CHROM" or ("OBS_CT" in header and "ID" in header):
        return "plink2"
    if any(c in header for c in ("P_BOLT_LMM", "P_BOLT_LMM_INF", "F_MISS")):
        return "bolt"
    return "gimtool"


def _chisq_from_p(p: np.ndarray) -> np.ndarray:
    from scipy.special import chdtri  # χ²(1) inverse survival; scipy.stats costs 0.5 s to import

    with np.errstate(all="ignore"):
        return chdtri(1, p)


def read_sumstats(path: str | os.PathLike, typed: bool = True) -> pl.DataFrame:
    """Read gimtool, BOLT-LMM or PLINK 2 `.glm.linear` sumstats into gimtool's schema (see module doc).

    The numeric columns are parsed by polars' CSV reader when the file is clean (:func:`_parse_typed`),
    else (or with ``typed=False``) read as strings and converted one by one, which names the first
    bad field; both give the same frame."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: sumstats file not found")
    raw = _read_typed(path) if typed else None
    if raw is not None:
        header, raw = raw
    else:
        data = _read_bytes(path)
        if not data.strip():
            raise InputError(f"{path}: sumstats file is empty")
        header, data = _header(data, path)
        raw = _parse_strings(data, path)
    fmt = sumstats_format(header)
    if fmt == "gimtool":
        _require(path, header, SUMSTATS_COLS, "gimtool")
        cols = {c: raw[c] if t == pl.Utf8 else _num(raw, c, path, t) for c, t in SUMSTATS_DTYPES.items()}
        return pl.DataFrame(cols).select(SUMSTATS_COLS)
    if fmt == "bolt":
        return _from_bolt(raw, header, path)
    return _from_plink2(raw, header, path)


def _nulls(n: int) -> tuple[pl.Series, pl.Series]:
    return pl.Series([None] * n, dtype=pl.Float64), pl.Series([None] * n, dtype=pl.Int64)


def _from_bolt(raw: pl.DataFrame, header: list[str], path: Path) -> pl.DataFrame:
    """BOLT-LMM --statsFile columns (all strings or typed) in gimtool's schema."""
    _require(path, header, _BOLT_NEEDED, "BOLT-LMM")
    pcol = next((c for c in _BOLT_P if c in header), None)
    if pcol is None:
        raise InputError(
            f"{path}: BOLT-LMM sumstats lack a P column; expected one of {', '.join(_BOLT_P)}, found {' '.join(header)}"
        )
    null_f, null_i = _nulls(raw.height)
    p = _num(raw, pcol, path)
    chi_col = {"P_BOLT_LMM": "CHISQ_BOLT_LMM", "P_BOLT_LMM_INF": "CHISQ_BOLT_LMM_INF", "P_LINREG": "CHISQ_LINREG"}[pcol]
    if chi_col in header:
        chisq = _num(raw, chi_col, path)
    else:
        chisq = pl.Series(_chisq_from_p(p.to_numpy().astype(float)), dtype=pl.Float64).fill_nan(None)
    cols = {
        "SNP": raw["SNP"],
        "CHR": raw["CHR"],
        "BP": _num(raw, "BP", path, pl.Int64),
        "GENPOS": _num(raw, "GENPOS", path) if "GENPOS" in header else null_f,
        "ALLELE1": raw["ALLELE1"],
        "ALLELE0": raw["ALLELE0"],
        "A1FREQ": _num(raw, "A1FREQ", path) if "A1FREQ" in header else null_f,
        "N": null_i,
        "BETA": _num(raw, "BETA", path),
        "SE": _num(raw, "SE", path),
        "CHISQ": chisq,
        "P": p,
    }
    return pl.DataFrame(cols).select(SUMSTATS_COLS)


def _from_plink2(raw: pl.DataFrame, header: list[str], path: Path) -> pl.DataFrame:
    """PLINK 2 .glm.linear columns (ADD rows) in gimtool's schema."""
    _require(path, header, _PLINK2_NEEDED, "PLINK 2 .glm.linear")
    if "TEST" in header:
        raw = raw.filter(pl.col("TEST") == "ADD")
    null_f, null_i = _nulls(raw.height)
    if "AX" in header:
        a0 = raw["AX"]
    else:
        # biallelic: the tested allele is REF or ALT, the other one is the counterpart
        a0 = raw.select(pl.when(pl.col("A1") == pl.col("ALT")).then(pl.col("REF")).otherwise(pl.col("ALT")))[:, 0]
    beta = _num(raw, "BETA", path)
    if "T_STAT" in header:
        t = _num(raw, "T_STAT", path)
        chisq = t * t
    else:
        chisq = (beta / _num(raw, "SE", path)) ** 2
    cols = {
        "SNP": raw["ID"],
        "CHR": raw["#CHROM"],
        "BP": _num(raw, "POS", path, pl.Int64),
        "GENPOS": null_f,
        "ALLELE1": raw["A1"],
        "ALLELE0": a0,
        "A1FREQ": _num(raw, "A1_FREQ", path) if "A1_FREQ" in header else null_f,
        "N": _num(raw, "OBS_CT", path, pl.Int64) if "OBS_CT" in header else null_i,
        "BETA": beta,
        "SE": _num(raw, "SE", path),
        "CHISQ": chisq,
        "P": _num(raw, "P", path),
    }
    return pl.DataFrame(cols).select(SUMSTATS_COLS).with_columns(pl.col("CHISQ").fill_nan(None))
