"""Scoring a representation against a simulated cohort's truth (quick start and benchmarks).

Pure functions over tables: loci found by `clump --loci` against the simulator's true loci.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def overlaps(found: pl.DataFrame, truth: pl.DataFrame) -> np.ndarray:
    """Boolean matrix (len(found), len(truth)): same chromosome and intervals START..END intersect."""
    fc, fs, fe = (found[c].to_numpy() for c in ("CHR", "START", "END"))
    tc, ts, te = (truth[c].to_numpy() for c in ("CHR", "START", "END"))
    return (fc[:, None].astype(np.int64) == tc[None, :].astype(np.int64)) & (fs[:, None] <= te[None, :]) & (fe[:, None] >= ts[None, :])


def score_loci(found: pl.DataFrame, truth: pl.DataFrame) -> dict[str, int]:
    """How many found loci are true, how many are not, and how many true loci were recovered.

    found: loci table (LOCI_COLS: CHR START END ...); truth: the simulator's truth/loci.tsv
    (one row per strong causal SNP, START..END = its position +- 250 kb).
    """
    if found.height == 0 or truth.height == 0:
        return {"loci": found.height, "true": 0, "false": found.height, "recovered": 0, "truth": truth.height}
    ov = overlaps(found, truth)
    return {
        "loci": found.height,
        "true": int(ov.any(axis=1).sum()),
        "false": int((~ov.any(axis=1)).sum()),
        "recovered": int(ov.any(axis=0).sum()),
        "truth": truth.height,
    }
