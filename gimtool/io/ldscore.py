"""LD score files in LDSC's format, so that LDSC and gimtool can read each other's.

``<prefix>.l2.ldscore.gz``: gzipped, tab-separated, header ``CHR SNP BP L2`` (L2 with 3
decimals, as LDSC prints it); ``<prefix>.l2.M`` and ``<prefix>.l2.M_5_50``: one line with the
number of SNPs (all / MAF > 5%) the scores were summed over. LDSC's per-chromosome layout
(``<prefix>1.l2.ldscore.gz`` ... ``<prefix>22...``, its ``--ref-ld-chr``) is read too.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from gimtool.errors import InputError
from gimtool.conventions import LDSCORE_COLS


@dataclass
class LDScoreFile:
    table: pl.DataFrame  # CHR (Utf8) SNP (Utf8) BP (Int64) L2 (Float64), file order
    M: float
    M_5_50: float | None  # None when the .M_5_50 file is absent
    paths: list[Path]


def write_ldscore(prefix: str | os.PathLike, table: pl.DataFrame, M: int, M_5_50: int) -> list[Path]:
    """Write `<prefix>.l2.ldscore.gz`, `.l2.M`, `.l2.M_5_50` atomically; returns the paths."""
    from gimtool.io.atomic import atomic_path, atomic_write_text

    missing = [c for c in LDSCORE_COLS if c not in table.columns]
    if missing:
        raise ValueError(f"LD score table lacks {missing}")
    prefix = str(prefix)
    out = table.select(
        pl.col("CHR").cast(pl.Utf8), pl.col("SNP").cast(pl.Utf8), pl.col("BP").cast(pl.Int64),
        pl.col("L2").cast(pl.Float64).round(3),
    )
    buf = io.BytesIO()
    out.write_csv(buf, separator="\t", float_precision=3)
    p = Path(prefix + ".l2.ldscore.gz")
    with atomic_path(p) as tmp:
        with open(tmp, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, compresslevel=6) as gz:
            gz.write(buf.getvalue())
    atomic_write_text(prefix + ".l2.M", f"{int(M)}\n")
    atomic_write_text(prefix + ".l2.M_5_50", f"{int(M_5_50)}\n")
    return [p, Path(prefix + ".l2.M"), Path(prefix + ".l2.M_5_50")]


def _read_one(path: Path) -> pl.DataFrame:
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read LD score file ({e})") from None
    try:
        df = pl.read_csv(io.BytesIO(data), separator="\t", infer_schema_length=0)
    except pl.exceptions.PolarsError as e:
        raise InputError(f"{path}: not a tab-separated LD score file ({e})") from None
    if len(df.columns) == 1 and " " in df.columns[0]:  # whitespace-separated variant
        lines = data.decode().split("\n")
        text = "\n".join("\t".join(ln.split()) for ln in lines if ln.strip())
        df = pl.read_csv(io.StringIO(text), separator="\t", infer_schema_length=0)
    needed = ("CHR", "SNP", "BP")
    l2 = "L2" if "L2" in df.columns else None
    if l2 is None:
        cands = [c for c in df.columns if c.endswith("L2")]
        if len(cands) == 1:
            l2 = cands[0]
    missing = [c for c in needed if c not in df.columns] + ([] if l2 else ["L2"])
    if missing:
        raise InputError(
            f"{path}: LD score file lacks column(s) {', '.join(missing)}; expected {' '.join(LDSCORE_COLS)}, "
            f"found {' '.join(df.columns)}"
        )
    try:
        return df.select(
            pl.col("CHR").cast(pl.Utf8), pl.col("SNP").cast(pl.Utf8), pl.col("BP").cast(pl.Int64),
            pl.col(l2).cast(pl.Float64).alias("L2"),
        )
    except pl.exceptions.PolarsError:
        raise InputError(f"{path}: columns BP and {l2} must be numeric") from None


def _read_count(path: Path) -> float:
    try:
        return float(sum(float(t) for t in path.read_text().split()))
    except ValueError:
        raise InputError(f"{path}: expected one number (the SNP count), found {path.read_text()[:40]!r}") from None


def ldscore_paths(prefix: str | os.PathLike) -> list[Path]:
    """The `.l2.ldscore.gz` files of a prefix: one file, or LDSC's one per chromosome."""
    prefix = str(prefix)
    for suf in (".l2.ldscore.gz", ".l2.ldscore"):
        if Path(prefix + suf).is_file():
            return [Path(prefix + suf)]
    d = Path(prefix).parent
    base = Path(prefix).name
    pat = re.compile(re.escape(base) + r"(\d+)\.l2\.ldscore(\.gz)?$")
    hits = sorted(((int(m.group(1)), p) for p in d.glob(base + "*.l2.ldscore*") if (m := pat.match(p.name))))
    if not hits:
        raise InputError(
            f"{prefix}.l2.ldscore.gz: LD score file not found (nor per-chromosome {prefix}<chr>.l2.ldscore.gz); "
            "make one with `gimtool h2 --bfile REF` (or LDSC --l2)"
        )
    return [p for _, p in hits]


def read_ldscore(prefix: str | os.PathLike) -> LDScoreFile:
    """Read LD scores and their M counts (summed over per-chromosome files)."""
    paths = ldscore_paths(prefix)
    tables, M, M550 = [], 0.0, 0.0
    have_550 = True
    for p in paths:
        tables.append(_read_one(p))
        stem = str(p)[: -len(".ldscore.gz")] if str(p).endswith(".gz") else str(p)[: -len(".ldscore")]
        mp = Path(stem + ".M")
        if not mp.is_file():
            raise InputError(f"{mp}: SNP count file not found (LDSC writes it beside {p.name})")
        M += _read_count(mp)
        m5 = Path(stem + ".M_5_50")
        if m5.is_file():
            M550 += _read_count(m5)
        else:
            have_550 = False
    return LDScoreFile(pl.concat(tables), M, M550 if have_550 else None, paths)
