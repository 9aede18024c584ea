"""GREML: REML SNP heritability with one GRM eigendecomposition shared by all phenotypes.

Model: y = X b + g + e, g ~ N(0, s2g K), e ~ N(0, s2e I), K the GRM of standardized genotypes.
With K = U diag(lam) U' and h2 = s2g / (s2g + s2e), V = s2 H with H = U diag(d) U',
d = h2 lam + 1 - h2. The REML log-likelihood (of the error contrasts, Harville's, without the
constant log|X'X| term, as GCTA and BOLT-REML report it)

    l(s2, h2) = -1/2 [ (n-p) log 2pi + log|V| + log|X' V^-1 X| + y' P y ],
    P = V^-1 - V^-1 X (X' V^-1 X)^-1 X' V^-1,

profiled over s2 (s2 = y' P_H y / (n-p)) is a function of h2 alone that costs O(n p^2) in the
eigenbasis. It is maximized over h2 in [0, 1] (a grid, then Brent). The standard error comes from
the observed information of (s2g, s2e) at the optimum, mapped to h2 by the delta method.

Kernels: arrays in, arrays out; the GRM accumulation and eigendecomposition run in torch on the
device the caller chooses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gimtool.conventions import MISSING_INT8

LOG2PI = float(np.log(2 * np.pi))
H2_MAX = 1.0 - 1e-6  # d = h2 lam + 1 - h2 stays positive for lam >= 0 (GRM eigenvalues can be ~ -1e-12)
# GRM and eigenvectors are n x n float64 each: 2 x 8 n^2 bytes (6.4 GB at 20,000) plus workspace.
DEFAULT_MAX_N = 20_000


def grm_bytes(n: int) -> int:
    """Memory the GRM, its eigenvectors and eigh's workspace need (float64), in bytes."""
    return 3 * 8 * n * n


# --- GRM ---------------------------------------------------------------------------------------


class GRMAccumulator:
    """K = Z Z' / m accumulated over SNP chunks of standardized genotypes.

    Genotypes are mean-imputed and scaled to unit (ddof=0) variance per SNP over the samples given;
    monomorphic SNPs are skipped. Chunk products run in float32 on `device`; the running sum is
    float64, so thousands of chunks lose no precision.
    """

    def __init__(self, n: int, device="cpu"):
        import torch

        self.torch = torch
        self.n = n
        self.device = torch.device(device)
        self.K = torch.zeros((n, n), dtype=torch.float64, device=self.device)
        self.m = 0

    def add(self, G: np.ndarray) -> int:
        """Add a chunk G: (n, b) int8 (-127 missing) or float (NaN missing). Returns SNPs used."""
        torch = self.torch
        if G.shape[0] != self.n:
            raise ValueError(f"chunk has {G.shape[0]} samples, GRM has {self.n}")
        X = torch.as_tensor(np.asarray(G), device=self.device)
        if X.dtype == torch.int8:
            miss = X == MISSING_INT8
            X = X.to(torch.float32).masked_fill(miss, float("nan"))
        else:
            X = X.to(torch.float32)
        miss = torch.isnan(X)
        cnt = (~miss).sum(0)
        mean = torch.nansum(X, 0) / cnt.clamp(min=1)
        X = torch.where(miss, mean.expand_as(X), X) - mean
        sd = torch.sqrt((X * X).sum(0, dtype=torch.float64) / self.n).to(torch.float32)
        ok = (sd > 0) & (cnt > 0)
        X = X[:, ok] / sd[ok]
        if X.shape[1]:
            self.K += (X @ X.T).to(torch.float64)
        used = int(ok.sum())
        self.m += used
        return used

    def result(self) -> np.ndarray:
        if self.m == 0:
            raise ValueError("no polymorphic SNPs were added to the GRM")
        return (self.K / self.m).cpu().numpy()


