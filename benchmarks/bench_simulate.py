"""Speed of `gimtool simulate`: a 500-person cohort at 4 mm end to end (target < 2 min), and the
volume rate at 4, 2 and 1 mm, side by side with a per-volume scipy reference renderer
(``scipy.ndimage.map_coordinates`` on the same deformations, one person at a time).

    python benchmarks/bench_simulate.py [--threads 2] [--n 500] [--out benchmarks/results/simulate.md]

CPU time is reported beside wall time: on a shared machine wall time depends on the load.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def end_to_end(n: int, threads: int, tmp: Path) -> tuple[float, float, float]:
    """Wall s, CPU s and peak RSS (MB) of `gimtool simulate --n N` (default cohort, 4 mm)."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "gimtool", "simulate", "--out", str(tmp / "cohort"), "--n", str(n),
                    "--threads", str(threads)], check=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, _children_cpu() - c0, rss


def volume_rate(voxel: float, n: int, threads: int, tmp: Path) -> dict:
    """Volumes per second (render + write) for gimtool's batched renderer and the scipy reference."""
    import torch
    from scipy.ndimage import map_coordinates

    from gimtool.imaging.grids import mni_grid
    from gimtool.sim.cohort import IMAGE_SCALE, _write_nifti
    from gimtool.sim.images import ImageSimulator, choose_factors
    from gimtool.sim.template import load_template

    torch.set_num_threads(threads)
    shape, affine = mni_grid(voxel)
    tmpl = load_template(voxel)
    sim = ImageSimulator(tmpl, shape, affine, choose_factors(4, np.random.default_rng(0)))
    rng = np.random.default_rng(1)
    z, age, male, seeds = rng.standard_normal((n, 4)), rng.standard_normal(n), rng.integers(0, 2, n), np.arange(n)
    batch = max(1, min(32, int(2_000_000 // int(np.prod(shape)))))
    out = tmp / f"v{voxel:g}"
    out.mkdir(exist_ok=True)
    c0, t0 = _cpu(), time.perf_counter()
    for a in range(0, n, batch):
        vols = sim.render(z[a:a + batch], age[a:a + batch], male[a:a + batch], seeds[a:a + batch])
        for i, v in enumerate(vols):
            _write_nifti(out / f"{a + i}.nii.gz", np.rint(v * IMAGE_SCALE).astype(np.int16), affine)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0

    # reference: the same template and grid, one scipy trilinear resampling per person and channel
    # (identity warp plus a random smooth displacement, no batching), written the same way
    inv = np.linalg.inv(tmpl.affine)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = idx @ affine[:3, :3].T + affine[:3, 3]
    n_ref = max(1, n // 2)
    r0 = time.perf_counter()
    for i in range(n_ref):
        u = np.random.default_rng(i).standard_normal(3) * 2.0
        ijk = (xyz + u) @ inv[:3, :3].T + inv[:3, 3]
        ch = [map_coordinates(c, ijk.T, order=1, mode="constant").reshape(shape) for c in tmpl.data]
        v = ch[0] * (ch[2] > 0.5)
        _write_nifti(out / f"ref{i}.nii.gz", np.rint(v * IMAGE_SCALE).astype(np.int16), affine)
    ref_wall = (time.perf_counter() - r0) / n_ref
    shutil.rmtree(out)
    return {"voxel": voxel, "shape": "x".join(map(str, shape)), "n": n, "per_s": n / wall, "cpu_per_vol": cpu / n,
            "ref_per_s": 1 / ref_wall, "speedup": (n / wall) * ref_wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--out", default="benchmarks/results/simulate.md")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wall, cpu, rss = end_to_end(args.n, args.threads, tmp)
        print(f"end to end, {args.n} people at 4 mm: {wall:.1f} s wall, {cpu:.1f} s CPU, peak {rss:.0f} MB", flush=True)
        rates = []
        for voxel, n in ((4.0, 64), (2.0, 16), (1.0, 4)):
            r = volume_rate(voxel, n, args.threads, tmp)
            rates.append(r)
            print(f"{voxel:g} mm ({r['shape']}): {r['per_s']:.2f} volumes/s ({r['cpu_per_vol']:.3f} CPU s each); "
                  f"scipy reference {r['ref_per_s']:.2f}/s; ratio {r['speedup']:.1f}x", flush=True)
    lines = [
        "# gimtool simulate: speed",
        "",
        f"Machine: {os.cpu_count()} cores, load average {load:.1f} at start, --threads {args.threads}.",
        f"Command: `python benchmarks/bench_simulate.py --threads {args.threads} --n {args.n}`",
        "",
        f"End to end (`gimtool simulate --n {args.n}`: genotypes 3 x 6 Mb, 4 factors, 4 mm volumes): "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MB (target < 120 s).",
        "",
        "| voxel | grid | volumes/s (gimtool) | CPU s / volume | volumes/s (scipy, per volume) | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rates:
        lines.append(f"| {r['voxel']:g} mm | {r['shape']} | {r['per_s']:.2f} | {r['cpu_per_vol']:.3f} | "
                     f"{r['ref_per_s']:.2f} | {r['speedup']:.1f}x |")
    lines += ["", "The scipy reference does less work (one rigid shift instead of the full deformation, no "
              "intensity model), so the ratio understates the batched renderer's advantage.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
