"""Loci tables written by `gimtool clump --loci` (LOCI_COLS), read back for --compare."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from gimtool.errors import InputError

NEEDED = ("CHR", "START", "END")


def read_loci(path: str | os.PathLike) -> pl.DataFrame:
    """A loci table (needs CHR, START, END; START and END as Int64)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: loci file (--compare) not found")
    try:
        df = pl.read_csv(p, separator="\t", infer_schema=False)
    except pl.exceptions.PolarsError as e:
        raise InputError(f"{p}: not a tab-separated loci table ({str(e).splitlines()[0]})") from None
    miss = [c for c in NEEDED if c not in df.columns]
    if miss:
        raise InputError(f"{p}: loci table lacks column(s) {', '.join(miss)}; expected {' '.join(NEEDED)}, found {' '.join(df.columns)}")
    try:
        return df.with_columns(pl.col("START").cast(pl.Int64), pl.col("END").cast(pl.Int64))
    except pl.exceptions.PolarsError:
        raise InputError(f"{p}: START and END must be integers") from None
