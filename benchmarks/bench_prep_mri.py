"""Benchmark prep-mri and the image store, side by side with the usual Python alternatives.

1. Preprocessing rate (subjects/s) of `gimtool prep-mri --threads 2` at 1 mm and 2 mm, for scans
   already on FSL's MNI152 1 mm grid (like UK Biobank's T1_brain_to_MNI) and for native-space
   scans with a FLIRT matrix; reference: nilearn.image.resample_img (trilinear) plus the same
   z-scoring, one process, per scan.
2. Reading from the store (page cache warm): random 160^3 crops at 1 mm and whole 2 mm volumes,
   decoded to float32 and raw (float16, decoded later on the accelerator), one by one, in batches
   of 12 by ImageStore.crop_batch (2 threads), and through a torch DataLoader with 2 workers; reference: the same crops read from per-subject
   uncompressed NIfTI files through nibabel's array proxy.

Usage: python benchmarks/bench_prep_mri.py [--n 8] [--out benchmarks/results/prep_mri.md]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def make_cohort(d: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """n MNI-grid scans (FSL 1 mm grid, LAS storage) and n native-space scans with FLIRT matrices."""
    from nilearn.datasets import load_mni152_template
    from scipy import ndimage

    from gimtool.imaging.geometry import fsl_mni152_reference, fsl_scaled_voxel

    rng = np.random.default_rng(seed)
    tpl = load_mni152_template(resolution=1)
    a = tpl.get_fdata(dtype=np.float32) * 1000
    taff = tpl.affine
    rshape, raff, rz = fsl_mni152_reference(1.0)
    mni_rows, nat_rows = ["FID\tIID\tPATH"], ["FID\tIID\tPATH\tMAT"]
    sshape = (176, 240, 256)  # a typical sagittal T1 matrix, 1 mm
    saff = np.array([[0, 0, -1.0, 128], [1.0, 0, 0, -120], [0, 1.0, 0, -100], [0, 0, 0, 1]])  # PIL-ish storage
    for i in range(n):
        m = np.linalg.inv(taff) @ raff
        scan = ndimage.affine_transform(a, m[:3, :3], offset=m[:3, 3], output_shape=rshape, order=1)
        scan *= rng.uniform(0.8, 1.2)
        scan[scan > 0] += rng.normal(0, 20, size=int((scan > 0).sum()))
        p = d / f"mni_{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.clip(scan, 0, None).astype(np.int16), raff), p)
        mni_rows.append(f"F\tm{i}\t{p.name}")
        # native space: the template moved by a small rigid transform W (scan world -> MNI world)
        ang = np.deg2rad(rng.uniform(-8, 8, 3))
        cz, sz = np.cos(ang[2]), np.sin(ang[2])
        W = np.eye(4)
        W[:3, :3] = [[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]
        W[:3, 3] = rng.uniform(-10, 10, 3)
        mm = np.linalg.inv(taff) @ W @ saff
        nat = ndimage.affine_transform(a, mm[:3, :3], offset=mm[:3, 3], output_shape=sshape, order=1)
        p = d / f"nat_{i}.nii.gz"
        nib.save(nib.Nifti1Image(nat.astype(np.int16), saff), p)
        mat = fsl_scaled_voxel(raff, rshape, rz) @ np.linalg.inv(raff) @ W @ saff @ np.linalg.inv(fsl_scaled_voxel(saff, sshape, (1.0, 1.0, 1.0)))
        np.savetxt(d / f"nat_{i}.mat", mat, fmt="%.8f")
        nat_rows.append(f"F\tn{i}\t{p.name}\tnat_{i}.mat")
    (d / "mni.tsv").write_text("\n".join(mni_rows) + "\n")
    (d / "native.tsv").write_text("\n".join(nat_rows) + "\n")
    return d / "mni.tsv", d / "native.tsv"


def run_prep(lst: Path, out: Path, voxel: float, threads: int = 2, extra=()) -> tuple[float, float, float]:
    """Wall seconds, seconds of the conform stage (from the log) and peak RSS (MB, largest child so far)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "gimtool", "prep-mri", "--images", str(lst), "--voxel", str(voxel),
                        "--threads", str(threads), "--out", str(out), "--qc-threshold", "0", *extra],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    log = Path(f"{out}.log").read_text()
    conform = float(log.split("time conform: ")[1].split(" s")[0])
    return dt, conform, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def nilearn_reference(lst: Path, voxel: float, k: int) -> float:
    """Seconds per scan: nilearn resample_img (trilinear, world space) + in-mask z-scoring."""
    from nilearn.image import resample_img

    from gimtool.imaging.normalize import zscore
    from gimtool.imaging.grids import mni_grid

    shape, aff = mni_grid(voxel)
    rows = [ln.split("\t") for ln in lst.read_text().splitlines()[1:]][:k]
    t = time.perf_counter()
    for r in rows:
        img = nib.load(lst.parent / r[2])
        out = resample_img(img, target_affine=aff, target_shape=shape, interpolation="linear",
                           force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
        zscore(out, out != 0)
    return (time.perf_counter() - t) / len(rows)


def bench_reads(store_path: Path, nifti_dir: Path | None, n_reads: int, crop: int | None, seed: int = 1) -> dict:
    from gimtool.io.imagestore import ImageStore

    st = ImageStore(store_path)
    rng = np.random.default_rng(seed)
    _ = st.volumes.view(np.uint8).sum(dtype=np.uint64)  # warm the page cache
    res = {}
    idx = rng.integers(0, st.n, n_reads)
    if crop:
        starts = [tuple(int(rng.integers(0, s - crop + 1)) for s in st.shape) for _ in range(n_reads)]
        size = (crop,) * 3
        for raw in (False, True):
            t = time.perf_counter()
            for i, s in zip(idx, starts):
                st.crop(int(i), s, size, raw=raw)
            res["raw float16" if raw else "float32"] = n_reads / (time.perf_counter() - t)
        batch = 12
        buf = {True: np.empty((batch, crop, crop, crop), st.dtype), False: np.empty((batch, crop, crop, crop), np.float32)}
        for raw in (True, False):
            t = time.perf_counter()
            for a in range(0, n_reads - batch + 1, batch):
                st.crop_batch(idx[a : a + batch], starts[a : a + batch], size, raw=raw, threads=2, out=buf[raw])
            res[f"crop_batch(12, threads=2), {'raw float16' if raw else 'float32'}"] = (n_reads // batch * batch) / (time.perf_counter() - t)
        if nifti_dir is not None:
            files = [nifti_dir / f"{f}_{i}.nii" for f, i in st.samples.iter_rows()]
            for f in files:
                np.asarray(nib.load(f).dataobj).sum()
            t = time.perf_counter()
            for i, (a, b, c) in zip(idx, starts):
                np.asarray(nib.load(files[i]).dataobj[a : a + crop, b : b + crop, c : c + crop], dtype=np.float32)
            res["nibabel .nii proxy (reference)"] = n_reads / (time.perf_counter() - t)
    else:
        t = time.perf_counter()
        for i in idx:
            st.volume(int(i))
        res["float32"] = n_reads / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in idx:
            np.array(st.volumes[int(i)])
        res["raw float16"] = n_reads / (time.perf_counter() - t)
    return res


class _CropSet:
    """A torch Dataset of random raw crops (what a training loader does)."""

    def __init__(self, path, crop, n):
        self.path, self.crop, self.n = path, crop, n
        self.st = None

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        import torch

        from gimtool.io.imagestore import ImageStore

        if self.st is None:
            self.st = ImageStore(self.path)
        rng = np.random.default_rng(k)
        i = int(rng.integers(0, self.st.n))
        s = tuple(int(rng.integers(0, d - self.crop + 1)) for d in self.st.shape)
        return torch.from_numpy(self.st.crop(i, s, (self.crop,) * 3, raw=True))


def bench_loader(store_path: Path, crop: int, n: int, workers: int = 2, batch: int = 12) -> float:
    import torch
    from torch.utils.data import DataLoader

    # forkserver: workers forked from a process whose BLAS/OpenMP threads are running can hang
    dl = DataLoader(_CropSet(store_path, crop, n), batch_size=batch, num_workers=workers, persistent_workers=False,
                    multiprocessing_context="forkserver")
    got, t = 0, None
    for b in dl:
        # (decoding to float32 belongs on the accelerator: b.cuda().float())
        if t is None:  # steady state: worker start-up (imports) is not counted
            t = time.perf_counter()
            continue
        got += b.shape[0]
    return got / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8, help="scans per cohort")
    ap.add_argument("--reads", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/prep_mri.md")
    args = ap.parse_args()
    lines = [f"# prep-mri benchmark ({args.n} scans per cohort, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start)", ""]

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        mni, native = make_cohort(d, args.n)
        say("## Preprocessing (subjects/s, `--threads 2`, wall time of the whole command incl. start-up and cohort QC)")
        say("")
        say("| cohort | grid | gimtool command s/scan | conform stage s/scan | scans/s (conform stage) | peak RSS MB | nilearn resample_img s/scan (1 process) | ratio nilearn / gimtool conform |")
        say("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for key, name, lst in (("mni", "on MNI 1 mm grid", mni), ("nat", "native + FLIRT .mat", native)):
            for voxel in (1.0, 2.0):
                dt, conform, rss = run_prep(lst, d / f"st_{key}_{voxel:g}", voxel)
                per, cper = dt / args.n, conform / args.n
                ref = nilearn_reference(lst, voxel, min(3, args.n)) if key == "mni" else float("nan")
                say(f"| {name} | {voxel:g} mm | {per:.2f} | {cper:.2f} | {1 / cper:.2f} | {rss:.0f} | {ref:.2f} | {ref / cper:.2f} |")
        say("")
        say("(nilearn cannot apply FLIRT matrices, so it has no native-space row.)")
        say("")
        # a 1 mm store for crop reads, with uncompressed NIfTI copies for the reference reader
        st1 = d / "st_mni_1"
        nd = d / "nii"
        nd.mkdir()
        from gimtool.io.imagestore import ImageStore

        s1 = ImageStore(st1)
        for k, (f, i) in enumerate(s1.samples.iter_rows()):
            nib.save(nib.Nifti1Image(np.asarray(s1.volumes[k], dtype=np.float32), s1.affine), nd / f"{f}_{i}.nii")
        size_mb = s1.volumes.nbytes / 2**20
        say(f"## Reading from the store (page cache warm; 1 mm store {s1.n} x {s1.shape}, {size_mb:.0f} MB float16)")
        say("")
        say("| read | decode | per second |")
        say("| --- | --- | --- |")
        r = bench_reads(st1, nd, args.reads, 160)
        for k, v in r.items():
            say(f"| random 160^3 crop, 1 mm | {k} | {v:.0f} |")
        base = r["nibabel .nii proxy (reference)"]
        run_prep(mni, d / "st_mni_1_u8", 1.0, extra=("--dtype", "uint8"))
        for k, v in bench_reads(d / "st_mni_1_u8", None, args.reads, 160).items():
            say(f"| random 160^3 crop, 1 mm, uint8 store | {k.replace('raw float16', 'raw uint8')} | {v:.0f} |")
        loader = bench_loader(st1, 160, args.reads)
        say(f"| random 160^3 crop, torch DataLoader 2 workers, batch 12 (steady state) | raw float16 | {loader:.0f} |")
        r2 = bench_reads(d / "st_mni_2", None, args.reads * 5, None)
        for k, v in r2.items():
            say(f"| whole 2 mm volume (91x109x91) | {k} | {v:.0f} |")
        say("")
        say(f"Ratios: store float32 crops / nibabel proxy crops = {r['float32'] / base:.2f}; raw / nibabel = {r['raw float16'] / base:.2f}.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
