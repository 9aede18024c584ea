"""gimtool gwas (built-in scan) against `plink2 --glm hide-covar`, side by side in one run.

Cohorts: N people x M SNPs of random genotypes (allele frequencies uniform in 0.05-0.5, written
with gimtool's BedWriter) with no missing call and with missing calls shaped like a real array's
(--missing: the mean share; skewed over SNPs and people, see make_cohort), 10 phenotypes with 5%
NA each (different samples per phenotype) and 2 covariates. Both tools get the same --threads.
Wall time and peak RSS come from /usr/bin/time; plink2, gimtool --no-plots and gimtool with its
20 plots run back to back on each cohort, the cohorts in turn, --reps times; medians and the
range of the per-set ratios are reported, with the agreement of the results with plink2's.
Optionally the scan time as N and the SNP count grow (--scaling) and the kernels in-process
(--kernels).

    python benchmarks/bench_gwas.py --n 5000 --snps 100000 --threads 2 --reps 3 --missing 0,0.001,0.01 \
        --results /tmp/gwas_bench.md
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl


def make_cohort(d: Path, n: int, m: int, n_pheno: int = 10, seed: int = 1, missing: float = 0.0,
                freq: tuple[float, float] = (0.05, 0.5)) -> str:
    """The cohort's fileset prefix (made once and kept in `d`). `missing`: the mean share of
    missing genotype calls, spread as on real arrays: each SNP's rate is the mean times a
    gamma(0.5) factor (most SNPs have few missing calls, some many) and each person's a gamma(2)
    factor (some people are called worse than others). A1 frequencies are uniform in `freq`."""
    from gimtool.io.plink import MISSING_INT8, BedWriter, write_bim, write_fam

    prefix = d / (f"cohort_{n}x{m}" + (f"_miss{missing:g}" if missing else "") + (f"_f{freq[0]:g}" if freq != (0.05, 0.5) else ""))
    if Path(str(prefix) + ".bed").is_file():
        return str(prefix)
    rng = np.random.default_rng(seed)
    f = rng.uniform(*freq, m)
    snp_rate = missing * rng.gamma(0.5, 2.0, m)
    person = rng.gamma(2.0, 0.5, n)
    with BedWriter(str(prefix) + ".bed", n) as w:
        for a in range(0, m, 5000):
            ff = f[a : a + 5000]
            g = ((rng.random((n, len(ff))) < ff).astype(np.int8) + (rng.random((n, len(ff))) < ff)).astype(np.int8)
            if missing:
                g[rng.random(g.shape) < np.minimum(person[:, None] * snp_rate[None, a : a + 5000], 0.5)] = MISSING_INT8
            w.write(g)
    chrom = np.repeat(np.arange(1, 23), int(np.ceil(m / 22)))[:m]
    write_bim(pl.DataFrame({"CHR": chrom.astype(str), "SNP": [f"rs{i}" for i in range(m)], "CM": np.zeros(m),
                            "BP": np.arange(m) * 1000 + 1, "A1": ["A"] * m, "A2": ["G"] * m}), str(prefix) + ".bim")
    fam = pl.DataFrame({"FID": [f"F{i}" for i in range(n)], "IID": [f"I{i}" for i in range(n)]})
    write_fam(fam, str(prefix) + ".fam")
    y = rng.standard_normal((n, n_pheno))
    y[rng.random(y.shape) < 0.05] = np.nan
    c = rng.standard_normal((n, 2))
    for name, arr, cols in (("pheno", y, [f"PC{j + 1}" for j in range(n_pheno)]), ("covar", c, ["AGE", "SEX"])):
        df = fam.with_columns([pl.Series(k, arr[:, j]).fill_nan(None) for j, k in enumerate(cols)])
        df.write_csv(str(prefix) + f".{name}.tsv", separator="\t", null_value="NA")
    return str(prefix)


# This sandbox sets PYTHONDONTWRITEBYTECODE=1, so every run would recompile gimtool's own modules
# (an editable install); an installed package has its bytecode compiled. gimtool runs without it.
GIM_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], env=None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of a command, via /usr/bin/time."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M CPU %U %S", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    rss, user, system = re.findall(r"MAXRSS (\d+) CPU ([\d.]+) ([\d.]+)", p.stderr)[-1]
    return wall, float(rss) / 1024, float(user) + float(system)


def log_seconds(log: str, what: str) -> float:
    return float(re.search(rf"{what}: ([\d.]+) s", Path(log).read_text()).group(1))


def scan_seconds(log: str) -> float:
    return log_seconds(log, "time association scan")


def kernel_comparison(prefix: str, threads: int) -> list[str]:
    """The association scan of the whole cohort in this process with each kernel (same inputs,
    same threads), and the largest relative difference between their BETA."""
    from gimtool.pipelines import gwas
    from gimtool.io.plink import Bfile
    from gimtool.stats import assoc

    bf = Bfile(prefix)
    inputs = gwas.load_inputs(bf, prefix + ".pheno.tsv", None, prefix + ".covar.tsv")
    prep = gwas.prepare(inputs, "pheno", "covar")
    out = ["", f"### the scan in-process by kernel (gwas.scan, --threads {threads}, best of 3)", "",
           "| kernel | scan s | ratio to numpy |", "| --- | --- | --- |"]
    secs, betas = {}, {}
    for kernel in ("numpy", "auto"):
        if kernel == "auto" and not assoc.has_compiled_kernel():
            break
        best = []
        for _ in range(3):
            t = time.perf_counter()
            r = gwas.scan(bf, prep, threads=threads, progress=False, kernel=kernel)
            best.append(time.perf_counter() - t)
        secs[kernel], betas[kernel] = min(best), r.beta
    for kernel, sec in secs.items():
        out.append(f"| {'compiled' if kernel == 'auto' else kernel} | {sec:.2f} | {sec / secs['numpy']:.2f} |")
    if len(betas) == 2:
        ok = np.isfinite(betas["numpy"])
        d = np.abs(betas["auto"][ok] - betas["numpy"][ok])
        rel = d / np.abs(betas["numpy"][ok]).clip(1e-300)
        out.append(f"\nBETA between the kernels: largest difference {d.max():.1e}; relative {np.median(rel):.1e} (median), "
                   f"{rel.max():.1e} (largest, at BETA {betas['numpy'][ok][np.argmax(rel)]:.1e})")
    return out


def plink2_agreement(gim_prefix: str, plink_prefix: str, names: list[str]) -> str:
    """Largest relative difference of BETA, SE and P (P > 1e-300) between gimtool's sumstats and
    plink2's .glm.linear over every phenotype and SNP, and whether N and the untestable SNPs agree."""
    from gimtool.io.sumstats import read_sumstats

    worst = {"BETA": 0.0, "SE": 0.0, "P": 0.0}
    same_n = same_na = True
    for ph in names:
        a = read_sumstats(f"{gim_prefix}.{ph}.sumstats.gz")
        b = read_sumstats(f"{plink_prefix}.{ph}.glm.linear")
        tested = b["P"].is_not_null().to_numpy()
        same_na &= bool((a["P"].is_not_null().to_numpy() == tested).all())
        same_n &= bool((a["N"].to_numpy()[tested] == b["N"].to_numpy()[tested]).all())
        flip = np.where(a["ALLELE1"].to_numpy() == b["ALLELE1"].to_numpy(), 1.0, -1.0)[tested]
        big = b["P"].to_numpy()[tested] > 1e-300
        for col in worst:
            x = a[col].to_numpy()[tested] * (flip if col == "BETA" else 1.0)
            ref = b[col].to_numpy()[tested]
            worst[col] = max(worst[col], float(np.max(np.abs(x[big] - ref[big]) / np.abs(ref[big]))))
    return (f"largest relative difference to plink2: BETA {worst['BETA']:.1e}, SE {worst['SE']:.1e}, P {worst['P']:.1e} "
            f"(plink2 prints 6 digits); N per SNP {'equal' if same_n else 'DIFFERENT'}; untestable SNPs "
            f"{'the same' if same_na else 'DIFFERENT'}")


