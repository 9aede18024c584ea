"""prep-geno against plink2 --maf --geno --make-bed on the same fileset, in one run.

    python benchmarks/bench_prep_geno.py [--n 5000] [--m 100000] [--threads 2]

Prints wall time and peak memory of both and their ratios; appends to results/prep_geno.md.
"""

from __future__ import annotations

import argparse
import datetime
import shutil

from common import DATA, RESULTS, gimtool_cmd, measure, random_cohort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    bfile = random_cohort(DATA / f"rand_{a.n}x{a.m}", a.n, a.m)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    filters = ["--maf", "0.01", "--geno", "0.1"]
    plink = shutil.which("plink2")
    rows = []
    t_p, m_p = measure([plink, "--bfile", bfile, *filters, "--make-bed", "--threads", str(a.threads), "--out", str(out / "p2")])
    t_g, m_g = measure(gimtool_cmd("prep-geno", "--bfile", bfile, *filters, "--threads", a.threads, "--out", out / "gim"))
    rows.append(("plink2 --make-bed", t_p, m_p))
    rows.append(("gimtool prep-geno (bed + genotype store)", t_g, m_g))
    lines = [
        f"## prep-geno, {a.n} x {a.m} SNPs, --threads {a.threads} ({datetime.date.today()})",
        "",
        "| tool | wall s | peak MB |",
        "|---|---|---|",
        *[f"| {r[0]} | {r[1]:.2f} | {r[2]:.0f} |" for r in rows],
        "",
        f"ratio gimtool/plink2: time {t_g / t_p:.2f}x, peak memory {m_g / m_p:.2f}x",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "prep_geno.md", "a") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
