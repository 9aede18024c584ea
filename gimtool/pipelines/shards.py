"""K/N parts of a job, for cluster job arrays: which contiguous slice of the people (`prep-mri
--shard`, `embed --shard`) or of the SNPs (`gwas --chunk`) the K-th of N jobs takes, and where the
parts are written so that `gimtool merge` finds them.

Parts are contiguous and in input order, so parts 1..N joined in order are in the order of a
run that was not split. A part of `--out X --shard K/N` is written as ``X.shardKofN`` (the image
store folder, or ``X.shardKofN.tsv``, each with its ``.log``): every task of an array passes the
same --out, and the merge checks that all N parts are there.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gimtool.errors import InputError


def parse_part(spec: str, option: str) -> tuple[int, int]:
    """`K/N` (1-based K) -> (K, N); an InputError naming `option` when malformed."""
    try:
        k, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise InputError(f"{option} {spec}: expected K/N with integers, e.g. 3/10") from None
    if not (n >= 1 and 1 <= k <= n):
        raise InputError(f"{option} {spec}: expected 1 <= K <= N")
    return k, n


def part_bounds(k: int, n: int, total: int, align: int = 1) -> tuple[int, int]:
    """[start, stop) of the K-th (1-based) of N near-equal contiguous parts of `total` items.

    With `align`, every boundary but the end is a multiple of `align` (embed: whole batches, so
    that each batch of a part is a batch of the unsplit run and gives the same numbers). With
    align 1 the parts are those of `gwas --chunk`.
    """
    units = -(-total // align)
    bounds = np.linspace(0, units, n + 1).round().astype(np.int64) * align
    return int(min(bounds[k - 1], total)), int(min(bounds[k], total))


def part_name(out: str, k: int, n: int) -> str:
    """Where part K of N of `--out X` is written: ``X.shardKofN``."""
    return f"{out}.shard{k}of{n}"


def take_part(items, spec: str | None, option: str, what: str, log, align: int = 1):
    """The K-th of N parts of `items` (a polars frame or a numpy array; all of it when `spec` is
    None), logged; an InputError when the part would be empty."""
    if spec is None:
        return items
    k, n = parse_part(spec, option)
    total = len(items)
    a, b = part_bounds(k, n, total, align)
    if a >= b:
        unit = f" (in whole batches of {align})" if align > 1 else ""
        raise InputError(f"{option} {spec}: there are {total} {what}, too few for {n} parts{unit}; use a smaller N")
    log.info(f"{option} {spec}: {what} {a + 1}-{b} of {total}")
    return items[a:b]


def find_parts(out: str, suffix: str = "", folders: bool = False) -> list[Path]:
    """The parts ``OUT.shardKofN<suffix>`` of `out`, K = 1..N in order (files, or folders).

    Returns [] when there are none; an InputError when parts of different N are present or one is
    missing (naming it, so that the user reruns that task).
    """
    base = Path(out)
    pat = re.compile(rf"^{re.escape(base.name)}\.shard(\d+)of(\d+){re.escape(suffix)}$")
    found: dict[int, dict[int, Path]] = {}
    parent = base.parent if str(base.parent) else Path(".")
    for p in parent.glob(f"{base.name}.shard*of*{suffix}") if parent.is_dir() else []:
        m = pat.match(p.name)
        if m and (p.is_dir() if folders else p.is_file()):
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        return []
    if len(found) > 1:
        raise InputError(f"{out}: parts of different splits ({', '.join(f'N={n}' for n in sorted(found))}) are present; "
                         f"remove the stale ones")
    (n, parts), = found.items()
    missing = [k for k in range(1, n + 1) if k not in parts]
    if missing:
        names = ", ".join(part_name(str(base), k, n) + suffix for k in missing[:5])
        raise InputError(f"{out}: {len(missing)} of {n} parts missing ({names}); run those tasks (with --resume) first")
    return [parts[k] for k in range(1, n + 1)]
