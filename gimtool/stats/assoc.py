"""Linear association of every SNP with every phenotype at once: the model of ``plink2 --glm``.

For phenotype p and SNP j the model is ``y = b0 + C·c + β·g + ε``, fit by least squares on the
samples where y_p, every covariate and g_j are present, with a t test of β (dof = N − k − 1,
k = covariates + intercept). Results equal ``plink2 --glm hide-covar`` SNP by SNP, including
the per-phenotype and per-variant sample sets.

How it stays one matrix product per chunk, and exact:

* Samples S0 = those with every covariate present (and at least one phenotype). One QR of
  W = [1, C] on S0 gives an orthonormal Q0 (n0 × k).
* Phenotype p uses S_p ⊆ S0 (its non-missing samples). Its residual yr_p (covariates projected
  out on S_p by its own QR) is zero outside S_p, so gᵀyr_p over all of S0 *is* the sum over S_p.
  The genotype side needs Σg², Qᵀg over S_p; these are the S0 sums minus the sums over the few
  excluded rows E_p = S0 \\ S_p, and the Gram matrix of Q0 on S_p is A_p = I − Q0[E_p]ᵀQ0[E_p].
  Phenotypes therefore share one product G0ᵀ[Yr | Q0 | 1] however their missingness differs.
* Missing genotypes are dropped per variant, as PLINK 2 does (OBS_CT varies). A variant with
  missing calls is corrected the same way, over the union of E_p and its missing samples, with
  sparse sums over the missing entries; its sample count, A, Qᵀg, Qᵀy and yᵀy are all exact.

From the residual sums (g*ᵀg*, g*ᵀy*, y*ᵀy*) of g and y on the covariates within the sample set:
β = g*ᵀy* / g*ᵀg*, σ² = (y*ᵀy* − β·g*ᵀy*) / (N − k − 1), SE = sqrt(σ² / g*ᵀg*).
As PLINK 2 (``--vif 50``), a SNP whose variance inflation factor against the covariates exceeds
``max_vif`` (nearly constant or collinear with the covariates) gets no result (NaN).

Arrays are samples × SNPs. Kernels here take arrays and return arrays; no files, no printing.
This module is the statistical model (the sums a chunk needs and what β, SE and N follow from);
gimtool.stats.assoc_backends computes those sums (numpy, the compiled module, torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from gimtool.conventions import MISSING_INT8  # noqa: F401  (re-exported: assoc_backends and callers read it here)


class AssocError(ValueError):
    """A problem with the phenotypes or covariates themselves (the caller names the file)."""


@dataclass
class Prepared:
    """Everything the chunk scan needs, computed once from phenotypes and covariates.

    All sample-indexed arrays are over S0 (``samples``: indices into the caller's sample list).
    """

    samples: np.ndarray  # (n0,) int64 indices of S0 in the input rows
    q0: np.ndarray  # (n0, k) orthonormal basis of [1, C] on S0
    yr: np.ndarray  # (n0, p) residualized phenotypes, 0 outside each S_p
    yy: np.ndarray  # (p,) residual sum of squares of each phenotype on its own samples
    n: np.ndarray  # (p,) |S_p|
    excl: list[np.ndarray]  # per phenotype: indices (into S0) of E_p
    a_inv: np.ndarray  # (p, k, k) inverse Gram of Q0 on S_p
    k: int
    gram: np.ndarray | None = None  # (p, k, k) Gram of Q0 on S_p, I − Q0[E_p]ᵀQ0[E_p] (from a_inv if not given)
    max_vif: float = 50.0
    x: np.ndarray = field(init=False)  # (n0, p + k + 1) right-hand side of the one product

    def __post_init__(self):
        if self.gram is None:
            self.gram = np.linalg.inv(self.a_inv)
        self.x = np.ascontiguousarray(np.concatenate([self.yr, self.q0, np.ones((len(self.samples), 1))], axis=1))

    @property
    def n_pheno(self) -> int:
        return self.yr.shape[1]


def _orthonormal(w: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(w)
    return q


def covariate_rank_problem(c: np.ndarray) -> list[int] | None:
    """Indices of covariates that are constant or linear combinations of the others (with an
    intercept), or None. c: (n, n_cov) without missing values."""
    n = c.shape[0]
    w = np.concatenate([np.ones((n, 1)), c], axis=1)
    scale = np.sqrt((w**2).sum(0))
    scale[scale == 0] = 1
    bad = []
    kept = [0]
    for j in range(1, w.shape[1]):
        trial = w[:, kept + [j]] / scale[kept + [j]]
        s = np.linalg.svd(trial, compute_uv=False)
        if s[-1] < 1e-8 * s[0]:
            bad.append(j - 1)
        else:
            kept.append(j)
    return bad or None


def prepare(y: np.ndarray, c: np.ndarray | None, max_vif: float = 50.0) -> Prepared:
    """Project the covariates (and an intercept) out of each phenotype on its own samples.

    y: (n, p) float, NaN = missing. c: (n, n_cov) float or None, NaN = missing (a sample missing any
    covariate is dropped for every phenotype, as in PLINK 2).
    Raises AssocError for collinear covariates (message lists their column indices) and for a
    phenotype left with too few samples; constant phenotypes get yy == 0 (the caller decides).
    """
    y = np.asarray(y, dtype=np.float64)
    assert y.ndim == 2, f"y must be (n, p), got {y.shape}"
    n, p = y.shape
    if c is None:
        c = np.zeros((n, 0))
    c = np.asarray(c, dtype=np.float64)
    assert c.shape[0] == n, f"covariates have {c.shape[0]} rows, phenotypes {n}"
    ok = np.all(np.isfinite(c), axis=1) & np.any(np.isfinite(y), axis=1)
    s0 = np.flatnonzero(ok)
    cs = c[s0]
    # standardize (as --covar-variance-standardize) so the QR sees well-scaled columns
    if cs.shape[1]:
        sd = cs.std(axis=0)
        cs = (cs - cs.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        bad = covariate_rank_problem(cs)
        if bad:
            raise AssocError(f"collinear or constant covariates: columns {bad}", bad)
    w = np.concatenate([np.ones((len(s0), 1)), cs], axis=1)
    k = w.shape[1]
    q0 = _orthonormal(w)
    ys = y[s0]
    yr = np.zeros_like(ys)
    yy = np.zeros(p)
    nn = np.zeros(p, dtype=np.int64)
    excl = []
    a_inv = np.zeros((p, k, k))
    gram = np.zeros((p, k, k))
    for j in range(p):
        m = np.isfinite(ys[:, j])
        nn[j] = m.sum()
        if nn[j] < k + 2:
            raise AssocError(f"phenotype column {j} has {nn[j]} samples with covariates; at least {k + 2} needed", [j])
        wp = w[m]
        if np.linalg.matrix_rank(wp) < k:
            raise AssocError(f"covariates are collinear within the samples of phenotype column {j}", [j])
        qp = _orthonormal(wp)
        v = ys[m, j] - qp @ (qp.T @ ys[m, j])
        yr[m, j] = v
        yy[j] = v @ v
        e = np.flatnonzero(~m)
        excl.append(e)
        qe = q0[e]
        gram[j] = np.eye(k) - qe.T @ qe
        a_inv[j] = np.linalg.inv(gram[j])
    return Prepared(samples=s0, q0=q0, yr=yr, yy=yy, n=nn, excl=excl, a_inv=a_inv, k=k, max_vif=max_vif, gram=gram)


@dataclass
class ChunkResult:
    """Per SNP × phenotype arrays, shape (m, p); n is int64. freq: A1 frequency on the samples used."""

    beta: np.ndarray
    se: np.ndarray
    t: np.ndarray
    n: np.ndarray
    freq: np.ndarray
    dof: np.ndarray
    freq0: np.ndarray  # (m,) A1 frequency over all S0 samples with a call (for --maf)


def _quad(a: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """uᵀ a v for batches: a (k,k) or (m,k,k), u, v (m,k) -> (m,)."""
    if a.ndim == 2:
        return np.einsum("mk,kl,ml->m", u, a, v)
    return np.einsum("mk,mkl,ml->m", u, a, v)


class ExcludedSums(NamedTuple):
    """A chunk's genotype sums over one phenotype's excluded rows E_p (missing calls count 0):
    qg (m, k) = Q0[E_p]ᵀg, s1 (m,) = Σg, s2 (m,) = Σg²."""

    qg: np.ndarray
    s1: np.ndarray
    s2: np.ndarray


class MissingFix(Protocol):
    """The sums of the SNPs that have missing calls, on each one's own sample set (S_p minus its
    missing samples): called with u (J, p, k) = Q0ᵀg, s2 (J, p) = Σg², gy (J, p) = gᵀyr over S_p
    (missing calls counted as 0), returns gg, gy, yy (residual sums, float (J, p)) and n (int64 (J, p))."""

    def __call__(self, u: np.ndarray, s2: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


def _sums_by_row(rows: np.ndarray, vals: np.ndarray, n_rows: int) -> np.ndarray:
    """Sums of `vals` grouped by the sorted indices `rows`, as an (n_rows, ...) array (0 where a
    row has no entry)."""
    out = np.zeros((n_rows,) + vals.shape[1:])
    if len(rows):
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[rows[starts]] = np.add.reduceat(vals, starts, axis=0)
    return out


def _cholesky_solve(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L⁻¹v for the Cholesky factor L of each a (J, k, k), v (J, k, r); NaN where a pivot is at
    most 1e-10 (as the compiled kernel)."""
    out = np.full(v.shape, np.nan)
    try:
        lo = np.linalg.cholesky(a)
        good = np.all(np.diagonal(lo, axis1=1, axis2=2) ** 2 > 1e-10, axis=1)
    except np.linalg.LinAlgError:  # some are not positive definite: one at a time
        lo = np.zeros_like(a)
        good = np.zeros(len(a), dtype=bool)
        for i in range(len(a)):
            try:
                lo[i] = np.linalg.cholesky(a[i])
                good[i] = np.all(np.diag(lo[i]) ** 2 > 1e-10)
            except np.linalg.LinAlgError:
                pass
    if good.any():
        out[good] = np.linalg.solve(lo[good], v[good])
    return out