def spread(v: list[float]) -> str:
    return f"{min(v):.2f}-{max(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--missing", default="0,0.001,0.01", help="mean shares of missing genotype calls, one cohort each")
    ap.add_argument("--workdir", default="/tmp/gimtool_bench_gwas")
    ap.add_argument("--results", default=None, help="write a markdown report here")
    ap.add_argument("--scaling", action="store_true", help="also time the scan as N and the SNP count grow")
    ap.add_argument("--kernels", action="store_true", help="also compare the numpy and compiled kernels in-process")
    a = ap.parse_args()

    d = Path(a.workdir)
    d.mkdir(parents=True, exist_ok=True)
    rates = [float(x) for x in a.missing.split(",")]
    plink2 = shutil.which("plink2") or sys.exit("plink2 not on PATH")
    from gimtool.stats import assoc

    compiled = assoc.has_compiled_kernel()
    cohorts, runs = {}, {}
    for rate in rates:
        t0 = time.perf_counter()
        prefix = cohorts[rate] = make_cohort(d, a.n, a.snps, missing=rate)
        print(f"cohort {a.n} x {a.snps}, {rate:.1%} missing calls: {prefix} ({time.perf_counter() - t0:.1f} s)", flush=True)
        pheno, covar = prefix + ".pheno.tsv", prefix + ".covar.tsv"
        gim = [sys.executable, "-m", "gimtool", "gwas", "--bfile", prefix, "--pheno", pheno, "--covar", covar,
               "--threads", str(a.threads)]
        tag = f"m{rate:g}"
        runs[rate] = {
            "plink2": [plink2, "--bfile", prefix, "--pheno", pheno, "--covar", covar, "--glm", "hide-covar",
                       "--no-psam-pheno", "--threads", str(a.threads), "--out", str(d / f"plink_{tag}")],
            "no-plots": [*gim, "--no-plots", "--out", str(d / f"gim_{tag}")],
            "plots": [*gim, "--out", str(d / f"gimplots_{tag}")],
        }
        timed([*gim, "--no-plots", "--out", str(d / "warmup")], env=GIM_ENV)  # bytecode, page cache
    load = os.getloadavg()[0]
    res = {r: {k: [] for k in ("plink2", "no-plots", "plots")} for r in rates}
    parts = {r: {"scan": [], "write": [], "startup": [], "write_plots": []} for r in rates}
    for rep in range(a.reps):
        for rate in rates:  # the three runs of a cohort back to back, the cohorts in turn
            for name, cmd in runs[rate].items():
                res[rate][name].append(timed(cmd, env=None if name == "plink2" else GIM_ENV))
                tag = f"m{rate:g}"
                if name == "no-plots":
                    log = str(d / f"gim_{tag}.log")
                    parts[rate]["scan"].append(scan_seconds(log))
                    parts[rate]["write"].append(log_seconds(log, "time write outputs"))
                    parts[rate]["startup"].append(res[rate][name][-1][0] - log_seconds(log, "total time"))
                if name == "plots":
                    parts[rate]["write_plots"].append(log_seconds(str(d / f"gimplots_{tag}.log"), "time write outputs"))
                print(f"rep {rep + 1} missing {rate:g} {name}: {res[rate][name][-1][0]:.2f} s, {res[rate][name][-1][1]:.0f} MB",
                      flush=True)
    lines = [f"## {a.n} x {a.snps} SNPs x 10 phenotypes (5% NA each) + 2 covariates, --threads {a.threads}: by share of missing calls",
             "", f"load average at start of the timed runs: {load:.1f} on {os.cpu_count()} cores (shared machine, other jobs "
             f"running: absolute times are noisy, ratios are taken within each alternating set); gimtool's kernel: "
             f"{'compiled (gimtool._speedups)' if compiled else 'numpy (the C module is not built)'}; {a.reps} alternating "
             "sets (plink2, gimtool --no-plots, gimtool with plots) per cohort; medians, with the range over the sets", "",
             "| missing calls | plink2 --glm s | gimtool --no-plots s | ratio to plink2 (range) | with plots s | plots / --no-plots (range) "
             "| scan s | write outputs s (no plots / plots) | start-up s | CPU s (plink2 / gimtool / with plots) "
             "| peak RSS MB (plink2 / gimtool / with plots) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    med = statistics.median
    for rate in rates:
        r = res[rate]
        ratio = [g[0] / p[0] for p, g in zip(r["plink2"], r["no-plots"])]
        pratio = [q[0] / g[0] for g, q in zip(r["no-plots"], r["plots"])]
        pt = parts[rate]
        lines.append(f"| {rate:.1%} | {med(x[0] for x in r['plink2']):.2f} | {med(x[0] for x in r['no-plots']):.2f} | "
                     f"{med(ratio):.2f} ({spread(ratio)}) | {med(x[0] for x in r['plots']):.2f} | {med(pratio):.2f} ({spread(pratio)}) | "
                     f"{med(pt['scan']):.2f} | {med(pt['write']):.2f} / {med(pt['write_plots']):.2f} | {med(pt['startup']):.2f} | "
                     f"{med(x[2] for x in r['plink2']):.2f} / {med(x[2] for x in r['no-plots']):.2f} / {med(x[2] for x in r['plots']):.2f} | "
                     f"{max(x[1] for x in r['plink2']):.0f} / {max(x[1] for x in r['no-plots']):.0f} / {max(x[1] for x in r['plots']):.0f} |")
    lines.append("")
    for rate in rates:
        names = [f"PC{j + 1}" for j in range(10)]
        tag = f"m{rate:g}"
        lines.append(f"- {rate:.1%} missing: {plink2_agreement(str(d / f'gim_{tag}'), str(d / f'plink_{tag}'), names)}.")
        r = res[rate]
        lines.append("  Sets (plink2 / --no-plots / plots, s): " + ", ".join(
            f"{p[0]:.2f}/{g[0]:.2f}/{q[0]:.2f}" for p, g, q in zip(r["plink2"], r["no-plots"], r["plots"])))

    prefix = cohorts[rates[-1]]
    if a.scaling:
        gim = runs[rates[-1]]["no-plots"][:-2]
        lines += ["", f"### scaling of the gimtool scan ({rates[-1]:.1%} missing calls)", "",
                  "| N | SNPs | scan s | s per 1e9 genotypes |", "| --- | --- | --- | --- |"]
        fam = pl.read_csv(prefix + ".fam", separator=" ", has_header=False)
        for frac_n, chunk in ((0.25, None), (0.5, None), (1.0, None), (1.0, "1/4"), (1.0, "1/2")):
            nn = int(a.n * frac_n)
            extra = []
            if frac_n < 1:
                keep = d / f"keep{nn}"
                fam[:nn, :2].write_csv(keep, separator="\t", include_header=False)
                extra += ["--keep", str(keep)]
            if chunk:
                extra += ["--chunk", chunk]
            m = a.snps // int(chunk.split("/")[1]) if chunk else a.snps
            timed([*gim, "--out", str(d / "scale"), *extra], env=GIM_ENV)
            sec = scan_seconds(str(d / "scale.log"))
            lines.append(f"| {nn} | {m} | {sec:.2f} | {sec / (nn * m) * 1e9:.2f} |")
    if a.kernels:
        lines += kernel_comparison(prefix, a.threads)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        Path(a.results).parent.mkdir(parents=True, exist_ok=True)
        Path(a.results).write_text(text)


if __name__ == "__main__":
    main()
