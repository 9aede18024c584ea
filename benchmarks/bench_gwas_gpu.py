"""gimtool gwas on a GPU against the same scan on the machine's CPUs, side by side in one run.

The issue's size: 30,000 people x 650,000 SNPs x 10 phenotypes (2% NA each, different samples
per phenotype) + 2 covariates. Genotypes are random .bed bytes (with the missing code turned
into homozygous A2, so no call is missing; allele frequency 0.375 everywhere): speed only, no LD.
The file (4.9 GB) is written straight from random bytes, in parallel, so the cohort takes
seconds rather than the minutes that sampling genotypes would. Both runs write the full outputs
(--no-plots); their BETA/SE must agree. Reports wall time, the scan time from each log and the ratio.

    python benchmarks/bench_gwas_gpu.py --n 30000 --snps 650000 --threads 16 \
        --results benchmarks/results/gwas_gpu.md          # on a GPU machine
    python benchmarks/bench_gwas_gpu.py --n 2000 --snps 20000 --device cpu   # a dry run anywhere
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gimtool_cmd, measure  # noqa: E402


def random_bed(prefix: Path, n: int, m: int, threads: int, seed: int = 7) -> str:
    from gimtool.io.plink import write_bim, write_fam

    nb = (n + 3) // 4
    bed = Path(f"{prefix}.bed")
    if bed.is_file() and bed.stat().st_size == 3 + m * nb:
        return str(prefix)
    rows = max(1, (64 << 20) // nb)
    starts = list(range(0, m, rows))
    seeds = np.random.SeedSequence(seed).spawn(len(starts))
    with open(bed, "wb") as fh:
        fh.write(bytes([0x6C, 0x1B, 0x01]))
        fh.truncate(3 + m * nb)
    fd = os.open(bed, os.O_WRONLY)

    def block(i):
        a = starts[i]
        k = min(rows, m - a)
        raw = np.random.default_rng(seeds[i]).integers(0, 256, size=(k, nb), dtype=np.uint8)
        lo = raw & 0x55
        miss = lo & ~(raw >> 1) & 0x55  # code 01 (missing) -> 11 (hom A2)
        raw |= miss << 1
        if n % 4:
            raw[:, -1] &= (1 << (2 * (n % 4))) - 1  # padding pairs are 00
        os.pwrite(fd, raw.tobytes(), 3 + a * nb)

    try:
        with cf.ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, range(len(starts))))
    finally:
        os.close(fd)
    chrom = np.repeat(np.arange(1, 23), int(np.ceil(m / 22)))[:m]
    write_bim(pl.DataFrame({"CHR": chrom.astype(str), "SNP": [f"rs{i}" for i in range(m)], "CM": np.zeros(m),
                            "BP": np.arange(m) * 1000 + 1, "A1": ["A"] * m, "A2": ["G"] * m}), f"{prefix}.bim")
    fam = pl.DataFrame({"FID": [f"F{i}" for i in range(n)], "IID": [f"I{i}" for i in range(n)]})
    write_fam(fam, f"{prefix}.fam")
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, 10))
    y[rng.random(y.shape) < 0.02] = np.nan
    c = rng.standard_normal((n, 2))
    for name, arr, cols in (("pheno", y, [f"PC{j + 1}" for j in range(10)]), ("covar", c, ["AGE", "SEX"])):
        fam.with_columns([pl.Series(k, arr[:, j]).fill_nan(None) for j, k in enumerate(cols)]).write_csv(
            f"{prefix}.{name}.tsv", separator="\t", null_value="NA")
    return str(prefix)


def log_seconds(log: Path, what: str) -> float:
    return float(re.search(rf"time {what}: ([\d.]+) s", log.read_text()).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--snps", type=int, default=650_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cuda", help="the device run (cuda, or cpu for a dry run)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/gimtool_bench_gwas_gpu"))
    ap.add_argument("--results", type=Path, default=None)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prefix = random_bed(a.workdir / f"rand_{a.n}x{a.snps}", a.n, a.snps, a.threads)
    print(f"cohort {a.n} x {a.snps} ready ({time.perf_counter() - t0:.1f} s)", flush=True)
    base = ["gwas", "--bfile", prefix, "--pheno", f"{prefix}.pheno.tsv", "--covar", f"{prefix}.covar.tsv",
            "--threads", str(a.threads), "--no-plots"]
    runs = {}
    for label, dev in ((f"gimtool gwas --device {a.device}", a.device), ("gimtool gwas (CPU)", "cpu")):
        out = a.workdir / dev
        wall, rss = measure(gimtool_cmd(*base, "--device", dev, "--out", out))
        log = Path(f"{out}.log")
        runs[label] = (wall, rss, log_seconds(log, "association scan"), log_seconds(log, "write outputs"), out)
        print(f"{label}: {wall:.1f} s, {rss:.0f} MB", flush=True)
    (dw, _, ds, _, dout), (cw, _, cs, _, cout) = runs.values()
    from gimtool.io.sumstats import read_sumstats

    worst = 0.0
    for ph in ("PC1", "PC10"):
        x, y = read_sumstats(f"{dout}.{ph}.sumstats.gz"), read_sumstats(f"{cout}.{ph}.sumstats.gz")
        assert (x["N"] == y["N"]).all(), ph
        for col in ("BETA", "SE"):
            u, v = x[col].to_numpy(), y[col].to_numpy()
            worst = max(worst, float(np.nanmax(np.abs(u - v) / np.abs(v))))
    dev_name = a.device
    if a.device.startswith("cuda"):
        import torch

        dev_name = torch.cuda.get_device_name(0)
    lines = [f"## gimtool gwas on {dev_name} vs the CPU: {a.n} x {a.snps} SNPs x 10 phenotypes + 2 covariates",
             "", f"{platform.machine()}, {os.cpu_count()} CPU cores, --threads {a.threads}; "
             f"{time.strftime('%Y-%m-%d')}. Same inputs, full outputs (--no-plots) in both runs.", "",
             "| run | wall s | association scan s | write outputs s | peak RSS MB |", "| --- | --- | --- | --- | --- |"]
    for label, (w, r, s, wo, _) in runs.items():
        lines.append(f"| {label} | {w:.1f} | {s:.1f} | {wo:.1f} | {r:.0f} |")
    lines += ["", f"Scan: device/CPU time ratio {ds / cs:.3f} ({cs / ds:.1f}x faster); whole command "
              f"{dw / cw:.3f}. Largest relative difference of BETA/SE between the runs: {worst:.1e}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        a.results.parent.mkdir(parents=True, exist_ok=True)
        a.results.write_text(text)
    if worst > 1e-6:
        sys.exit(f"device and CPU results differ (max rel {worst:.1e})")


if __name__ == "__main__":
    main()
