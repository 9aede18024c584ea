"""Cost of splitting a job across a job array and merging the parts (issue 18).

1. `gimtool merge` of prep-mri parts at 1 mm: P part stores of V synthetic volumes each (float16,
   182x218x182, a smooth brain-shaped blob with noise, so that the cohort QC has work to do) are
   joined into one store and the cohort QC is redone: volumes/s and MB/s of the join and of the QC.
2. `gimtool gwas` of a random cohort (N people x M SNPs x 10 phenotypes + 2 covariates) in one run
   and as K chunks plus `gimtool merge --gwas`: the fixed cost each chunk pays (start-up, reading
   the phenotypes) and the merge's time (decompress, join, gzip, plots, summary).

    python benchmarks/bench_shards.py [--parts 3 --volumes 8] [--n 2000 --snps 650000 --chunks 4] [--only images|gwas]

Writes benchmarks/results/shards.md (with --results PATH elsewhere). Times are wall seconds on
whatever else the machine is running; the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, gimtool_cmd, measure, random_cohort  # noqa: E402


def make_parts(work: Path, parts: int, volumes: int, seed: int = 0) -> str:
    """`parts` finished prep-mri part stores of `volumes` 1 mm volumes each: OUT.shardKofP."""
    from gimtool.conventions import IMAGE_QC_COLS
    from gimtool.imaging.grids import mni_grid
    from gimtool.io.imagestore import StoreWriter
    from gimtool.pipelines.prep_mri import _finish
    from gimtool.runlog import RunLog

    shape, affine = mni_grid(1.0)
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    blob = np.exp(-3 * (xx**2 + yy**2 + zz**2))
    out = str(work / "cohort.img")
    intensity = {"method": "zscore-in-mask", "mask": "nonzero"}
    for k in range(1, parts + 1):
        part = f"{out}.shard{k}of{parts}"
        w = StoreWriter(part, shape, affine, (1.0,) * 3, IMAGE_QC_COLS, intensity=intensity)
        for v in range(volumes):
            vol = (blob * rng.uniform(0.8, 1.2) + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float16)
            w.append(vol, {"FID": f"P{k}_{v}", "IID": f"P{k}_{v}", "SOURCE": "synthetic", "RAW_MEAN": 1.0, "RAW_SD": 1.0,
                           "RAW_P01": 0.0, "RAW_P99": 2.0, "BRAIN_VOXELS": 1, "FOV_COVERAGE": 1.0, "NONFINITE_VOXELS": 0})
        with RunLog(part, "bench") as log:
            _finish(w, [], "float16", None, 0.8, affine, log)
        w.close()
    return out


def log_time(log: Path, step: str) -> float:
    m = re.search(rf"time {re.escape(step)}: ([0-9.]+) s", log.read_text())
    return float(m.group(1)) if m else float("nan")


def bench_image_merge(work: Path, parts: int, volumes: int) -> list[str]:
    out = make_parts(work, parts, volumes)
    n = parts * volumes
    mb = n * 182 * 218 * 182 * 2 / 2**20
    os.system("sync")
    wall, rss = measure(gimtool_cmd("merge", "--out", out))
    join, qc = log_time(Path(out + ".log"), "join volumes"), log_time(Path(out + ".log"), "cohort QC")
    shutil.rmtree(work / "cohort.img")
    for p in work.glob("cohort.img.shard*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return [
        f"### merge of prep-mri parts: {parts} parts x {volumes} volumes, 1 mm float16 ({mb:,.0f} MB)",
        "",
        "| step | s | volumes/s | MB/s |",
        "| --- | --- | --- | --- |",
        f"| join volumes (copy into the new store) | {join:.2f} | {n / join:.1f} | {mb / join:.0f} |",
        f"| cohort QC (mean image, correlations, qc.png) | {qc:.2f} | {n / qc:.1f} | {mb / qc:.0f} |",
        f"| whole `gimtool merge` (incl. start-up) | {wall:.2f} | {n / wall:.1f} | {mb / wall:.0f} |",
        "",
        f"Peak RSS {rss:.0f} MB.",
        "",
    ]


def bench_gwas(work: Path, n: int, m: int, chunks: int, threads: int) -> list[str]:
    import polars as pl

    bfile = random_cohort(work / "geno", n, m, missing=0.002, seed=1)
    rng = np.random.default_rng(2)
    fam = pl.read_csv(bfile + ".fam", separator=" ", has_header=False, new_columns=["FID", "IID", "P", "M", "S", "Y"])
    ids = fam.select(pl.col("FID").cast(str), pl.col("IID").cast(str))
    ph = ids.with_columns([pl.Series(f"PC{j}", rng.standard_normal(n)) for j in range(1, 11)])
    cv = ids.with_columns(pl.Series("age", rng.uniform(40, 80, n)), pl.Series("sex", rng.integers(1, 3, n).astype(float)))
    ph.write_csv(work / "pheno.tsv", separator="\t")
    cv.write_csv(work / "covar.tsv", separator="\t")
    base = ["gwas", "--bfile", bfile, "--pheno", work / "pheno.tsv", "--covar", work / "covar.tsv", "--threads", threads]
    one, _ = measure(gimtool_cmd(*base, "--out", work / "one"))
    scan_one = log_time(work / "one.log", "association scan")
    walls, scans = [], []
    for k in range(1, chunks + 1):
        w, _ = measure(gimtool_cmd(*base, "--no-plots", "--chunk", f"{k}/{chunks}", "--out", work / f"c{k}"))
        walls.append(w)
        scans.append(log_time(work / f"c{k}.log", "association scan"))
    parts = ",".join(str(work / f"c{k}") for k in range(1, chunks + 1))
    merge_np, _ = measure(gimtool_cmd("merge", "--out", work / "m_np", "--no-plots", "--gwas", parts))
    merge, rss = measure(gimtool_cmd("merge", "--out", work / "m", "--gwas", parts))
    same = all((work / f"m.PC{j}.sumstats.gz").read_bytes() == (work / f"one.PC{j}.sumstats.gz").read_bytes() for j in range(1, 11))
    fixed = np.median(np.array(walls) - np.array(scans))
    return [
        f"### gwas: {n:,} people x {m:,} SNPs x 10 phenotypes + 2 covariates, --threads {threads}: one run, and {chunks} chunks + merge",
        "",
        "| run | wall s | association scan s |",
        "| --- | --- | --- |",
        f"| one run (with plots) | {one:.2f} | {scan_one:.2f} |",
        *[f"| chunk {k}/{chunks} (--no-plots) | {w:.2f} | {s:.2f} |" for k, (w, s) in enumerate(zip(walls, scans), 1)],
        f"| merge --gwas --no-plots | {merge_np:.2f} | |",
        f"| merge --gwas (with plots) | {merge:.2f} | |",
        "",
        f"Fixed cost per chunk outside the scan (start-up, reading .bim/.fam and the tables, writing): median "
        f"{fixed:.2f} s. Sum of the chunks' scans {sum(scans):.2f} s against {scan_one:.2f} s in one run. Merge peak RSS "
        f"{rss:.0f} MB. Merged sumstats byte-identical to the one run's: {same}.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=3)
    ap.add_argument("--volumes", type=int, default=8, help="volumes per part")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--snps", type=int, default=650_000)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("images", "gwas"), help="run one of the two parts")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gimtool_bench_shards"))
    ap.add_argument("--results", type=Path, default=RESULTS / "shards.md")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    t0 = time.strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Job-array parts: merge cost (issue 18)",
        "",
        f"`python benchmarks/bench_shards.py --parts {a.parts} --volumes {a.volumes} --n {a.n} --snps {a.snps} "
        f"--chunks {a.chunks} --threads {a.threads}` ({t0}; {os.cpu_count()} CPUs, load average {load:.1f} at start: "
        f"a shared machine, other jobs running).",
        "",
        *(bench_image_merge(a.work, a.parts, a.volumes) if a.only != "gwas" else []),
        *(bench_gwas(a.work, a.n, a.snps, a.chunks, a.threads) if a.only != "images" else []),
    ]
    if a.only:  # one part: added below what an earlier run wrote
        old = a.results.read_text() if a.results.is_file() else ""
        lines = [old.rstrip("\n"), "", *lines[4:]] if old else lines
    a.results.write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
