"""GREML kernels against slow, obvious numpy references (direct inversion of V)."""

from __future__ import annotations

import numpy as np
import pytest

from gimtool.stats import greml

LOG2PI = np.log(2 * np.pi)


def direct_loglik(theta, K, y, X):
    """REML log-likelihood with V built and inverted directly."""
    s2g, s2e = theta
    n, p = X.shape
    V = s2g * K + s2e * np.eye(n)
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.inv(XtViX) @ X.T @ Vi
    return -0.5 * ((n - p) * LOG2PI + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + y @ P @ y), P


def direct_reml(K, y, X, iters=200):
    """Newton-Raphson on (s2g, s2e) with the observed information, V inverted at every step."""
    n = len(y)
    v = np.var(y)
    theta = np.array([v / 2, v / 2])
    Vs = (K, np.eye(n))
    for _ in range(iters):
        ll, P = direct_loglik(theta, K, y, X)
        Py = P @ y
        grad = np.array([-0.5 * np.trace(P @ Vi) + 0.5 * Py @ Vi @ Py for Vi in Vs])
        H = np.empty((2, 2))
        for i in range(2):
            for j in range(2):
                H[i, j] = 0.5 * np.trace(P @ Vs[i] @ P @ Vs[j]) - Py @ Vs[i] @ P @ Vs[j] @ Py
        step = -np.linalg.solve(H, grad)
        t = 1.0
        while np.any(theta + t * step <= 0) or direct_loglik(theta + t * step, K, y, X)[0] < ll - 1e-12:
            t /= 2
            if t < 1e-8:
                break
        new = theta + t * step
        if np.max(np.abs(new - theta)) < 1e-13:
            theta = new
            break
        theta = new
    ll, P = direct_loglik(theta, K, y, X)
    return theta, ll


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(7)
    n, m = 120, 600
    f = rng.uniform(0.05, 0.5, m)
    G = rng.binomial(2, f, size=(n, m)).astype(np.int8)
    G[rng.random((n, m)) < 0.01] = -127
    acc = greml.GRMAccumulator(n)
    for a in range(0, m, 128):
        acc.add(G[:, a : a + 128])
    K = acc.result()
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    L = np.linalg.cholesky(K + 1e-6 * np.eye(n))
    y = X @ np.array([3.0, 0.5, -1.0]) + np.sqrt(0.6) * L @ rng.normal(size=n) + np.sqrt(0.4) * rng.normal(size=n)
    return G, K, X, y


def test_grm_equals_numpy(tiny):
    G, K, _, _ = tiny
    X = G.astype(float)
    X[G == -127] = np.nan
    mu = np.nanmean(X, axis=0)
    X = np.where(np.isnan(X), mu, X) - mu
    sd = X.std(axis=0)
    Z = X[:, sd > 0] / sd[sd > 0]
    ref = Z @ Z.T / Z.shape[1]
    np.testing.assert_allclose(K, ref, atol=2e-6)


def test_reml_equals_direct_inversion(tiny):
    _, K, X, y = tiny
    lam, U = greml.eigh(K)
    fit = greml.reml_fit(lam, U.T @ y, U.T @ X)
    theta, ll = direct_reml(K, y, X)
    h2_ref = theta[0] / theta.sum()
    assert 0.05 < h2_ref < 0.95  # interior optimum: the comparison is not a boundary artefact
    assert abs(fit.h2 - h2_ref) < 1e-6
    assert abs(fit.loglik - ll) < 1e-6
    assert abs(fit.sigma2_g - theta[0]) < 1e-5 * theta.sum()


def test_reml_se_is_observed_information(tiny):
    _, K, X, y = tiny
    lam, U = greml.eigh(K)
    fit = greml.reml_fit(lam, U.T @ y, U.T @ X)
    # numeric Hessian of the direct likelihood in (s2g, s2e), then the delta method
    th = np.array([fit.sigma2_g, fit.sigma2_e])
    eps = 1e-4 * th.sum()
    H = np.empty((2, 2))
    f = lambda t: direct_loglik(t, K, y, X)[0]
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * eps, np.eye(2)[j] * eps
            H[i, j] = (f(th + ei + ej) - f(th + ei - ej) - f(th - ei + ej) + f(th - ei - ej)) / (4 * eps * eps)
    cov = np.linalg.inv(-H)
    g = np.array([th[1], -th[0]]) / th.sum() ** 2
    se_ref = np.sqrt(g @ cov @ g)
    assert fit.h2_se == pytest.approx(se_ref, rel=1e-3)


def test_missing_phenotype_fit_on_own_samples(tiny):
    _, K, X, y = tiny
    lam, U = greml.eigh(K)
    y2 = y.copy()
    drop = np.arange(0, len(y), 7)
    y2[drop] = np.nan
    fits = greml.greml_many(np.column_stack([y, y2]), X, lam, U, K=K)
    keep = ~np.isnan(y2)
    theta, ll = direct_reml(K[np.ix_(keep, keep)], y[keep], X[keep])
    assert fits[1].n == keep.sum()
    assert abs(fits[1].h2 - theta[0] / theta.sum()) < 1e-6
    assert abs(fits[1].loglik - ll) < 1e-6
    full = greml.reml_fit(lam, U.T @ y, U.T @ X)
    assert fits[0].h2 == pytest.approx(full.h2, abs=1e-12)


def test_reml_needs_more_people_than_covariates():
    lam = np.ones(3)
    with pytest.raises(ValueError, match="more people than covariates"):
        greml.reml_fit(lam, np.arange(3.0), np.ones((3, 2)))