def missing_fix_numpy(prep: Prepared, snp: np.ndarray, sample: np.ndarray, n_rows: int) -> MissingFix:
    """The :class:`MissingFix` of the missing calls (snp, sample): snp in 0..n_rows-1 (sorted),
    sample an index into S0. Over the missing samples M_p of each phenotype (those in S_p), with
    A = Gram of Q0 on S_p minus Σ q qᵀ over M_p and b = −Σ q·yr over M_p:
    gg = Σg² − uᵀA⁻¹u, gy = gᵀyr − uᵀA⁻¹b, yy = yy_p − Σ yr² − bᵀA⁻¹b, n = n_p − |M_p|."""
    n0 = len(prep.samples)
    p, k = prep.n_pheno, prep.k
    q = prep.q0[sample]
    qq = (q[:, :, None] * q[:, None, :]).reshape(len(sample), k * k)

    def fix(u, s2, gy0):
        gg, gy, yy = (np.empty((n_rows, p)) for _ in range(3))
        nobs = np.empty((n_rows, p), dtype=np.int64)
        for j in range(p):
            in_sp = np.ones(n0, dtype=bool)
            in_sp[prep.excl[j]] = False
            sel = in_sp[sample]
            r, c = snp[sel], sample[sel]
            nobs[:, j] = prep.n[j] - np.bincount(r, minlength=n_rows)
            a = prep.gram[j][None] - _sums_by_row(r, qq[sel], n_rows).reshape(-1, k, k)
            yrj = prep.yr[c, j]
            b = -_sums_by_row(r, q[sel] * yrj[:, None], n_rows)
            v = _cholesky_solve(a, np.stack([u[:, j], b], axis=2))
            v1, v2 = v[..., 0], v[..., 1]
            gg[:, j] = s2[:, j] - (v1 * v1).sum(1)
            gy[:, j] = gy0[:, j] - (v1 * v2).sum(1)
            yy[:, j] = prep.yy[j] - _sums_by_row(r, yrj * yrj, n_rows) - (v2 * v2).sum(1)
        return gg, gy, yy, nobs

    return fix


