"""LD score regression for SNP heritability, as LDSC v1 (`ldsc.py --h2`) computes it.

Model: E[chi2_j] = N_j h2 l_j / M + intercept. The estimator is LDSC's (Bulik-Sullivan et al.
2015, and the ldsc v1 code's choices, reproduced here so that the numbers agree):

* regressor N_j l_j / mean(N); weights 1/(2 (a + h2 N l_j / M)^2) x 1/w_j with l_j and the
  regression-weight LD score w_j floored at 1 and h2 clipped to [0, 1];
* initial weights from the aggregate estimate h2 = M (mean chi2 - 1) / mean(N l), then two
  reweighting steps (IRWLS) before the final weighted least squares;
* free intercept: the two-step estimator (intercept from SNPs with chi2 < 30, then the slope on
  all SNPs with the intercept fixed), its jackknife combining both steps; a fixed intercept is a
  one-step fit of chi2 - a;
* standard errors from a block jackknife over `n_blocks` contiguous SNP blocks (200);
* mean chi2, lambda_GC = median(chi2)/0.4549, ratio = (intercept - 1)/(mean chi2 - 1).

Pure arrays in, a result out. SNP order matters (the jackknife blocks are contiguous): pass SNPs
in genome order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TWO_STEP_CUTOFF = 30.0
MEDIAN_CHI2_1DF = 0.4549


@dataclass
class LdscResult:
    h2: float
    h2_se: float
    intercept: float
    intercept_se: float  # nan when the intercept was fixed
    mean_chisq: float
    lambda_gc: float
    ratio: float  # nan when mean chi2 <= 1 or the intercept was fixed
    ratio_se: float
    n_snp: int
    n_blocks: int
    n_twostep_dropped: int  # SNPs left out of step 1 (chi2 >= cutoff)


def _weights(ld, w_ld, N, M, h2, intercept):
    h2 = min(max(h2, 0.0), 1.0)
    ld = np.fmax(ld, 1.0)
    w_ld = np.fmax(w_ld, 1.0)
    het = 1.0 / (2.0 * np.square(intercept + h2 * N / M * ld))
    return het / w_ld


def _block_edges(n: int, n_blocks: int) -> np.ndarray:
    return np.floor(np.linspace(0, n, n_blocks + 1)).astype(np.int64)


@dataclass
class _Jack:
    est: np.ndarray  # (p,) full-data estimate
    delete: np.ndarray  # (n_blocks, p) leave-one-block-out estimates
    edges: np.ndarray


def _lstsq_jackknife(X: np.ndarray, y: np.ndarray, edges: np.ndarray) -> _Jack:
    """Least squares and its delete-one-block estimates from per-block X'X and X'y."""
    nb = len(edges) - 1
    p = X.shape[1]
    xtx = np.empty((nb, p, p))
    xty = np.empty((nb, p))
    for k in range(nb):
        Xb, yb = X[edges[k] : edges[k + 1]], y[edges[k] : edges[k + 1]]
        xtx[k] = Xb.T @ Xb
        xty[k] = Xb.T @ yb
    XtX, Xty = xtx.sum(0), xty.sum(0)
    est = np.linalg.solve(XtX, Xty)
    delete = np.stack([np.linalg.solve(XtX - xtx[k], Xty - xty[k]) for k in range(nb)])
    return _Jack(est, delete, edges)


def _jackknife_cov(est: np.ndarray, delete: np.ndarray) -> np.ndarray:
    nb = delete.shape[0]
    pseudo = nb * est[None, :] - (nb - 1) * delete
    return np.atleast_2d(np.cov(pseudo.T, ddof=1)) / nb


def _wls(X, y, sqrt_w):
    """Weighted least squares with rows scaled by sqrt(weight) (scale-free)."""
    s = sqrt_w / sqrt_w.sum()
    return np.linalg.lstsq(X * s[:, None], y * s, rcond=None)[0]


def _irwls(X, y, reweight, w0, edges) -> _Jack:
    """Two reweighting steps, then the weighted fit and its block jackknife."""
    sw = np.sqrt(w0)
    for _ in range(2):
        sw = np.sqrt(reweight(_wls(X, y, sw)))
    s = sw / sw.sum()
    return _lstsq_jackknife(X * s[:, None], y * s, edges)


def _two_step(chisq, xs, ld, w_ld, N, M: float, Nbar: float, w0, nb: int, cutoff: float):
    """LDSC v1's two-step estimator: the intercept from the SNPs with chi2 < cutoff, then the
    slope on all SNPs with that intercept fixed; the jackknife covers both steps.
    Returns (slope, slope SE, intercept, intercept SE, SNPs left out of step 1)."""
    n = len(chisq)
    keep = chisq < cutoff
    n1 = int(keep.sum())
    if n1 < 2:
        raise ValueError(f"two-step estimator: only {n1} SNPs with chi2 < {cutoff}")
    # step 1: intercept (and a slope) from the SNPs below the cutoff
    X1 = np.column_stack([xs[keep], np.ones(n1)])
    # LDSC v1 feeds step 1's reweighting the N-scaled regressor, not the raw LD score
    ld1, wld1, N1 = xs[keep], w_ld[keep], N[keep]
    e1 = _block_edges(n1, min(n1, nb))
    jk1 = _irwls(X1, chisq[keep], lambda c: _weights(ld1, wld1, N1, M, M * c[0] / Nbar, c[1]), w0[keep], e1)
    a1 = float(jk1.est[1])
    # step 2: slope on all SNPs with the intercept fixed; blocks are step 1's, mapped back
    pos = np.flatnonzero(keep)
    e2 = np.concatenate([[0], pos[e1[1:-1]], [n]])
    jk2 = _irwls(xs[:, None], chisq - a1, lambda c: _weights(ld, w_ld, N, M, M * c[0] / Nbar, a1), w0, e2)
    # a block's step-1 intercept shift moves its step-2 slope by -c per unit (first order)
    c = float(np.sum(w0 * xs) / np.sum(w0 * xs * xs))
    est = np.array([jk2.est[0], a1])
    delete = np.column_stack([jk2.delete[:, 0] - c * (jk1.delete[:, 1] - a1), jk1.delete[:, 1]])
    cov = _jackknife_cov(est, delete)
    return est[0], np.sqrt(cov[0, 0]), a1, float(np.sqrt(cov[1, 1])), n - n1


def ldsc_h2(
    chisq: np.ndarray,
    ld: np.ndarray,
    w_ld: np.ndarray,
    N: np.ndarray,
    M: float,
    n_blocks: int = 200,
    intercept: float | None = None,
    two_step: float | None = TWO_STEP_CUTOFF,
) -> LdscResult:
    """SNP heritability by LD score regression.

    chisq, ld, w_ld, N: shape (n_snp,), SNPs in genome order. ld: reference LD scores; w_ld:
    regression-weight LD scores (LD with the regression SNPs; ld itself when no other is at hand).
    M: number of SNPs the LD scores were summed over (LDSC uses M_5_50). intercept: None for a
    free intercept, else the fixed value (usually 1). two_step: chi2 cutoff of the two-step
    estimator, used only with a free intercept; None for the one-step free fit.
    """
    chisq = np.asarray(chisq, np.float64).ravel()
    ld = np.asarray(ld, np.float64).ravel()
    w_ld = np.asarray(w_ld, np.float64).ravel()
    N = np.asarray(N, np.float64).ravel()
    n = len(chisq)
    if not (len(ld) == len(w_ld) == len(N) == n):
        raise ValueError(f"chisq {n}, ld {len(ld)}, w_ld {len(w_ld)}, N {len(N)}: lengths differ")
    if n < 2:
        raise ValueError(f"LD score regression needs at least 2 SNPs, got {n}")
    M = float(M)
    nb = min(n, n_blocks)
    edges = _block_edges(n, nb)
    mean_chisq = float(chisq.mean())
    lambda_gc = float(np.median(chisq) / MEDIAN_CHI2_1DF)

    null_a = 1.0 if intercept is None else float(intercept)
    agg_h2 = M * (mean_chisq - null_a) / float(np.mean(ld * N))
    w0 = _weights(ld, w_ld, N, M, agg_h2, null_a)
    Nbar = float(N.mean())
    xs = N * ld / Nbar  # slope regressor, scaled to keep the condition number low
    n_drop = 0

    if intercept is not None:
        y = chisq - intercept
        X = xs[:, None]
        jk = _irwls(X, y, lambda c: _weights(ld, w_ld, N, M, M * c[0] / Nbar, intercept), w0, edges)
        cov = _jackknife_cov(jk.est, jk.delete)
        slope, slope_se = jk.est[0], np.sqrt(cov[0, 0])
        a, a_se = float(intercept), float("nan")
    elif two_step is None:
        X = np.column_stack([xs, np.ones(n)])
        jk = _irwls(X, chisq, lambda c: _weights(ld, w_ld, N, M, M * c[0] / Nbar, c[1]), w0, edges)
        cov = _jackknife_cov(jk.est, jk.delete)
        slope, slope_se = jk.est[0], np.sqrt(cov[0, 0])
        a, a_se = float(jk.est[1]), float(np.sqrt(cov[1, 1]))
    else:
        slope, slope_se, a, a_se, n_drop = _two_step(chisq, xs, ld, w_ld, N, M, Nbar, w0, nb, two_step)

    h2 = float(M * slope / Nbar)
    h2_se = float(M * slope_se / Nbar)
    if intercept is None and mean_chisq > 1:
        ratio, ratio_se = (a - 1) / (mean_chisq - 1), a_se / (mean_chisq - 1)
    else:
        ratio, ratio_se = float("nan"), float("nan")
    return LdscResult(h2, h2_se, a, a_se, mean_chisq, lambda_gc, ratio, ratio_se, n, nb, n_drop)
