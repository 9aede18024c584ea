"""Per-phenotype numerics around an association scan: the rank-based inverse normal transform
of phenotypes, and the genomic inflation factor (lambda GC) of a scan's P values.

Arrays in, arrays (or numbers) out; samples x phenotypes, NaN = missing.
"""

from __future__ import annotations

import numpy as np

CHISQ_MEDIAN_1DF = 0.4549364231195724  # median of the 1-df chi-squared distribution


def inverse_normal_transform(y: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    """Rank-based inverse normal transform of each phenotype after regressing out the covariates
    (and an intercept) on its own samples, as transferGWAS and ContIG do. Blom offsets
    (r − 3/8)/(n + 1/4); ties get their average rank.

    y: (n, p) NaN = missing; c: (n, q) or None. Returns (n, p), NaN where y or a covariate is.
    """
    from scipy.stats import norm, rankdata

    out = np.full_like(y, np.nan)
    n = y.shape[0]
    cc = np.zeros((n, 0)) if c is None else c
    ok_c = np.all(np.isfinite(cc), axis=1)
    for j in range(y.shape[1]):
        m = np.isfinite(y[:, j]) & ok_c
        w = np.column_stack([np.ones(m.sum()), cc[m]])
        coef, *_ = np.linalg.lstsq(w, y[m, j], rcond=None)
        r = y[m, j] - w @ coef
        rk = rankdata(r)
        out[m, j] = norm.ppf((rk - 0.375) / (m.sum() + 0.25))
    return out


def lambda_gc(p: np.ndarray) -> float:
    """Median 1-df χ² implied by the P values over its expectation under the null."""
    from statistics import NormalDist  # χ²(1) quantile = squared normal quantile; no scipy import

    p = p[np.isfinite(p)]
    if len(p) == 0:
        return float("nan")
    med = float(np.median(p))
    if med <= 0.0:
        return float("inf")
    z = NormalDist().inv_cdf(min(med, 1.0) / 2.0)
    return z * z / CHISQ_MEDIAN_1DF