def eigh(K: np.ndarray, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Symmetric eigendecomposition in float64: (lam (n,), U (n, n)), K = U diag(lam) U'."""
    import torch

    Kt = torch.as_tensor(K, dtype=torch.float64, device=torch.device(device))
    lam, U = torch.linalg.eigh(Kt)
    return lam.cpu().numpy(), U.cpu().numpy()


# --- REML in the eigenbasis --------------------------------------------------------------------


@dataclass
class RemlFit:
    h2: float
    h2_se: float
    loglik: float  # REML log-likelihood at the optimum (definition in the module docstring)
    sigma2_g: float
    sigma2_e: float
    n: int
    n_covar: int
    loglik_h2_0: float  # at h2 = 0, for a likelihood-ratio check


def _profile(h2: float, lam, uy, UX):
    """Profiled REML log-likelihood at h2 and the pieces used for the information matrix."""
    n, p = UX.shape
    d = h2 * lam + (1.0 - h2)
    di = 1.0 / d
    A = UX * di[:, None]
    B = UX.T @ A  # X' H^-1 X, (p, p)
    Ay = A.T @ uy  # X' H^-1 y
    L = np.linalg.cholesky(B)
    beta = np.linalg.solve(B, Ay)
    r = uy - UX @ beta  # rotated residual of the GLS fit
    yPy = float(np.sum(r * r * di))
    s2 = yPy / (n - p)
    logdet_B = 2.0 * float(np.log(np.diag(L)).sum())
    ll = -0.5 * ((n - p) * (LOG2PI + np.log(s2) + 1.0) + float(np.log(d).sum()) + logdet_B)
    return ll, s2, d, r, B


def reml_profile_loglik(h2: float, lam: np.ndarray, uy: np.ndarray, UX: np.ndarray) -> float:
    """Profiled REML log-likelihood at h2. lam: (n,) eigenvalues; uy = U'y: (n,); UX = U'X: (n, p)."""
    return _profile(h2, lam, uy, UX)[0]


def _observed_information(s2g: float, s2e: float, lam, uy, UX) -> np.ndarray:
    """Observed information of (s2g, s2e) for the REML likelihood, all in the eigenbasis.

    -d2 l / dti dtj = -1/2 tr(P Vi P Vj) + y' P Vi P Vj P y with V1 = K (diag lam), V2 = I.
    P = D^-1 - A C A' (D = s2g lam + s2e, A = D^-1 U'X, C = (X'V^-1X)^-1) so the traces
    are sums over n plus p x p products: O(n p^2).
    """
    D = s2g * lam + s2e
    di = 1.0 / D
    A = UX * di[:, None]
    C = np.linalg.inv(UX.T @ A)
    Py = di * uy - A @ (C @ (A.T @ uy))
    vs = (lam, np.ones_like(lam))

    def P_apply(v):
        return di * v - A @ (C @ (A.T @ v))

    info = np.empty((2, 2))
    for i in range(2):
        for j in range(i, 2):
            vi, vj = vs[i], vs[j]
            # tr(P Vi P Vj) with diagonal Vi, Vj
            t = np.sum(di * di * vi * vj)
            t -= np.trace(C @ (A.T @ (A * (vi * vj * di)[:, None]))) * 2.0
            t += np.trace(C @ (A.T @ (A * vi[:, None])) @ C @ (A.T @ (A * vj[:, None])))
            q = float(Py @ (vi * P_apply(vj * Py)))
            info[i, j] = info[j, i] = -0.5 * t + q
    return info


def reml_fit(lam: np.ndarray, uy: np.ndarray, UX: np.ndarray, grid: int = 41) -> RemlFit:
    """REML fit of one phenotype in the eigenbasis of its GRM.

    lam: (n,) GRM eigenvalues; uy: (n,) = U'y; UX: (n, p) = U'X (p >= 1; an intercept column is
    the caller's business). Requires n >= p + 2 and y not in the span of X.
    """
    from scipy.optimize import minimize_scalar

    lam = np.asarray(lam, np.float64)
    uy = np.asarray(uy, np.float64).ravel()
    UX = np.asarray(UX, np.float64)
    n, p = UX.shape
    assert lam.shape == (n,) and uy.shape == (n,), (lam.shape, uy.shape, UX.shape)
    if n < p + 2:
        raise ValueError(f"REML needs more people than covariates + 1; got N={n}, covariates={p}")
    lam = np.maximum(lam, 0.0)  # round-off negatives of a PSD matrix

    def f(h):
        return -_profile(h, lam, uy, UX)[0]

    hs = np.linspace(0.0, H2_MAX, grid)
    vals = np.array([f(h) for h in hs])
    k = int(np.argmin(vals))
    lo, hi = hs[max(k - 1, 0)], hs[min(k + 1, grid - 1)]
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10, "maxiter": 500})
    h2, best = float(res.x), float(res.fun)
    # the bounded search never evaluates the ends of its bracket: the boundary may be better
    for edge in (0.0, H2_MAX):
        if lo <= edge <= hi and f(edge) < best:
            h2, best = edge, f(edge)
    ll, s2, *_ = _profile(h2, lam, uy, UX)
    s2g, s2e = h2 * s2, (1.0 - h2) * s2
    info = _observed_information(s2g, s2e, lam, uy, UX)
    try:
        cov = np.linalg.inv(info)
        grad = np.array([s2e, -s2g]) / (s2g + s2e) ** 2  # d h2 / d (s2g, s2e)
        var = float(grad @ cov @ grad)
        se = float(np.sqrt(var)) if var > 0 else float("nan")
    except np.linalg.LinAlgError:
        se = float("nan")
    return RemlFit(h2, se, float(ll), s2g, s2e, n, p, float(-f(0.0)))


