"""Calibration of the held-out JSE MI estimate (`gimtool mi`) on Gaussian pairs with known MI.

Genotypes: n people x m SNPs drawn independently (MAF uniform 0.1-0.5); a genetic score is the
standardized sum of `causal` standardized SNPs; the representation is
(rho * score + sqrt(1 - rho^2) * noise, two pure-noise dimensions), so the true MI of the pairs
is I = -0.5 ln(1 - rho^2) nats (the genotype determines the score). For each rho and SNP count
the script runs the library estimator (`--repeats` seeds) and writes the mean and SE of the
validation and training estimates next to the true I, with the wall time per estimator. There is
no reference tool for this estimate: the check is that it ranks the levels in the true order and
sits near 0 for independent pairs; its absolute value is a lower bound on a bounded scale (at most
2 ln 2), not the Gaussian MI itself.

    python benchmarks/bench_mi.py [--n 2000] [--snps 50 500] [--repeats 3] [--encoder mlp]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--snps", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--causal", type=int, default=5)
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.75, 0.9, 0.95])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encoder", default="mlp", choices=["mlp", "transformer"])
    ap.add_argument("--select-snps", type=int, nargs="+", default=[0],
                    help="one or more values of mi --select-snps (0 = the critic sees every SNP)")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "mi_calibration.md"))
    a = ap.parse_args()

    import torch

    from gimtool.train import mi as milib

    torch.set_num_threads(a.threads)
    lines = [
        f"# JSE MI estimate vs true MI on Gaussian pairs ({a.encoder} genetic encoder, {date.today()})",
        "",
        f"n = {a.n} people (30% estimator-validation), {a.causal} causal SNPs among m, {a.repeats} seeds, "
        "MLP critic head on 3 dims (1 informative). Estimates in nats, mean ± SE over seeds; 2 ln 2 = 1.386 is the ceiling.",
        "",
        f"Critic weight decay {a.weight_decay}; 'selected': mi --select-snps (0 = every SNP), chosen on the estimator-train people.",
        "",
        "| SNPs m | selected | rho | true MI | MI validation | MI training | best epoch | s / estimator |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in a.snps:
        rng = np.random.default_rng(m)
        maf = rng.uniform(0.1, 0.5, m)
        G = rng.binomial(2, maf, size=(a.n, m)).astype(np.int8)
        c = rng.choice(m, a.causal, replace=False)
        X = (G[:, c] - 2 * maf[c]) / np.sqrt(2 * maf[c] * (1 - maf[c]))
        s = X.sum(1)
        s = (s - s.mean()) / s.std()
        pos = {"chrom": np.ones(m, int), "bp": np.arange(m) * 10_000 + 1, "cm": np.arange(m) * 0.01}
        cols = np.arange(m)
        geno = milib.GenotypeRows(G, np.arange(a.n), cols)
        for k, rho in [(k, rho) for k in a.select_snps for rho in a.rhos]:
            settings = milib.MISettings(encoder=a.encoder, model=milib.small_transformer_config(mlp_hidden=256),
                                        select_snps=k, weight_decay=a.weight_decay)
            Z = np.column_stack([rho * s + math.sqrt(1 - rho**2) * rng.standard_normal(a.n), rng.standard_normal((a.n, 2))])
            t = time.perf_counter()
            res = milib.estimate_mi(Z, geno, pos, cols, settings, repeats=a.repeats, seed=0)
            dt = (time.perf_counter() - t) / a.repeats
            (mv, mvs), (mt, mts) = res.mi_val, res.mi_train
            be = np.mean([r.best_epoch for r in res.runs])
            row = (f"| {m} | {k or 'all'} | {rho:.2f} | {-0.5 * math.log(1 - rho**2):.3f} | {mv:.4f} ± {mvs:.4f} | {mt:.4f} ± {mts:.4f} "
                   f"| {be:.1f} | {dt:.1f} |")
            print(row, flush=True)
            lines.append(row)
    lines += ["", "Measured on the shared 2-core development machine (times inflated by other jobs).", "",
              f"Reproduce: `python benchmarks/bench_mi.py --n {a.n} --snps {' '.join(map(str, a.snps))} "
              f"--repeats {a.repeats} --encoder {a.encoder} --causal {a.causal} --rhos {' '.join(map(str, a.rhos))} "
              f"--select-snps {' '.join(map(str, a.select_snps))} --weight-decay {a.weight_decay}`"]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
