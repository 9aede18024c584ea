"""gimtool gwas (built-in scan) against `plink2 --glm hide-covar`, side by side in one run.

Cohort: N people x M SNPs of random genotypes (allele frequencies uniform in 0.05-0.5, written
with gimtool's BedWriter), 10 phenotypes with 5% NA each (different samples per phenotype) and
2 covariates. Both tools get the same --threads. Wall time and peak RSS come from
/usr/bin/time; runs alternate between the tools and the median of --reps is reported.
Then the scan time of gimtool (from its log) as N and as the number of SNPs grow.

    python benchmarks/bench_gwas.py --n 5000 --snps 100000 --threads 2 --reps 2 \
        --results benchmarks/results/gwas.md
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/gimtool_bench_gwas")
    ap.add_argument("--results", default=None, help="write a markdown table here")
    ap.add_argument("--no-scaling", action="store_true")
    a = ap.parse_args()

    d = Path(a.workdir)
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prefix = make_cohort(d, a.n, a.snps)
    print(f"cohort {a.n} x {a.snps} ready ({time.perf_counter() - t0:.1f} s)", flush=True)
    plink2 = shutil.which("plink2") or sys.exit("plink2 not on PATH")
    pheno, covar = prefix + ".pheno.tsv", prefix + ".covar.tsv"
    gim = [sys.executable, "-m", "gimtool", "gwas", "--bfile", prefix, "--pheno", pheno, "--covar", covar,
           "--threads", str(a.threads)]
    runs = {
        "plink2 --glm hide-covar": [plink2, "--bfile", prefix, "--pheno", pheno, "--covar", covar, "--glm", "hide-covar",
                                    "--no-psam-pheno", "--threads", str(a.threads), "--out", str(d / "plink")],
        "gimtool gwas --no-plots": [*gim, "--no-plots", "--out", str(d / "gim")],
        "gimtool gwas (with plots)": [*gim, "--out", str(d / "gimplots")],
    }
    from gimtool.stats import assoc

    compiled = assoc.has_compiled_kernel()
    timed([*gim, "--no-plots", "--out", str(d / "warmup")], env=GIM_ENV)  # bytecode, page cache
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in runs}
    parts: dict[str, list[float]] = {"start-up (wall minus the log's total)": [], "association scan": [],
                                     "write outputs (10 gzipped sumstats, summary)": []}
    for rep in range(a.reps):
        for name, cmd in runs.items():
            res[name].append(timed(cmd, env=None if name.startswith("plink2") else GIM_ENV))
            if name.startswith("gimtool gwas --no"):
                log = str(d / "gim.log")
                parts["start-up (wall minus the log's total)"].append(res[name][-1][0] - log_seconds(log, "total time"))
                parts["association scan"].append(scan_seconds(log))
                parts["write outputs (10 gzipped sumstats, summary)"].append(log_seconds(log, "time write outputs"))
            print(f"rep {rep + 1} {name}: {res[name][-1][0]:.2f} s, {res[name][-1][1]:.0f} MB", flush=True)
    ref = statistics.median(w for w, _, _ in res["plink2 --glm hide-covar"])
    lines = [f"## gimtool gwas vs plink2 --glm: {a.n} x {a.snps} SNPs x 10 phenotypes + 2 covariates, --threads {a.threads}",
             "", f"load average at start: {os.getloadavg()[0]:.1f} (shared machine: times are noisy; ratios are from the same run); "
             f"gimtool's kernel: {'compiled (gimtool._speedups)' if compiled else 'numpy (the C module is not built)'}; "
             f"median of {a.reps} alternating runs", "",
             "| run | wall s (median) | ratio to plink2 | CPU s (user+sys) | peak RSS MB |", "| --- | --- | --- | --- | --- |"]
    for name, v in res.items():
        w = statistics.median(x for x, _, _ in v)
        lines.append(f"| {name} | {w:.2f} | {w / ref:.2f} | {statistics.median(c for _, _, c in v):.2f} | "
                     f"{max(r for _, r, _ in v):.0f} |")
    for name, v in parts.items():
        lines.append(f"| gimtool --no-plots: {name} | {statistics.median(v):.2f} | {statistics.median(v) / ref:.2f} | | |")

    if not a.no_scaling:
        lines += ["", "### scaling of the gimtool scan (time association scan, s)", "", "| N | SNPs | scan s | s per 1e9 genotypes |", "| --- | --- | --- | --- |"]
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
            timed([*gim, "--no-plots", "--out", str(d / "scale"), *extra], env=GIM_ENV)
            s = scan_seconds(str(d / "scale.log"))
            lines.append(f"| {nn} | {m} | {s:.2f} | {s / (nn * m) * 1e9:.2f} |")
    lines += kernel_comparison(prefix, a.threads)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        Path(a.results).parent.mkdir(parents=True, exist_ok=True)
        Path(a.results).write_text(text)


if __name__ == "__main__":
    main()
