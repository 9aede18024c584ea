"""Phenotype, covariate and embedding tables, sample ID lists, and sample alignment.

Format: whitespace-separated with a header whose first two columns are ``FID IID`` (``#FID`` is
accepted, as PLINK 2 writes it); missing values ``NA`` (also ``nan``; a numeric missing code, -9 as in
PLINK 2, with ``missing_code``); text columns of categorical covariates with ``categorical``. Every
problem is reported with the file, the line and the column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.conventions import ID_COLS, MISSING

_MISSING = {"NA", "na", "nan", "NaN", "NAN", ""}


def read_table(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    what: str = "phenotype",
    missing_neg9: bool = False,
    missing_code: float | None = None,
    categorical: bool = False,
    counts: dict | None = None,
) -> pl.DataFrame:
    """Read a `FID IID name...` table; returns FID, IID (str) and the named columns as Float64.

    `columns`: the columns to keep (all when None); a name not in the header is an error that
    lists the columns found. Non-numeric values, duplicate IDs and ragged lines are errors.

    `missing_code`: a number that means missing in any spelling (-9, -9.0), PLINK 2's
    --input-missing-phenotype; ``missing_neg9=True`` is ``missing_code=-9``. `counts`: a dict
    that receives, per column, how many values were the missing code. `categorical`: a column
    whose values are all text (besides NA, NONE and the missing code) is returned as Utf8 with
    nulls for missing, for the caller to split into indicator columns; a column mixing numbers
    and text is an error naming the column.
    """
    if missing_code is None and missing_neg9:
        missing_code = -9.0
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    opener = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open
    with opener(path, "rt") as fh:
        text = fh.read()
    all_lines = text.splitlines()
    first = next((ln for ln in all_lines if ln.strip()), None)
    if first is None:
        raise InputError(f"{path}: {what} file is empty")
    header = first.split()
    if header and header[0] == "#FID":
        header[0] = "FID"
    if header[:2] != list(ID_COLS):
        raise InputError(
            f"{path}: line 1: expected a header starting with 'FID IID', found {' '.join(header[:2])!r}"
        )
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{path}: line 1: duplicate column name(s) {', '.join(dup)}")
    if not any(ln.strip() for ln in all_lines[all_lines.index(first) + 1:]):
        raise InputError(f"{path}: {what} file has a header and no rows")
    names = header[2:]
    if columns is None:
        columns = names
    else:
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(
                f"{path}: column(s) {', '.join(missing)} not found; {what} columns are: {', '.join(names) or '(none)'}"
            )
    idx = [header.index(c) for c in columns]
    typed = None
    raw = _parse_fast(text, header, list(columns), _MISSING)
    if raw is not None:
        typed = _typed(path, raw, list(columns), missing_code, categorical)
    if typed is None:
        # something is wrong (or unusual): the line-by-line parse reads it, or says where the problem is
        lines = [(i + 1, ln) for i, ln in enumerate(all_lines) if ln.strip()]
        raw, linenos = _parse_slow(path, lines[1:], header, idx, columns, _MISSING)
        typed = _typed(path, raw, list(columns), missing_code, categorical, linenos)
    df, n_code = typed
    if counts is not None:
        counts.update({c: n for c, n in n_code.items() if n})
    return df


def _typed(path, raw: pl.DataFrame, columns: list[str], code: float | None, categorical: bool,
           linenos: list[int] | None = None):
    """(the table with numbers as Float64 and categorical columns as Utf8, {column: values equal
    to `code`}) from all-text columns (missing tokens already null). A problem raises InputError
    naming the line when `linenos` is given, else gives None (the line-by-line parse then says)."""
    out, n_code = [], {}
    for c in columns:
        s = raw[c]
        f = s.cast(pl.Float64, strict=False).fill_nan(None)
        is_code = (f == code).fill_null(False) if code is not None else pl.Series([False] * len(f))
        n_code[c] = int(is_code.sum())
        text = s.is_not_null() & f.is_null()
        numbers = f.is_not_null() & ~is_code
        bad = None
        if text.any() and not categorical:
            bad = int(text.arg_true()[0])
            what = f"expected a number or NA, found {s[bad]!r}"
        elif text.any() and numbers.any():
            bad = int(numbers.arg_true()[0])
            first_text = s[int(text.arg_true()[0])]
            what = (f"mixes numbers ({s[bad]!r}) and text ({first_text!r}); a categorical covariate must be all "
                    f"text (missing: NA, NONE{'' if code is None else f' or {code:g}'})")
        if bad is not None:
            if linenos is None:
                return None
            raise InputError(f"{path}: line {linenos[bad]}: column {c}: {what}")
        if text.any():  # categorical
            s = pl.Series(c, [None if (m or v == "NONE") else v for v, m in zip(s.to_list(), is_code.to_list())],
                          dtype=pl.Utf8)
            out.append(s)
        else:
            out.append(f.set(is_code, None).alias(c) if n_code[c] else f.alias(c))
    return raw.select("FID", "IID").with_columns(out), n_code


def _parse_fast(text: str, header: list[str], columns, miss: set[str]) -> pl.DataFrame | None:
    """The table (FID, IID, the columns as text with nulls for missing) parsed by polars, when every line is
    separated by single tabs (or single spaces): a 40,000 x 130 embedding table in a fraction of
    a second instead of seconds. None when the file is not that regular or anything is wrong
    (ragged line, duplicate ID): the line-by-line parse then finds it and says where."""
    import io

    sep = "\t" if "\t" in text else " "
    if "\r" in text or sep + sep in text or ("\t" in text and " " in text):
        return None
    lines = [ln for ln in text.split("\n") if ln]
    if any(ln[0] == sep or ln[-1] == sep or ln.count(sep) != len(header) - 1 for ln in lines):
        return None
    names = ["FID", "IID", *header[2:]]  # '#FID' is read as FID
    try:
        df = pl.read_csv(
            io.StringIO(text), separator=sep, has_header=False, skip_rows=1, new_columns=names, quote_char=None,
            infer_schema=False, columns=[names.index(c) for c in ("FID", "IID", *columns)],
        )  # all text; the missing-value tokens apply to the value columns only, not to IDs
        na = sorted(miss)
        df = df.with_columns([pl.when(pl.col(c).is_in(na)).then(None).otherwise(pl.col(c)).alias(c) for c in columns])
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if df.height != len(lines) - 1 or df.select(pl.struct("FID", "IID").is_duplicated().any()).item():
        return None
    return df.select("FID", "IID", *columns)


def _parse_slow(path: Path, lines, header: list[str], idx: list[int], columns, miss: set[str]):
    """The line-by-line parse: (the table as text, the line number of each row); raises InputError
    naming the line of a ragged line or a duplicate ID."""
    fids, iids, vals, linenos = [], [], [], []
    seen: dict[tuple[str, str], int] = {}
    for lineno, line in lines:
        tok = line.split()
        if len(tok) != len(header):
            raise InputError(f"{path}: line {lineno}: expected {len(header)} columns, found {len(tok)}")
        key = (tok[0], tok[1])
        if key in seen:
            raise InputError(
                f"{path}: line {lineno}: duplicate sample ID (FID {tok[0]}, IID {tok[1]}), first seen on line {seen[key]}"
            )
        seen[key] = lineno
        fids.append(tok[0])
        iids.append(tok[1])
        linenos.append(lineno)
        vals.append([None if tok[j] in miss else tok[j] for j in idx])
    data = {"FID": fids, "IID": iids, **{c: [row[k] for row in vals] for k, c in enumerate(columns)}}
    return pl.DataFrame(data, schema={c: pl.Utf8 for c in ("FID", "IID", *columns)}), linenos


def write_table(df: pl.DataFrame, path: str | os.PathLike, float_precision: int | None = None) -> None:
    """Write a `FID IID ...` table tab-separated with NA for missing, atomically."""
    from gimtool.io.atomic import atomic_path

    if list(df.columns[:2]) != list(ID_COLS):
        raise ValueError(f"table must start with FID IID, got {df.columns[:2]}")
    floats = [c for c, t in df.schema.items() if t in (pl.Float32, pl.Float64)]
    df = df.with_columns([pl.col(c).fill_nan(None) for c in floats])
    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t", null_value=MISSING, float_precision=float_precision)


def write_tsv(df: pl.DataFrame, path: str | os.PathLike, float_precision: int | None = None) -> None:
    """Write any table tab-separated with a header and NA for missing values (NaN too), atomically."""
    from gimtool.io.atomic import atomic_path

    floats = [c for c, t in df.schema.items() if t in (pl.Float32, pl.Float64)]
    df = df.with_columns([pl.col(c).fill_nan(None) for c in floats])
    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t", null_value=MISSING, float_precision=float_precision)


def read_ids(path: str | os.PathLike, what: str = "sample list") -> pl.DataFrame:
    """Read a keep/remove list: `FID IID` per line (extra columns ignored; a `FID IID`/`#FID IID` header skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    with open(path) as fh:
        rows = [(n, line.split()) for n, line in enumerate(fh, 1) if line.strip()]
    if rows and rows[0][0] == 1 and rows[0][1][0] in ("FID", "#FID"):
        rows = rows[1:]  # the header
    short = next(((n, tok) for n, tok in rows if len(tok) < 2), None)
    if short is not None:
        raise InputError(f"{path}: line {short[0]}: expected 'FID IID', found {' '.join(short[1])!r}")
    fids, iids = [tok[0] for _, tok in rows], [tok[1] for _, tok in rows]
    return pl.DataFrame({"FID": fids, "IID": iids}, schema={"FID": pl.Utf8, "IID": pl.Utf8}).unique(maintain_order=True)


def read_snp_list(path: str | os.PathLike, what: str = "SNP list") -> list[str]:
    """Read a SNP list: the first whitespace-separated token of every non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    with open(path) as fh:
        return [ln.split()[0] for ln in fh if ln.strip()]


def write_ids(ids: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a `FID IID` list (no header, tab-separated, as PLINK --keep reads it), atomically."""
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        ids.select("FID", "IID").write_csv(tmp, separator="\t", include_header=False)


@dataclass
class Alignment:
    """Row indices that put a table's rows in the order of a reference sample list.

    `ref_index[k]` and `table_index[k]` are the same person; order follows the reference.
    """

    ref_index: np.ndarray
    table_index: np.ndarray
    n_ref: int
    n_table: int

    @property
    def n_matched(self) -> int:
        return len(self.ref_index)

    def describe(self, ref_name: str, table_name: str) -> str:
        return (
            f"{self.n_matched} samples matched between {ref_name} ({self.n_ref}) and {table_name} ({self.n_table}); "
            f"{self.n_ref - self.n_matched} of {ref_name} and {self.n_table - self.n_matched} of {table_name} dropped"
        )


def align(reference: pl.DataFrame, table: pl.DataFrame) -> Alignment:
    """Match samples by (FID, IID). Both frames need FID and IID columns."""
    ref = reference.select("FID", "IID").with_row_index("_r")
    tab = table.select("FID", "IID").with_row_index("_t")
    j = ref.join(tab, on=["FID", "IID"], how="inner").sort("_r")
    return Alignment(
        ref_index=j["_r"].to_numpy().astype(np.int64),
        table_index=j["_t"].to_numpy().astype(np.int64),
        n_ref=reference.height,
        n_table=table.height,
    )


def select_samples(
    samples: pl.DataFrame,
    keep: str | os.PathLike | None = None,
    remove: str | os.PathLike | None = None,
    log=None,
) -> np.ndarray:
    """Boolean mask over `samples` (FID, IID) after --keep and --remove.

    As plink2: IDs of a keep or remove list that are not among the samples (people dropped by
    QC, say) are ignored and counted in the log. A keep list that selects no one, or lists
    that leave no one, is an error.
    """
    mask = np.ones(samples.height, dtype=bool)
    for path, is_keep in ((keep, True), (remove, False)):
        if path is None:
            continue
        what = "keep list" if is_keep else "remove list"
        ids = read_ids(path, what)
        al = align(samples, ids)
        unknown = ids.height - al.n_matched
        if is_keep and al.n_matched == 0:
            eg = ", ".join(f"{f} {i}" for f, i in ids.head(3).iter_rows())
            raise InputError(f"{path}: the keep list selects no one (none of its {ids.height} IDs is in the data"
                             + (f", e.g. {eg})" if eg else ")"))
        hit = np.zeros(samples.height, dtype=bool)
        hit[al.ref_index] = True
        mask &= hit if is_keep else ~hit
        if log:
            absent = f", {unknown} not in the data (ignored)" if unknown else ""
            log.info(f"--{'keep' if is_keep else 'remove'} {path}: {al.n_matched} of {ids.height} IDs matched{absent}; "
                     f"{int(mask.sum())} samples remain")
        if not mask.any():
            raise InputError(f"{path}: no samples remain after this {what} (of {samples.height})")
    return mask
