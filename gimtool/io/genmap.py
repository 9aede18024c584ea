"""Genetic maps in the BOLT-LMM / HapMap format, and `--chr` specifications.

A map file has a header and four whitespace-separated columns:
``chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)``; gzipped or not.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.errors import InputError, OptionError
from gimtool.conventions import GENMAP_COLS, chrom_to_int


def parse_chr_spec(spec: str) -> set[int]:
    """`--chr` values: '1-22', '1-22,X', '17,19-21' -> set of PLINK chromosome numbers."""
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            ia, ib = chrom_to_int(a), chrom_to_int(b)
            if ia is None or ib is None or ia > ib:
                raise OptionError(f"--chr {spec}: bad range {part!r}")
            out.update(range(ia, ib + 1))
        else:
            i = chrom_to_int(part)
            if i is None:
                raise OptionError(f"--chr {spec}: unknown chromosome {part!r}")
            out.add(i)
    return out


def read_genetic_map(path: str | os.PathLike) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Read a genetic map: {chromosome: (bp increasing, cM)}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: genetic map file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    chroms, bps, cms = [], [], []
    try:
        with opener(path, "rt") as fh:
            header = fh.readline().split()
            if len(header) != 4 or header[0].lower() not in ("chr", "chrom", "chromosome"):
                raise InputError(
                    f"{path}: line 1: expected the header '{' '.join(GENMAP_COLS)}', found {' '.join(header)!r}"
                )
            for lineno, line in enumerate(fh, 2):
                tok = line.split()
                if not tok:
                    continue
                if len(tok) != 4:
                    raise InputError(f"{path}: line {lineno}: expected 4 columns, found {len(tok)}")
                c = chrom_to_int(tok[0])
                if c is None:
                    raise InputError(f"{path}: line {lineno}: column chr: unknown chromosome {tok[0]!r}")
                try:
                    chroms.append(c)
                    bps.append(float(tok[1]))
                    cms.append(float(tok[3]))
                except ValueError:
                    raise InputError(f"{path}: line {lineno}: position and Genetic_Map(cM) must be numbers") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: cannot read genetic map ({e})") from None
    chroms_a, bps_a, cms_a = np.array(chroms), np.array(bps), np.array(cms)
    out = {}
    for c in np.unique(chroms_a):
        sel = chroms_a == c
        order = np.argsort(bps_a[sel], kind="stable")
        b, m = bps_a[sel][order], cms_a[sel][order]
        keep = np.concatenate([[True], np.diff(b) > 0])  # drop duplicate positions
        out[int(c)] = (b[keep], m[keep])
    return out


def write_genetic_map(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a map frame with GENMAP_COLS (space-separated with header; gzipped if path ends .gz)."""
    from gimtool.io.atomic import atomic_path

    text = df.select(list(GENMAP_COLS)).write_csv(separator=" ")
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            with gzip.open(tmp, "wt") as fh:
                fh.write(text)
        else:
            tmp.write_text(text)
