"""prep-geno against `plink2 --maf --geno --make-bed` with the same filters, alternating in one run.

    python benchmarks/bench_prep_geno.py [--n 5000] [--m 100000] [--threads 2] [--reps 5] \
        [--results benchmarks/results/prep_geno.md]

Cohort: bench_gwas's generator with real-shaped missing calls (1% on average, skewed over SNPs
and people, so --geno 0.05 removes some SNPs) and A1 frequencies from 0.002 (so --maf 0.01
removes some). Runs alternate plink2, gimtool, plink2, ...; wall time and peak RSS come from GNU
time; each ratio is taken within a pair; the gimtool log gives the split between the filter pass,
the .bed write and the sample-major store. A second cohort run keeps 90% of the people (--keep),
which makes both tools rewrite every .bed row instead of copying it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

from bench_gwas import GIM_ENV, make_cohort, timed

SPLIT = [("filter pass (QC)", "QC"), ("repack .bed rows (--keep)", "repack .bed rows"),
         ("transpose store (2-bit sample-major)", "transpose store"), ("waited for the writer thread", "waited for the writer"),
         ("writer thread: .bed (overlaps the above)", r"write \.bed \(writer thread\)"),
         ("writer thread: store (overlaps the above)", r"write store \(writer thread\)"),
         ("start-up + .bim/.fam/log + exit (wall minus QC and write)", None)]


def clear(d: Path) -> None:
    """Remove both tools' outputs, so that neither pays for deleting the last run's (fresh outputs, as in use)."""
    for p in list(d.glob("p2.*")) + list(d.glob("gim.*")):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    os.sync()


def log_time(log: str, what: str) -> float:
    return float(re.search(rf"{what}: ([\d.]+) s", Path(log).read_text()).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/gimtool_bench_prep_geno")
    ap.add_argument("--results", default=None, help="append a markdown section here")
    a = ap.parse_args()
    d = Path(a.workdir)
    d.mkdir(parents=True, exist_ok=True)
    bfile = make_cohort(d, a.n, a.m, missing=0.01, freq=(0.002, 0.5))
    fam = Path(bfile + ".fam").read_text().splitlines()
    keep = d / "keep90.txt"
    keep.write_text("\n".join(" ".join(ln.split()[:2]) for ln in fam[: int(0.9 * len(fam))]) + "\n")
    plink2 = shutil.which("plink2") or sys.exit("plink2 not on PATH")
    filters = ["--maf", "0.01", "--geno", "0.05"]
    load = os.getloadavg()[0]
    lines = [f"## prep-geno vs plink2 --make-bed: {a.n} x {a.m} SNPs, {' '.join(filters)}, --threads {a.threads} "
             f"({datetime.date.today()})", "",
             f"load average at start {load:.1f} on {os.cpu_count()} cores (shared machine, other jobs running: times are "
             f"noisy; every ratio is within an alternating pair); {a.reps} pairs per case.", ""]
    for case, extra in (("all people", []), ("--keep 90% of the people", ["--keep", str(keep)])):
        p2 = [plink2, "--bfile", bfile, *filters, *extra, "--make-bed", "--threads", str(a.threads), "--out", str(d / "p2")]
        gim = [sys.executable, "-m", "gimtool", "prep-geno", "--bfile", bfile, *filters, *extra, "--threads",
               str(a.threads), "--out", str(d / "gim")]
        clear(d)
        timed(gim, env=GIM_ENV)  # warm-up: bytecode, page cache
        pairs, split = [], {k: [] for k, _ in SPLIT}
        for rep in range(a.reps):
            clear(d)
            r_p = timed(p2)
            clear(d)
            r_g = timed(gim, env=GIM_ENV)
            pairs.append((r_p, r_g))
            log = str(d / "gim.log")
            for k, key in SPLIT:
                if key:
                    split[k].append(log_time(log, f"time {key}"))
            split[SPLIT[-1][0]].append(r_g[0] - log_time(log, "time QC") - log_time(log, "time write"))
            print(f"{case} rep {rep + 1}: plink2 {r_p[0]:.2f} s {r_p[1]:.0f} MB, gimtool {r_g[0]:.2f} s {r_g[1]:.0f} MB "
                  f"({r_g[0] / r_p[0]:.2f}x)", flush=True)
        timed(p2)  # both outputs side by side
        same = Path(d / "p2.bed").read_bytes() == Path(d / "gim.bed").read_bytes()
        ratios = sorted(g[0] / p[0] for p, g in pairs)
        wp = statistics.median(p[0] for p, _ in pairs)
        wg = statistics.median(g[0] for _, g in pairs)
        cp = statistics.median(p[2] for p, _ in pairs)
        cg = statistics.median(g[2] for _, g in pairs)
        mp = max(p[1] for p, _ in pairs)
        mg = max(g[1] for _, g in pairs)
        kept = re.search(r"kept (\d+) of (\d+) samples and (\d+) of (\d+) SNPs", Path(d / "gim.log").read_text())
        lines += [f"### {case} ({kept.group(0) if kept else ''})", "",
                  "| run | wall s (median) | ratio to plink2 | CPU s (user+sys, median) | peak RSS MB |", "| --- | --- | --- | --- | --- |",
                  f"| plink2 --make-bed | {wp:.2f} | 1.00 | {cp:.2f} | {mp:.0f} |",
                  f"| gimtool prep-geno (.bed + genotype store) | {wg:.2f} | {statistics.median(ratios):.2f} | {cg:.2f} | {mg:.0f} "
                  f"(plink2 + {mg - mp:.0f}) |"]
        for k, _ in SPLIT:
            v = statistics.median(split[k])
            lines.append(f"| gimtool: {k} | {v:.2f} | {v / wp:.2f} | | |")
        lines += ["", f"Ratio per pair (sorted): {', '.join(f'{r:.2f}' for r in ratios)}; pairs (plink2/gimtool s): "
                  + ", ".join(f"{p[0]:.2f}/{g[0]:.2f}" for p, g in pairs)
                  + f". The two .bed files are {'byte-identical' if same else 'DIFFERENT'}.", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        with open(a.results, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
