"""`gimtool clump` against `plink1.9 --clump` on the same files, side by side.

Cohort: 5,000 people x 100,000 SNPs on 10 chromosomes whose haplotypes are mosaics of 100
founder haplotypes (segments of ~400 SNPs copied from a random founder: haplotype blocks, so LD
that decays with distance; a coalescent simulation of this size with gimtool.sim takes longer
than 15 minutes on the shared 2-core machine),
a trait with 80 causal SNPs and h2 0.9 (about 1,000 SNPs with P <= 5e-8), sumstats from a
plain least-squares scan. Both tools clump
with p1 5e-8, p2 1e-2, r2 0.1, kb 250 (gimtool's defaults), are run alternately `--repeats` times,
and their outputs are checked to agree. Prints and writes benchmarks/results/clump.md.

    python benchmarks/bench_clump.py [--n 5000] [--m 100000] [--causal 80] [--h2 0.9] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, gimtool_cmd, measure  # noqa: E402


def mosaic_cohort(n: int, m: int, n_chrom: int = 10, founders: int = 100, segment: float = 400.0,
                  seed: int = 7):
    """(G (n, m) int8, bim, fam): haplotypes copied in segments from a few founder haplotypes."""
    import polars as pl

    rng = np.random.default_rng(seed)
    per = m // n_chrom
    # founders are themselves mosaics of 6 ancestral haplotypes (segments of ~1,000 SNPs, 0.3% mutations),
    # so that nearby SNPs are correlated across founders
    A = (rng.random((6, m)) < rng.beta(0.5, 1.0, size=m)).astype(np.int8)
    seg = np.cumsum(rng.random((founders, m)) < 1.0 / 1000, axis=1)
    pick = rng.integers(0, 6, size=(founders, seg[:, -1].max() + 1))
    F = A[np.take_along_axis(pick, seg, axis=1), np.arange(m)[None, :]]
    F ^= (rng.random((founders, m)) < 0.003).astype(np.int8)
    G = np.empty((n, m), dtype=np.int8)
    for c in range(n_chrom):
        a, b = c * per, (m if c == n_chrom - 1 else (c + 1) * per)
        for h in range(2):
            switch = rng.random((n, b - a)) < 1.0 / segment
            seg = np.cumsum(switch, axis=1)
            pick = rng.integers(0, founders, size=(n, seg[:, -1].max() + 1))
            src = np.take_along_axis(pick, seg, axis=1)
            hap = F[src, np.arange(a, b)[None, :]]
            if h == 0:
                G[:, a:b] = hap
            else:
                G[:, a:b] += hap
    chrom = np.repeat(np.arange(1, n_chrom + 1), np.diff(np.r_[np.arange(0, m, per)[:n_chrom], m]))
    bp = np.concatenate([np.sort(rng.choice(np.arange(1, 10_000_000), size=int((chrom == c).sum()), replace=False))
                         for c in range(1, n_chrom + 1)])
    bim = pl.DataFrame({"CHR": chrom.astype(str), "SNP": [f"rs{j}" for j in range(m)], "CM": bp / 1e6,
                        "BP": bp, "A1": ["A"] * m, "A2": ["G"] * m})
    fam = pl.DataFrame({"FID": [f"F{i}" for i in range(n)], "IID": [f"I{i}" for i in range(n)]})
    return G, bim, fam


def make_cohort(n: int, m: int, n_causal: int, h2: float, seed: int = 7) -> tuple[str, Path]:
    import polars as pl
    from scipy import stats

    from gimtool.io.plink import write_bfile
    from gimtool.io.sumstats import write_sumstats
    from gimtool.sim.traits import simulate_traits

    prefix = DATA / f"clump_sim_{n}x{m}"
    ss_path = DATA / f"clump_sim_{n}x{m}.c{n_causal}.h{h2}.sumstats.gz"
    if Path(str(prefix) + ".bed").exists() and ss_path.exists():
        return str(prefix), ss_path
    DATA.mkdir(parents=True, exist_ok=True)
    if Path(str(prefix) + ".bed").exists():
        from gimtool.io.plink import Bfile

        ref = Bfile(prefix)
        G, bim = ref.read(), ref.bim
    else:
        t = time.perf_counter()
        G, bim, fam = mosaic_cohort(n, m, seed=seed)
        print(f"simulated {n} x {m} in {time.perf_counter() - t:.0f} s", flush=True)
        write_bfile(prefix, G, fam, bim)
    tr = simulate_traits(G, h2=h2, n_causal=n_causal, seed=seed)
    y = tr.values[:, 0]
    yc = y - y.mean()
    beta = np.empty(G.shape[1])
    se = np.empty(G.shape[1])
    freq = np.empty(G.shape[1])
    for a in range(0, G.shape[1], 10_000):
        g = G[:, a : a + 10_000].astype(np.float64)
        freq[a : a + 10_000] = g.mean(0) / 2
        g -= g.mean(0)
        ss = np.maximum((g * g).sum(0), 1e-12)
        b = g.T @ yc / ss
        res = ((yc[:, None] - g * b) ** 2).sum(0)
        beta[a : a + 10_000] = b
        se[a : a + 10_000] = np.sqrt(res / (n - 2) / ss)
    tstat = beta / se
    p = 2 * stats.t.sf(np.abs(tstat), n - 2)
    write_sumstats(pl.DataFrame({
        "SNP": bim["SNP"], "CHR": bim["CHR"], "BP": bim["BP"], "GENPOS": bim["CM"], "ALLELE1": bim["A1"],
        "ALLELE0": bim["A2"], "A1FREQ": freq, "N": np.full(G.shape[1], n), "BETA": beta, "SE": se,
        "CHISQ": tstat**2, "P": p,
    }), ss_path)
    return str(prefix), ss_path


def read_clumped(path: Path, sep: str | None) -> list[tuple[str, list[str]]]:
    rows = []
    for line in open(path):
        t = line.split(sep) if sep else line.split()
        t = [x.strip() for x in t]
        if not t or not t[0] or t[0] == "CHR":
            continue
        rows.append((t[2], [] if t[11] == "NONE" else [s.split("(")[0] for s in t[11].split(",")]))
    return rows


# what the figures mean; kept beside the generated numbers (the machine is shared, timings noisy)
EXPLANATION = [
    "Before these changes: 0.76 s vs 0.17 s (4.39x) on a quiet machine; command log read sumstats "
    "0.11 s, clump 0.18 s, total 0.33 s.",
    "",
    "What changed: clean sumstats files are parsed by polars straight from the gzipped bytes with typed "
    "numeric columns (the string path, which names a bad field, is kept for everything else); sumstats in "
    "the reference's SNP order skip the SNP join; the three genotype bit planes come from one table "
    "gather, decoded 2,048 .bed rows at a time into preallocated planes (in a fresh process every new "
    "page costs a fault: the cold decode went from 0.13 to 0.07 s); the decode table and the loci module "
    "are loaded only when used. Outputs are identical. A parser of our own for plain command lines "
    "(bypassing typer 0.29's per-parameter pydantic adapters, 0.1-0.15 s a run) was tried and left out: "
    "a second parser beside typer is a maintenance risk for a tenth of a second.",
    "",
    "What stands between gimtool and 1x: Python with numpy and polars imported (the floor above) already "
    "takes longer than plink1.9's whole run, so 1x is out of reach for a Python command built on them. "
    "Dropping polars does not pay: parsing the .bim (0.06 s) and the SNP and P columns of the sumstats "
    "(0.16 s) in pure Python costs more than polars' import (~0.16 s over numpy's). Above the floor: "
    "typer and the CLI (~0.15 s), reading and checking the sumstats (~0.05 s), decoding the planes of the "
    "~21,000 SNPs near index SNPs (~0.07 s cold), the EM r2 of 29,106 pairs and the bookkeeping of 70 "
    "clumps (~0.06 s), the .bim/.fam and writing the outputs and log. The rest would need compiled code "
    "(a decode+r2 kernel) or a resident process.",
    "",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--causal", type=int, default=80)
    ap.add_argument("--h2", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    plink = shutil.which("plink1.9")
    if plink is None:
        raise SystemExit("plink1.9 not on PATH")
    bfile, ss = make_cohort(args.n, args.m, args.causal, args.h2)
    import polars as pl

    pv = pl.read_csv(ss, separator="\t", null_values="NA")["P"].to_numpy()
    n_sig = int(np.sum(pv <= 5e-8))
    out = DATA / "out"
    out.mkdir(exist_ok=True)
    thr = ["--p1", "5e-8", "--p2", "1e-2", "--r2", "0.1", "--kb", "250"]
    g_cmd = gimtool_cmd("clump", "--bfile", bfile, "--sumstats", ss, "--out", out / "gim", "--threads", "1", *thr)
    p_cmd = [plink, "--bfile", bfile, "--clump", ss, "--clump-p1", "5e-8", "--clump-p2", "1e-2", "--clump-r2", "0.1",
             "--clump-kb", "250", "--threads", "1", "--out", out / "plink", "--silent"]
    # the floor under any Python command: the interpreter alone, and the imports clump cannot do without
    bare_cmd = [sys.executable, "-c", "pass"]
    imp_cmd = [sys.executable, "-c", "import numpy, polars"]
    tg, tp, mg, mp, tb, ti = [], [], [], [], [], []
    load0 = os.getloadavg()[0]
    for _ in range(args.repeats):
        w, r = measure(p_cmd)
        tp.append(w), mp.append(r)
        w, r = measure(g_cmd)
        tg.append(w), mg.append(r)
        tb.append(measure(bare_cmd)[0])
        ti.append(measure(imp_cmd)[0])
    a = read_clumped(out / "gim.clumped", "\t")
    b = read_clumped(out / "plink.clumped", None)
    same = a == b
    med_g, med_p = statistics.median(tg), statistics.median(tp)
    lines = [
        "# clump: gimtool vs plink1.9 --clump",
        "",
        f"Cohort: {args.n:,} x {args.m:,} SNPs (founder-mosaic haplotypes, 10 chromosomes of 10 Mb), one trait, {args.causal} causal SNPs, "
        f"h2 {args.h2}; {n_sig:,} SNPs with P <= 5e-8. Thresholds p1 5e-8, p2 1e-2, r2 0.1, kb 250; --threads 1; "
        f"{args.repeats} alternating runs, medians; 1-minute load average {load0:.1f} before the runs, "
        f"{os.getloadavg()[0]:.1f} after (2 cores, shared).",
        "",
        "| tool | wall s (median) | runs | peak RSS MB |",
        "| --- | --- | --- | --- |",
        f"| gimtool clump | {med_g:.2f} | {', '.join(f'{x:.2f}' for x in tg)} | {max(mg):.0f} |",
        f"| plink1.9 --clump | {med_p:.2f} | {', '.join(f'{x:.2f}' for x in tp)} | {max(mp):.0f} |",
        "",
        f"ratio gimtool / plink1.9: **{med_g / med_p:.2f}x**; clumps {len(a)} vs {len(b)}, identical index SNPs and members: {same}",
        "",
        f"Command: `python benchmarks/bench_clump.py --n {args.n} --m {args.m} --causal {args.causal} --h2 {args.h2} "
        f"--repeats {args.repeats}`",
        "",
        "gimtool's own log splits its time: "
        + "; ".join(ln.strip() for ln in (out / "gim.log").read_text().splitlines() if ln.startswith(("time ", "total time")))
        + ".",
        "",
        f"Import floor, same runs (medians): `python -c pass` {statistics.median(tb):.3f} s; "
        f"`python -c \"import numpy, polars\"` {statistics.median(ti):.3f} s, "
        f"{statistics.median(ti) / med_p:.2f}x plink1.9's whole run. gimtool clump above that floor: "
        f"{med_g - statistics.median(ti):.2f} s.",
        "",
        *EXPLANATION,
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "clump.md").write_text(text)


if __name__ == "__main__":
    main()
