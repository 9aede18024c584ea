"""GREML speed and agreement: `gimtool h2 --method greml` against `bolt --reml`, same files, one run.

Simulates a cohort (gimtool.sim; default 5,000 people x 60,000 SNPs), 20 polygenic phenotypes
(h2 alternating 0.2 / 0.5, all SNPs causal), writes a bfile and a phenotype table, then times:
  * gimtool h2 --method greml on all phenotypes (one GRM, one eigendecomposition);
  * bolt --reml on the first --bolt-phenos phenotypes, one at a time (BOLT-REML's univariate fit;
    the time for all phenotypes is extrapolated when fewer are run, and said so).
Prints per phenotype both estimates, |diff| / BOLT SE, and the time ratio.

    python benchmarks/bench_greml.py --n 5000 --snps 60000 --phenos 20 --bolt-phenos 2 --threads 2 \
        --out benchmarks/results/greml_vs_bolt.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--snps", type=int, default=60000)
    ap.add_argument("--chroms", type=int, default=3)
    ap.add_argument("--mb", type=float, default=15.0)
    ap.add_argument("--phenos", type=int, default=20)
    ap.add_argument("--bolt-phenos", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse the cohort already in --workdir")
    a = ap.parse_args()

    from gimtool.io.plink import write_bfile
    from gimtool.sim.genotypes import simulate_genotypes
    from gimtool.sim.traits import simulate_traits

    wd = Path(a.workdir or tempfile.mkdtemp(prefix="bench_greml_"))
    wd.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    h2 = [0.2 if j % 2 == 0 else 0.5 for j in range(a.phenos)]
    names = [f"P{j + 1}" for j in range(a.phenos)]
    if a.reuse and (wd / "c.bed").is_file() and (wd / "pheno.tsv").is_file():
        from gimtool.io.plink import Bfile

        bf = Bfile(wd / "c")
        n, m = bf.n_samples, bf.n_snps
        print(f"reusing the cohort in {wd} ({n} x {m})", flush=True)
    else:
        s = simulate_genotypes(a.n, n_chromosomes=a.chroms, chrom_length_mb=a.mb, n_snps=a.snps, seed=a.seed)
        write_bfile(wd / "c", s.G, s.fam, s.bim)
        tr = simulate_traits(s.G, h2=h2, n_causal=None, n_traits=a.phenos, seed=a.seed + 1)
        ph = s.fam.select("FID", "IID").with_columns([pl.Series(nm, tr.values[:, j]) for j, nm in enumerate(names)])
        ph.write_csv(wd / "pheno.tsv", separator="\t")
        n, m = s.G.shape
        del s
        print(f"cohort {n} x {m} simulated and written in {time.perf_counter() - t:.0f} s ({wd})", flush=True)

    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gimtool", "h2", "--method", "greml", "--bfile", wd / "c", "--pheno",
                    wd / "pheno.tsv", "--threads", str(a.threads), "--out", wd / "g"], check=True)
    t_gim = time.perf_counter() - t
    g = pl.read_csv(wd / "g.h2.tsv", separator="\t")
    log = (wd / "g.log").read_text()
    print(f"gimtool greml, {a.phenos} phenotypes: {t_gim:.1f} s", flush=True)

    bolt_rows, t_bolt = [], 0.0
    for nm in names[: a.bolt_phenos]:
        t = time.perf_counter()
        p = subprocess.run(["bolt", f"--bfile={wd / 'c'}", f"--phenoFile={wd / 'pheno.tsv'}", f"--phenoCol={nm}",
                            "--reml", f"--numThreads={a.threads}"], capture_output=True, text=True, check=True)
        dt = time.perf_counter() - t
        t_bolt += dt
        from gimtool.backends.bolt_reml import parse_bolt_reml

        r = parse_bolt_reml(p.stdout)
        bolt_rows.append((nm, r.h2, r.h2_se, dt))
        print(f"bolt --reml {nm}: {r.h2:.4f} ({r.h2_se:.4f}) in {dt:.0f} s", flush=True)
    k = max(len(bolt_rows), 1)
    t_bolt_all = t_bolt / k * a.phenos
    extrap = "" if len(bolt_rows) == a.phenos else f" (extrapolated from {len(bolt_rows)} phenotypes run)"
    lines = [
        f"# GREML: gimtool vs bolt --reml, N = {n}, {m} SNPs, {a.phenos} phenotypes, {a.threads} threads",
        "",
        f"gimtool h2 --method greml (all {a.phenos} phenotypes, one process incl. start-up): {t_gim:.1f} s",
        f"bolt --reml: {t_bolt:.1f} s for {len(bolt_rows)} phenotype(s), {t_bolt / k:.1f} s each; "
        f"{a.phenos} phenotypes: {t_bolt_all:.0f} s{extrap}",
        (f"**speed ratio (BOLT / gimtool, {a.phenos} phenotypes): {t_bolt_all / t_gim:.1f}x**" if bolt_rows
         else "bolt not run (--bolt-phenos 0): no ratio"),
        "",
        "gimtool timings: " + "; ".join(ln for ln in log.splitlines() if ln.startswith("time ")),
        "",
        "| pheno | true h2 | gimtool h2 (SE) | BOLT h2 (SE) | abs diff / BOLT SE |",
        "| --- | --- | --- | --- | --- |",
    ]
    gd = {r["PHENO"]: r for r in g.iter_rows(named=True)}
    for nm, bh, bse, _ in bolt_rows:
        r = gd[nm]
        j = names.index(nm)
        lines.append(f"| {nm} | {h2[j]} | {r['H2']:.4f} ({r['H2_SE']:.4f}) | {bh:.4f} ({bse:.4f}) | {abs(r['H2'] - bh) / bse:.2f} |")
    for h in (0.2, 0.5):
        v = np.array([gd[nm]["H2"] for j, nm in enumerate(names) if h2[j] == h])
        se = np.array([gd[nm]["H2_SE"] for j, nm in enumerate(names) if h2[j] == h])
        lines.append(f"\ngimtool, true h2 {h}: mean {v.mean():.4f}, sd {v.std(ddof=1) if len(v) > 1 else float('nan'):.4f}, "
                     f"mean SE {se.mean():.4f}, over {len(v)} phenotypes")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