def rotate(U: np.ndarray, y: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U'y and U'X for one phenotype (U: (n, n), y: (n,), X: (n, p))."""
    return U.T @ y, U.T @ X


def greml_many(
    Y: np.ndarray,
    X: np.ndarray,
    lam: np.ndarray,
    U: np.ndarray,
    K: np.ndarray | None = None,
    device="cpu",
    on_new_decomposition=None,
) -> list[RemlFit]:
    """REML fits of every phenotype column of Y.

    Y: (n, t) phenotypes, NaN = missing; X: (n, p) covariates incl. intercept (no missing);
    lam, U: eigendecomposition of the (n, n) GRM K. A phenotype with missing values is fit on its
    own people: on the eigendecomposition of K restricted to them (one per distinct missingness
    pattern; K is needed then), never by imputing. on_new_decomposition(n_sub) is called for each
    such extra decomposition.
    """
    Y = np.asarray(Y, np.float64)
    n, t = Y.shape
    assert X.shape[0] == n and lam.shape == (n,) and U.shape == (n, n), (Y.shape, X.shape, lam.shape, U.shape)
    obs = ~np.isnan(Y)
    fits: list[RemlFit | None] = [None] * t
    full = np.flatnonzero(obs.all(axis=0))
    if len(full):
        UY = U.T @ Y[:, full]
        UX = U.T @ X
        for k, j in enumerate(full):
            fits[j] = reml_fit(lam, UY[:, k], UX)
    patterns: dict[bytes, list[int]] = {}
    for j in np.flatnonzero(~obs.all(axis=0)):
        patterns.setdefault(obs[:, j].tobytes(), []).append(int(j))
    for key, cols in patterns.items():
        keep = np.frombuffer(key, dtype=bool)
        if K is None:
            raise ValueError("phenotypes with missing values need the GRM itself, not only its eigendecomposition")
        if on_new_decomposition:
            on_new_decomposition(int(keep.sum()))
        lam_s, U_s = eigh(K[np.ix_(keep, keep)], device=device)
        UY = U_s.T @ Y[np.ix_(keep, cols)]
        UX = U_s.T @ X[keep]
        for k, j in enumerate(cols):
            fits[j] = reml_fit(lam_s, UY[:, k], UX)
    return fits  # type: ignore[return-value]
