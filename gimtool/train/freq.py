"""A1 allele frequencies of a set of people, for the genetic encoders' standardized input."""

from __future__ import annotations

import numpy as np


def a1_frequencies(genotypes, rows: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
    """(n_snps,) float64 A1 frequencies over `rows` (all when None) of an (n, L) int8 array.

    Calls other than 0/1/2 are missing and left out; a SNP with no call gets 0.5. The array may
    be a memmap: it is read `chunk` rows at a time, in sorted row order.
    """
    n = genotypes.shape[0] if rows is None else len(rows)
    rows = np.arange(genotypes.shape[0]) if rows is None else np.sort(np.asarray(rows))
    total = np.zeros(genotypes.shape[1], dtype=np.int64)
    called = np.zeros(genotypes.shape[1], dtype=np.int64)
    for a in range(0, n, chunk):
        g = np.asarray(genotypes[rows[a:a + chunk]])
        ok = (g >= 0) & (g <= 2)
        total += np.where(ok, g, 0).sum(0, dtype=np.int64)
        called += ok.sum(0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        af = total / (2.0 * called)
    return np.where(called > 0, af, 0.5)
