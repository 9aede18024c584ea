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


def score_loci(found: pl.DataFrame, truth: pl.DataFrame) -> dict:
    """How many found loci are true, how many are not, and how many true loci were recovered.

    found: loci table (LOCI_COLS: CHR START END ...); truth: the simulator's truth/loci.tsv
    (one row per strong causal SNP, START..END = its position +- 250 kb; with its FACTOR column,
    "by_factor" counts the true loci recovered of each factor).
    """
    if found.height == 0 or truth.height == 0:
        ov = np.zeros((found.height, truth.height), dtype=bool)
    else:
        ov = overlaps(found, truth)
    hit = ov.any(axis=0)
    out = {
        "loci": found.height,
        "true": int(ov.any(axis=1).sum()),
        "false": int((~ov.any(axis=1)).sum()),
        "recovered": int(hit.sum()),
        "truth": truth.height,
    }
    if "FACTOR" in truth.columns:
        # true loci recovered per factor, in the truth table's order: which heritable factors a
        # representation carries (a factor's loci are found together or not at all, mostly)
        factors = truth["FACTOR"].to_numpy()
        out["by_factor"] = {f: int(hit[factors == f].sum()) for f in dict.fromkeys(factors.tolist())}
    return out
