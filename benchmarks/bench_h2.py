"""LD score regression (built in) and GREML against the truth on simulated polygenic traits.

Simulates a coalescent cohort (gimtool.sim), traits with h2 = 0.2 and 0.5 (all SNPs causal,
`--reps` replicates each), a GWAS (per-SNP linear regression, exact t statistics), in-sample LD
scores (1 cM, LDSC chunking), then reports per setting the mean and sd over replicates of:
LDSC h2 (free intercept, two-step), its intercept, LDSC h2 with the intercept fixed at 1, and
GREML h2. Also times the LD scores (SNPs/s; the cost is linear in the SNP count at a fixed SNP
density, so the time for 100,000 SNPs is extrapolated when fewer are simulated).

    python benchmarks/bench_h2.py --n 2000 --chroms 2 --mb 10 --reps 10 [--growth none] [--out benchmarks/results/h2_sim.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def gwas_chisq(G: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """chi2 = t^2 of y ~ 1 + g for every SNP and trait. G (n, m) int8, Y (n, t)."""
    n = G.shape[0]
    out = np.empty((G.shape[1], Y.shape[1]))
    Yc = Y - Y.mean(0)
    for a in range(0, G.shape[1], 5000):
        X = G[:, a : a + 5000].astype(np.float64)
        X -= X.mean(0)
        sxx = (X * X).sum(0)
        sxy = X.T @ Yc
        r2 = sxy**2 / (sxx[:, None] * (Yc * Yc).sum(0)[None, :])
        out[a : a + 5000] = (n - 2) * r2 / (1 - r2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--chroms", type=int, default=2)
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--snps", type=int, default=None)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--growth", default="recent")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from gimtool.sim.genotypes import simulate_genotypes
    from gimtool.sim.traits import simulate_traits
    from gimtool.stats import greml
    from gimtool.stats.ldsc import ldsc_h2
    from gimtool.stats.ldscore import ld_scores

    t = time.perf_counter()
    s = simulate_genotypes(a.n, n_chromosomes=a.chroms, chrom_length_mb=a.mb, n_snps=a.snps, growth=a.growth, seed=a.seed)
    G = s.G
    n, m = G.shape
    t_sim = time.perf_counter() - t
    t = time.perf_counter()
    res = ld_scores(lambda idx: G[:, idx], s.bim["CHR"].to_numpy(), s.bim["CM"].to_numpy(), n, 1.0)
    t_ld = time.perf_counter() - t
    h2s = [0.2] * a.reps + [0.5] * a.reps
    tr = simulate_traits(G, h2=h2s, n_causal=None, n_traits=len(h2s), seed=a.seed + 1)
    chisq = gwas_chisq(G, tr.values)[res.index]
    t = time.perf_counter()
    acc = greml.GRMAccumulator(n)
    for b in range(0, m, 4000):
        acc.add(G[:, b : b + 4000])
    K = acc.result()
    lam, U = greml.eigh(K)
    X = np.ones((n, 1))
    fits = greml.greml_many(tr.values, X, lam, U)
    t_greml = time.perf_counter() - t
    rows = []
    for j, h in enumerate(h2s):
        free = ldsc_h2(chisq[:, j], res.l2, res.l2, np.full(len(res.l2), n), res.M_5_50)
        fix = ldsc_h2(chisq[:, j], res.l2, res.l2, np.full(len(res.l2), n), res.M_5_50, intercept=1.0)
        allm = ldsc_h2(chisq[:, j], res.l2, res.l2, np.full(len(res.l2), n), res.M)
        rows.append((h, free.h2, free.h2_se, free.intercept, fix.h2, fits[j].h2, fits[j].h2_se, free.mean_chisq, allm.h2))
    R = np.array(rows)
    lines = [
        f"# h2 on simulated polygenic traits: N = {n}, {m} SNPs ({a.chroms} x {a.mb:g} Mb), growth = {a.growth}, "
        f"{a.reps} replicates per h2",
        "",
        f"simulation {t_sim:.0f} s; LD scores {t_ld:.1f} s ({m / t_ld:.0f} SNPs/s at N = {n}; "
        f"~{100_000 / (m / t_ld) * 5000 / n:.0f} s extrapolated to 100,000 SNPs at N = 5,000, same density); "
        f"GRM + eigh + {len(h2s)} REML fits {t_greml:.1f} s; mean LD score {res.l2.mean():.1f}, M_5_50 {res.M_5_50}",
        "",
        "LDSC columns use M = M_5_50 (LDSC's default: the h2 of SNPs with MAF > 5%) except 'LDSC h2 (M all)'; "
        f"the simulated effects are spread over all {m} SNPs (MAF >= 1%), so the M_5_50 truth is h2 x {res.M_5_50 / res.M:.3f}.",
        "",
        "| true h2 | LDSC h2 (free) | LDSC SE (mean) | intercept | LDSC h2 (intercept 1) | LDSC h2 (free, M all) | GREML h2 | GREML SE (mean) | mean chi2 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in (0.2, 0.5):
        S = R[R[:, 0] == h]
        f = lambda c: f"{S[:, c].mean():.3f} ± {S[:, c].std(ddof=1):.3f}"
        lines.append(f"| {h} | {f(1)} | {S[:, 2].mean():.3f} | {f(3)} | {f(4)} | {f(8)} | {f(5)} | {S[:, 6].mean():.3f} | {S[:, 7].mean():.3f} |")
    lines.append("")
    lines.append("(mean ± sd over replicates)")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