def finish_chunk(
    prep: Prepared,
    gy0: np.ndarray,
    u0: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    ex: list[ExcludedSums | None],
    called: np.ndarray,
    missing: tuple[np.ndarray, MissingFix] | None = None,
) -> ChunkResult:
    """β, SE, N and frequencies of a chunk from its sums over S0 (missing calls counted as 0).

    gy0 (m, p) = G0ᵀYr, u0 (m, k) = G0ᵀQ0, s1 (m,) = Σg, s2 (m,) = Σg² over S0; ex[j]: None or
    phenotype j's :class:`ExcludedSums`; called (m,): calls among S0; missing: None or (rows, fix):
    the chunk rows with a missing call among S0 and the :class:`MissingFix` of their sums.
    """
    m = gy0.shape[0]
    p, k = prep.n_pheno, prep.k

    beta = np.full((m, p), np.nan)
    se = np.full((m, p), np.nan)
    u = np.empty((m, p, k))
    sum1 = np.empty((m, p))
    sum2 = np.empty((m, p))
    gg = np.empty((m, p))
    for j in range(p):
        if ex[j] is not None:
            np.subtract(u0, ex[j].qg, out=u[:, j])
            np.subtract(s1, ex[j].s1, out=sum1[:, j])
            np.subtract(s2, ex[j].s2, out=sum2[:, j])
        else:
            u[:, j], sum1[:, j], sum2[:, j] = u0, s1, s2
        gg[:, j] = sum2[:, j] - _quad(prep.a_inv[j], u[:, j], u[:, j])
    gy = np.array(gy0, dtype=np.float64)
    yy = np.broadcast_to(prep.yy, (m, p)).copy()
    nobs = np.broadcast_to(prep.n, (m, p)).astype(np.int64)
    if missing is not None and len(missing[0]):
        rows, fix = missing
        gg[rows], gy[rows], yy[rows], nobs[rows] = fix(u[rows], sum2[rows], gy[rows])

    dof = nobs - k - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = sum1 / (2.0 * nobs)
        gvar = sum2 - sum1 * sum1 / nobs  # total sum of squares of g (for the VIF check)
        vif = gvar / gg
        ok = (gg > 0) & (vif <= prep.max_vif) & (dof > 0) & (gvar > 1e-12 * np.maximum(nobs, 1))
        b_ = gy / gg
        rss = np.maximum(yy - b_ * gy, 0.0)
        s_ = np.sqrt(rss / dof / gg)
    beta[ok] = b_[ok]
    se[ok] = s_[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = beta / se
        freq0 = s1 / (2.0 * called)
    return ChunkResult(beta=beta, se=se, t=t, n=nobs, freq=freq, dof=dof, freq0=freq0)


def t_test_p(t: np.ndarray, dof: np.ndarray, compiled: bool = True) -> np.ndarray:
    """Two-sided P of Student's t with `dof` degrees of freedom (NaN stays NaN): the regularized
    incomplete beta function I_x(dof/2, 1/2), x = dof / (dof + t²).

    The compiled kernel (when built) evaluates it without importing scipy (0.2 s of a gwas run)
    and keeps the relative precision of P near 1; otherwise scipy.special.betainc."""
    t, dof = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(dof, dtype=np.float64))
    if compiled:
        try:
            from gimtool import _speedups
        except ImportError:
            pass
        else:
            out = np.empty(t.shape)
            _speedups.t_test_p(np.ascontiguousarray(t), np.ascontiguousarray(dof), out)
            return out
    from scipy.special import betainc

    with np.errstate(invalid="ignore", divide="ignore"):
        x = dof / (dof + t * t)
        return betainc(dof / 2.0, 0.5, x)


