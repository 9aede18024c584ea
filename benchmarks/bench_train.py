"""Training throughput (samples/s) of `gim` and `autoencoder`, side by side in one run.

Builds a synthetic cohort on the 4 mm MNI grid (46 x 55 x 46 voxels, 40^3 crops = 160 mm, the
paper's crop), with an SNP array of --snps SNPs, and trains each method through the real loop
(data loading, crops, genetic augmentation, checkpoints included) for a couple of epochs. The
paper's model config is used unchanged. Reports samples/s per stage and the ratio gim/autoencoder.

    python benchmarks/bench_train.py --threads 2 --out benchmarks/results/train_cpu_4mm.md
    python benchmarks/bench_train.py --device cuda --voxel 1 --snps 650000   # on a GPU machine
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from gimtool.io.genostore import GenoStoreWriter
from gimtool.io.imagestore import create_store, finish_store
from gimtool.model.methods import get_method
from gimtool.train.config import TrainConfig
from gimtool.train.loop import prepare_data, train

GRIDS = {4: (46, 55, 46), 2: (91, 109, 91), 1: (182, 218, 182)}


def make_cohort(d: Path, n: int, voxel: int, n_snps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    shape = GRIDS[voxel]
    ids = [(f"F{k}", f"I{k}") for k in range(n)]
    man = pl.DataFrame({"FID": [a for a, _ in ids], "IID": [b for _, b in ids], "SOURCE": ["sim"] * n})
    aff = np.diag([voxel, voxel, voxel, 1.0])
    tmp, arr = create_store(d / "img", man, shape, aff, (voxel,) * 3)
    for k in range(n):
        arr[k] = rng.normal(size=shape).astype(np.float16)
    finish_store(tmp, d / "img", arr)
    per = n_snps // 2
    chrom = np.repeat([1, 2], [per, n_snps - per])
    bp = np.concatenate([np.arange(per), np.arange(n_snps - per)]) * 1000 + 1
    snps = pl.DataFrame({"CHR": chrom, "SNP": [f"s{k}" for k in range(n_snps)], "CM": bp / 1e6, "BP": bp,
                         "A1": ["A"] * n_snps, "A2": ["G"] * n_snps})
    with GenoStoreWriter(d / "geno", man.select("FID", "IID"), snps) as w:
        w.write(rng.integers(0, 3, size=(n, n_snps), dtype=np.int8))


def bench(d: Path, name: str, epochs, args) -> list[dict]:
    m = get_method(name)
    # the paper's 160 mm crops (gimtool's default is whole volumes since 2026-12-02), as the
    # committed throughput figures were measured
    cfg = TrainConfig.from_dict({"method": name, "epochs": epochs, "batch_size": args.batch_size, "seed": 1,
                                 "crop_mm": 160.0, "device": args.device, "threads": args.threads,
                                 "workers": args.workers})
    data = prepare_data(cfg, m, d / "img", d / "geno", None, None)
    t = time.perf_counter()
    print(f"training {name} ...", flush=True)
    train(cfg, m, data, d / f"run-{name}", progress=False)
    wall = time.perf_counter() - t
    h = pl.read_csv(d / f"run-{name}" / "history.tsv", separator="\t")
    rows = []
    for st in h["STAGE"].unique(maintain_order=True).to_list():
        s = h.filter(pl.col("STAGE") == st)
        # the first epoch of a run includes warm-up; report the best epoch of each stage
        rows.append({"method": name, "stage": st, "samples_per_s": float(s["SAMPLES_PER_S"].max()), "wall_s": wall,
                     "crop": "x".join(map(str, data.crop)), "n_snps": data.n_snps})
        print(f"  {name} {st}: {rows[-1]['samples_per_s']:.3f} samples/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--voxel", type=int, default=4, choices=sorted(GRIDS))
    ap.add_argument("--snps", type=int, default=20_000)
    ap.add_argument("--people", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per stage")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="write a markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_cohort(d, args.people, args.voxel, args.snps)
        # autoencoder before and after gim, so that a change of machine load shows and averages out
        ae1 = bench(d, "autoencoder", args.epochs, args)
        rows = bench(d, "gim", [args.epochs] * 3, args)
        ae2 = bench(d, "autoencoder", args.epochs, args)
        ae1[0]["stage"], ae2[0]["stage"] = "train (before gim)", "train (after gim)"
        rows = ae1 + rows + ae2
    ae = (ae1[0]["samples_per_s"] + ae2[0]["samples_per_s"]) / 2
    lines = [
        f"# Training throughput, {args.device}, {args.voxel} mm grid {GRIDS[args.voxel]}, crop {rows[0]['crop']}, "
        f"batch {args.batch_size}, {args.snps} SNPs, {args.threads} threads",
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}; best epoch of each stage "
        f"({args.people // args.batch_size} steps per epoch, data loading and checkpoints included)",
        "",
        "| method | stage | samples/s | ratio to autoencoder (mean of both runs) |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['stage']} | {r['samples_per_s']:.2f} | {r['samples_per_s'] / ae:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
