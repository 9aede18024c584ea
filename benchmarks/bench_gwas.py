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


def make_cohort(d: Path, n: int, m: int, n_pheno: int = 10, seed: int = 1) -> str:
    from gimtool.io.plink import BedWriter, write_bim, write_fam

    prefix = d / f"cohort_{n}x{m}"
    if Path(str(prefix) + ".bed").is_file():
        return str(prefix)
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.05, 0.5, m)
    with BedWriter(str(prefix) + ".bed", n) as w:
        for a in range(0, m, 5000):
            ff = f[a : a + 5000]
            w.write(((rng.random((n, len(ff))) < ff).astype(np.int8) + (rng.random((n, len(ff))) < ff)).astype(np.int8))
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


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command, via /usr/bin/time."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    rss = float(re.findall(r"MAXRSS (\d+)", p.stderr)[-1]) / 1024
    return wall, rss


def scan_seconds(log: str) -> float:
    return float(re.search(r"time association scan: ([\d.]+) s", Path(log).read_text()).group(1))


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
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    scans = []
    for rep in range(a.reps):
        for name, cmd in runs.items():
            res[name].append(timed(cmd))
            if name.startswith("gimtool gwas --no"):
                scans.append(scan_seconds(str(d / "gim.log")))
            print(f"rep {rep + 1} {name}: {res[name][-1][0]:.2f} s, {res[name][-1][1]:.0f} MB", flush=True)
    ref = statistics.median(w for w, _ in res["plink2 --glm hide-covar"])
    lines = [f"## gimtool gwas vs plink2 --glm: {a.n} x {a.snps} SNPs x 10 phenotypes + 2 covariates, --threads {a.threads}",
             "", f"load average at start: {os.getloadavg()[0]:.1f} (shared machine: times are noisy; ratios are from the same run)", "",
             "| run | wall s (median) | ratio to plink2 | peak RSS MB |", "| --- | --- | --- | --- |"]
    for name, v in res.items():
        w = statistics.median(x for x, _ in v)
        lines.append(f"| {name} | {w:.2f} | {w / ref:.2f} | {max(r for _, r in v):.0f} |")
    lines.append(f"| gimtool association scan alone (from its log) | {statistics.median(scans):.2f} | "
                 f"{statistics.median(scans) / ref:.2f} | |")

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
            timed([*gim, "--no-plots", "--out", str(d / "scale"), *extra])
            s = scan_seconds(str(d / "scale.log"))
            lines.append(f"| {nn} | {m} | {s:.2f} | {s / (nn * m) * 1e9:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        Path(a.results).parent.mkdir(parents=True, exist_ok=True)
        Path(a.results).write_text(text)


if __name__ == "__main__":
    main()
