"""Genetic transformer: forward+backward time and peak memory against the number of SNPs (CPU).

Each size runs in a fresh process so that the peak resident memory (ru_maxrss) belongs to it
alone. There is no reference tool for this encoder; the claim under test is linear growth, so
the report gives time and memory per SNP relative to the smallest size (1.00 = linear), and the
same for the MLP baseline encoder where it fits in memory.

    python benchmarks/bench_genetic_encoder.py --sizes 65000 130000 650000 --batch 2 --threads 2 \
        --out benchmarks/results/genetic_encoder.md
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

# GRCh37 autosome lengths in Mb: the synthetic array spreads SNPs over chromosomes in proportion.
CHROM_MB = [249, 243, 198, 191, 181, 171, 159, 146, 141, 136, 135, 134, 115, 107, 103, 90, 81, 78, 59, 63, 48, 51]


def synthetic_array(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    share = np.array(CHROM_MB, dtype=float) / sum(CHROM_MB)
    counts = np.floor(share * n).astype(int)
    counts[0] += n - counts.sum()
    chrom = np.repeat(np.arange(1, 23), counts)
    bp = np.concatenate([np.sort(rng.integers(1, mb * 1_000_000, c)) for mb, c in zip(CHROM_MB, counts)])
    cm = bp / 1e6 * (1 + 0.2 * rng.standard_normal(len(bp))).clip(0.5)  # roughly 1 cM per Mb
    cm = np.concatenate([np.maximum.accumulate(cm[chrom == c]) for c in range(1, 23)])
    geno = rng.integers(0, 3, size=(1, n), dtype=np.int8)
    return chrom, bp, cm, geno


def one(n: int, batch: int, threads: int, kind: str, reps: int) -> dict:
    import numpy as np
    import torch

    from gimtool.model import ModelConfig
    from gimtool.model.genetic import GeneticTransformer, MLPGeneticEncoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    chrom, bp, cm, geno = synthetic_array(n)
    geno = torch.from_numpy(np.repeat(geno, batch, axis=0))
    chrom, bp, cm = torch.from_numpy(chrom), torch.from_numpy(bp), torch.from_numpy(cm)
    cfg = ModelConfig()
    enc = GeneticTransformer(cfg) if kind == "transformer" else MLPGeneticEncoder(cfg, n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        y = enc(geno, chrom, bp, cm)
        y.square().sum().backward()
        times.append(time.perf_counter() - t0)
        enc.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "n_snps": n, "batch": batch, "seconds": min(times), "peak_rss_mb": peak / 1024,
            "model_rss_mb": (peak - base_rss) / 1024, "params": sum(p.numel() for p in enc.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[65_000, 130_000, 650_000])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--mlp-max", type=int, default=650_000, help="largest size to run the MLP baseline at")
    ap.add_argument("--out", default=None, help="write a markdown table here")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(int(a.one[1]), a.batch, a.threads, a.one[0], a.reps)))
        return
    rows = []
    for kind in ("transformer", "mlp"):
        for n in a.sizes:
            if kind == "mlp" and n > a.mlp_max:
                continue
            cmd = [sys.executable, __file__, "--one", kind, str(n), "--batch", str(a.batch), "--threads", str(a.threads), "--reps", str(a.reps)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            rows.append(r)
            print(json.dumps(r), file=sys.stderr)
    lines = [
        f"# Genetic encoder forward+backward on the CPU (batch {a.batch}, {a.threads} threads, best of {a.reps})",
        "",
        "Per-SNP ratios are relative to the smallest size of the same encoder: 1.00 means linear growth.",
        "model RSS = peak resident memory minus the resident memory before the first forward.",
        "",
        "| encoder | SNPs | params | seconds | peak RSS MB | model RSS MB | time/SNP ratio | memory/SNP ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in ("transformer", "mlp"):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        t0, m0, n0 = rs[0]["seconds"], rs[0]["model_rss_mb"], rs[0]["n_snps"]
        for r in rs:
            f = n0 / r["n_snps"]
            lines.append(
                f"| {kind} | {r['n_snps']:,} | {r['params']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | "
                f"{r['model_rss_mb']:.0f} | {r['seconds'] / t0 * f:.2f} | {r['model_rss_mb'] / m0 * f:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
