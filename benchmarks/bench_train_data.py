"""Training data path: random 160^3 crops at 1 mm delivered per second, from the page cache.

    python benchmarks/bench_train_data.py [--people 24] [--batches 12] [--batch-size 12] \
        [--results benchmarks/results/train_data.md]

A 1 mm image store (182 x 218 x 182 float16, the MNI grid) and a genotype store of 100,000 SNPs
for --people people are made once in --workdir and read once so that they sit in the page
cache. Then the same keyed training batches (random crops, genotype rows, the genetic
augmentation's SNP subset) come from:

- gimtool.train.data.ThreadedLoader, threads of the main process (the default, workers = 0):
  - as a CUDA run gets them on the host: the stored float16 crops, unconverted, in a ring of
    reused buffers (pinned on CUDA; from there they go to the device as they are and are
    converted there: that half needs a GPU and is not measured here);
  - as a CPU run gets them: float32;
- a torch DataLoader with 2 worker processes (workers = 2: every crop pickled to the main
  process; the path before issue 15).

Alternating rounds; crops/s per round; the median and the range are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch


def make_stores(d: Path, people: int, n_snps: int = 100_000, seed: int = 0):
    from gimtool.io.genostore import GenoStore, GenoStoreWriter
    from gimtool.io.imagestore import ImageStore, create_store, finish_store

    img_path, geno_path = d / f"img_{people}", d / f"geno_{people}"
    ids = [(f"F{k}", f"I{k}") for k in range(people)]
    if not img_path.exists():
        rng = np.random.default_rng(seed)
        shape = (182, 218, 182)
        man = pl.DataFrame({"FID": [f for f, _ in ids], "IID": [i for _, i in ids], "SOURCE": [f"{i}.nii.gz" for _, i in ids]})
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        affine[:3, 3] = (-90.0, -126.0, -72.0)
        tmp, arr = create_store(img_path, man, shape, affine, (1.0, 1.0, 1.0))
        for k in range(people):
            arr[k] = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
        finish_store(tmp, img_path, arr)
    if not geno_path.exists():
        rng = np.random.default_rng(seed + 1)
        snps = pl.DataFrame({"CHR": np.repeat([1, 2], n_snps // 2), "SNP": [f"rs{j}" for j in range(n_snps)],
                             "CM": np.arange(n_snps) * 1e-3, "BP": np.arange(n_snps) * 1000 + 1,
                             "A1": ["A"] * n_snps, "A2": ["G"] * n_snps})
        with GenoStoreWriter(geno_path, pl.DataFrame({"FID": [f for f, _ in ids], "IID": [i for _, i in ids]}), snps) as w:
            w.write(rng.binomial(2, 0.3, size=(people, n_snps)).astype(np.int8))
    return ImageStore(img_path), GenoStore(geno_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=24)
    ap.add_argument("--batches", type=int, default=12, help="batches per round")
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/gimtool_bench_train_data")
    ap.add_argument("--results", default=None, help="append a markdown section here")
    a = ap.parse_args()

    from gimtool.train.data import Collate, KeyedBatches, PairDataset, ThreadedLoader, make_loader, pair_samples

    d = Path(a.workdir)
    d.mkdir(parents=True, exist_ok=True)
    img, geno = make_stores(d, a.people)
    np.asarray(img.volumes).sum(dtype=np.float64)  # into the page cache
    pairs = pair_samples(img, geno, None, "all")
    ds = PairDataset(img.path, geno.path, pairs, (160, 160, 160), n_views=1, with_geno=True)
    collate = Collate(geno.positions(), 1)
    n = a.batches * a.batch_size

    def sampler():
        # the people repeat so that one round has --batches batches whatever --people is
        s = KeyedBatches(max(n, len(ds)), a.batch_size, seed=1, train=True, augment=True, n_snps=geno.n_snps)
        s.n = n
        return s

    def wrapped(keys):  # keys beyond the people wrap around
        return [((k % len(ds)),) + tuple(rest) for k, *rest in keys]

    class WrapSampler:
        def __init__(self, s):
            self.s = s

        def __len__(self):
            return len(self.s)

        def __iter__(self):
            return (wrapped(keys) for keys in self.s)

    paths = {
        "threads (2), float16 as delivered to a GPU (host side: into reused buffers)": lambda: ThreadedLoader(
            ds, WrapSampler(sampler()), collate, threads=a.threads, keep_dtype=True),
        "threads (2), float32 (CPU training)": lambda: ThreadedLoader(ds, WrapSampler(sampler()), collate, threads=a.threads),
        "DataLoader, 2 worker processes, float32": lambda: make_loader(ds, WrapSampler(sampler()), collate, 2),
    }
    rates: dict[str, list[float]] = {k: [] for k in paths}
    for name, mk in paths.items():  # warm-up (worker start, page cache)
        for _ in mk():
            break
    for r in range(a.rounds):
        for name, mk in paths.items():
            loader = mk()
            t = time.perf_counter()
            got = 0
            for batch in loader:
                got += batch["image"].shape[0]
                assert batch["image"].shape[2:] == (160, 160, 160) and batch["geno"].shape[0] == batch["image"].shape[0]
            rates[name].append(got / (time.perf_counter() - t))
            print(f"round {r + 1} {name}: {rates[name][-1]:.0f} crops/s", flush=True)
    lines = [f"## Training data path: random 160^3 crops at 1 mm, batch {a.batch_size}, from the page cache ({os.cpu_count()} cores)",
             "", f"load average at start {os.getloadavg()[0]:.1f} (shared machine, other jobs running); {a.people} people, "
             f"100,000 SNPs (genetic augmentation: 10% subsets); {a.rounds} alternating rounds of {a.batches} batches; "
             "crops/s, median and range.", "", "| path | crops/s (median) | range |", "| --- | --- | --- |"]
    for name, v in rates.items():
        lines.append(f"| {name} | {statistics.median(v):.0f} | {min(v):.0f}-{max(v):.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        with open(a.results, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