def linreg_reference(y: np.ndarray, c: np.ndarray | None, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow, obvious reference: one least-squares fit per SNP and phenotype on its complete cases.

    y (n, p), c (n, q) or None, g (n, m) float with NaN. Returns beta, se, n, each (m, p).
    """
    n, p = y.shape
    m = g.shape[1]
    c = np.zeros((n, 0)) if c is None else c
    beta = np.full((m, p), np.nan)
    se = np.full((m, p), np.nan)
    nn = np.zeros((m, p), dtype=np.int64)
    for j in range(m):
        for i in range(p):
            ok = np.isfinite(y[:, i]) & np.all(np.isfinite(c), axis=1) & np.isfinite(g[:, j])
            x = np.column_stack([np.ones(ok.sum()), c[ok], g[ok, j]])
            coef, *_ = np.linalg.lstsq(x, y[ok, i], rcond=None)
            r = y[ok, i] - x @ coef
            dof = ok.sum() - x.shape[1]
            cov = np.linalg.inv(x.T @ x) * (r @ r) / dof
            beta[j, i] = coef[-1]
            se[j, i] = np.sqrt(cov[-1, -1])
            nn[j, i] = ok.sum()
    return beta, se, nn


# The backends (the dense numpy Products and scan_chunk, the packed-row PackedScan with its numpy
# and compiled kernels, TorchPackedScan) live in gimtool.stats.assoc_backends; these names are
# still reachable here, loaded on first use (no import cycle: the backends import this module).
_BACKENDS = ("Products", "scan_chunk", "PackedScan", "TorchPackedScan", "has_compiled_kernel", "byte_table", "_CODE_DOSAGE",
             "_CODE_MISSING")


def __getattr__(name: str):
    if name in _BACKENDS:
        from gimtool.stats import assoc_backends

        return getattr(assoc_backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
