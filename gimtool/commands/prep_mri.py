"""Conform T1 scans to MNI space and build the image store that train and embed read.

Each NIfTI (.nii/.nii.gz; 3D, or 4D with one volume; any orientation, integer or float) is placed
on the FSL MNI152 grid (182x218x182 at --voxel 1, 91x109x91 at --voxel 2) through its affine,
or through an FSL FLIRT matrix (--flirt-mat or a MAT column, FSL's scaled-voxel convention, with
--ref the FLIRT reference; default FSL's MNI152 grid), trilinearly; then z-scored inside the
brain (--mask, else non-zero voxels) after percentile clipping (outside the brain: the z of the
low clipping point), and stored as float16 or uint8.

Writes STORE/ (manifest.tsv with QC columns, the volume array, meta.json, failed.tsv, qc.png,
mean.nii.gz, nifti/ with --write-nifti) and STORE.log.

Example: gimtool prep-mri --images images.tsv --voxel 2 --threads 2 --out cohort.img
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options
from gimtool.errors import InputError

N_QC_FIGURE = 3  # outliers shown in qc.png beside the mean image


def command(
    out: options.Out,
    images: Annotated[Optional[Path], typer.Option("--images", help="Image list: FID IID PATH [MAT] per line (header 'FID IID PATH [MAT]' optional; relative paths are relative to the list).")] = None,
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Folder of scans; with --pattern, files are matched by name, else DIR/images.tsv is read.")] = None,
    pattern: Annotated[Optional[str], typer.Option("--pattern", help="File pattern under --dir with {IID} (and optionally {FID}), e.g. '{IID}_T1.nii.gz'. Without {FID}, FID = IID.")] = None,
    voxel: Annotated[float, typer.Option("--voxel", min=0.5, help="Target voxel size in mm on the MNI152 field of view (1: 182x218x182; 2: 91x109x91; 4: 46x55x46).")] = 1.0,
    flirt_mat: Annotated[Optional[str], typer.Option("--flirt-mat", help="FSL FLIRT matrix (scan -> --ref) for every scan, or a pattern with {IID}/{FID} (relative to --dir, else to the working directory); a MAT column in the list takes precedence.")] = None,
    ref: Annotated[Optional[Path], typer.Option("--ref", help="The FLIRT reference image the matrices were made for (header only is read). Default: FSL's MNI152_T1_1mm grid.")] = None,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Brain mask in MNI space (NIfTI); z-scoring uses its voxels. Default: each scan's non-zero voxels.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Stored type: float16, or uint8 (z = code/32 - 4; scale in meta.json).")] = "float16",
    interp: Annotated[str, typer.Option("--interp", help="Interpolation: linear (trilinear), cubic or nearest.")] = "linear",
    antialias: Annotated[bool, typer.Option("--antialias/--no-antialias", help="Gaussian pre-smoothing when the target grid is coarser than the scan.")] = True,
    clip: Annotated[str, typer.Option("--clip", help="Percentiles (inside the mask) to clip intensities to before z-scoring.")] = "0.5,99.5",
    write_nifti: Annotated[bool, typer.Option("--write-nifti", help="Also write each conformed volume as STORE/nifti/FID_IID.nii.gz.")] = False,
    qc_threshold: Annotated[float, typer.Option("--qc-threshold", help="Flag scans whose correlation with the cohort mean image is below this.")] = 0.8,
    threads: options.Threads = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Keep volumes of an interrupted run (or of an existing STORE) and process only the rest.")] = False,
    allow_failures: Annotated[bool, typer.Option("--allow-failures", help="Exit 0 even when some scans failed (they are listed in STORE/failed.tsv).")] = False,
) -> None:
    from gimtool.runlog import RunLog

    with RunLog(out, "prep-mri") as log:
        _run(log, out, images, directory, pattern, voxel, flirt_mat, ref, mask, dtype, interp, antialias, clip,
             write_nifti, qc_threshold, threads, resume, allow_failures)


def _parse_clip(clip: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in clip.split(","))
    except ValueError:
        raise InputError(f"--clip {clip!r}: expected two percentiles 'LOW,HIGH', e.g. 0.5,99.5") from None
    if not 0 <= lo < hi <= 100:
        raise InputError(f"--clip {clip!r}: expected 0 <= LOW < HIGH <= 100")
    return lo, hi


def _run(log, out, images, directory, pattern, voxel, flirt_mat, ref, mask, dtype, interp, antialias, clip,
         write_nifti, qc_threshold, threads, resume, allow_failures) -> None:
    import numpy as np
    import polars as pl
    from tqdm import tqdm

    from gimtool.imaging.geometry import fsl_mni152_reference, world_voxel_map
    from gimtool.imaging.prep import ConformConfig, conform_many
    from gimtool.imaging.resample import resample
    from gimtool.imaging.grids import mni_grid
    from gimtool.io.imagestore import StoreWriter
    from gimtool.io.nifti import load_header, load_volume, read_flirt_mat, read_image_list, scan_image_dir
    from gimtool.conventions import IMAGE_COHORT_QC_COLS, IMAGE_FAILED_COLS, IMAGE_QC_COLS

    # -- arguments -------------------------------------------------------------------------------
    if dtype not in ("float16", "uint8"):
        raise InputError(f"--dtype {dtype}: expected float16 or uint8")
    orders = {"linear": 1, "cubic": 3, "nearest": 0}
    if interp not in orders:
        raise InputError(f"--interp {interp}: expected linear, cubic or nearest")
    lohi = _parse_clip(clip)
    if (images is None) == (directory is None):
        raise InputError("give the scans with exactly one of --images LIST or --dir DIR [--pattern ...]")
    if pattern is not None and directory is None:
        raise InputError("--pattern needs --dir")
    if images is not None:
        log.input("image list", images)
        todo = read_image_list(images)
    elif pattern is not None:
        log.input("image folder", directory)
        todo = scan_image_dir(directory, pattern)
        if "{FID}" not in pattern:
            log.info("--pattern has no {FID}: FID set to the IID")
    else:
        lst = Path(directory) / "images.tsv"
        if not lst.is_file():
            raise InputError(f"{directory}: --dir without --pattern reads DIR/images.tsv, which is missing")
        log.input("image list", lst)
        todo = read_image_list(lst)
    log.info(f"{todo.height} scans listed")

    shape, affine = mni_grid(voxel)
    log.info(f"target grid: MNI152 {voxel:g} mm, {shape[0]}x{shape[1]}x{shape[2]}, RAS voxel order, origin {affine[:3, 3].tolist()}")

    mat_is_pattern = flirt_mat is not None and ("{IID}" in flirt_mat or "{FID}" in flirt_mat)
    global_mat = None
    if flirt_mat is not None and not mat_is_pattern:
        log.input("FLIRT matrix", flirt_mat)
        global_mat = read_flirt_mat(flirt_mat)
    uses_mats = flirt_mat is not None or todo["MAT"].drop_nulls().len() > 0
    if ref is not None:
        h = load_header(ref)
        ref_geom = (h.shape, h.affine, h.zooms)
        log.input("FLIRT reference", ref)
    else:
        ref_geom = fsl_mni152_reference(1.0)
        if uses_mats:
            log.info("FLIRT reference: FSL MNI152_T1_1mm grid (182x218x182, sform -1 0 0 90 / 0 1 0 -126 / 0 0 1 -72)")
    if ref is not None and not uses_mats:
        log.warn("--ref is only used with FLIRT matrices (--flirt-mat or a MAT column); ignored")

    mask_arr = None
    if mask is not None:
        log.input("brain mask", mask)
        m = load_volume(mask)
        mask_arr = resample((m.data > 0).astype(np.float32), world_voxel_map(m.affine, affine), shape, order=1, antialias=False) >= 0.5
        if not mask_arr.any():
            raise InputError(f"{mask}: the mask has no voxel on the MNI target grid; expected a brain mask in MNI space")
        log.info(f"brain mask: {int(mask_arr.sum()):,} voxels on the target grid")

    tasks = []
    for k, (fid, iid, path, mat) in enumerate(todo.select("FID", "IID", "PATH", "MAT").iter_rows()):
        if mat is None and mat_is_pattern:
            mat = str(Path(directory or ".") / flirt_mat.format(FID=fid, IID=iid))
        tasks.append((k, fid, iid, path, mat))

    intensity = {"method": "zscore-in-mask", "mask": str(mask) if mask else "nonzero", "clip_percentiles": list(lohi),
                 "interp": interp, "antialias": antialias, "background": "z-score of the low clipping point"}
    writer = StoreWriter(out, shape, affine, (voxel,) * 3, IMAGE_QC_COLS, dtype=dtype,
                         scale=(1 / 32, -4.0) if dtype == "uint8" else None, intensity=intensity, resume=resume)
    try:
        if writer.resumed_from:
            log.info(f"--resume: continuing from {writer.resumed_from}")
        done = writer.done
        skip = [t for t in tasks if (t[1], t[2]) in done]
        tasks = [t for t in tasks if (t[1], t[2]) not in done]
        if resume:
            log.info(f"--resume: {len(skip)} listed scans already in the store, {len(tasks)} to process")
            listed = {(t[1], t[2]) for t in skip}
            extra = len(done - listed)
            if extra:
                log.info(f"--resume: {extra} volumes in the store are not in this list; they are kept")
        if write_nifti:
            writer.nifti_dir.mkdir(exist_ok=True)
        cfg = ConformConfig(shape=shape, affine=affine, dtype=dtype, order=orders[interp], antialias=antialias, clip=lohi,
                            mask=mask_arr, flirt_mat=global_mat, ref=ref_geom,
                            nifti_dir=str(writer.nifti_dir) if write_nifti else None)
        failed = []
        by_index = {t[0]: t for t in tasks}
        with log.timed("conform"):
            bar = tqdm(total=len(tasks), unit="scan", desc="prep-mri", file=sys.stderr, disable=None)
            for k, stored, qc in conform_many(tasks, cfg, threads=threads):
                _, fid, iid, path, _ = by_index[k]
                if stored is None:
                    failed.append({"FID": fid, "IID": iid, "SOURCE": path, "REASON": qc})
                    log.info(f"failed: {fid} {iid}: {qc}")
                else:
                    writer.append(stored, {"FID": fid, "IID": iid, "SOURCE": path, **qc})
                bar.update(1)
            bar.close()
        n = len(writer.rows)
        log.info(f"{n} volumes in the store, {len(failed)} scans failed")
        if n == 0:
            raise InputError(f"no scan could be used; first failure: {failed[0]['REASON']}" if failed else "no scans to process")

        # -- cohort QC -------------------------------------------------------------------------------
        with log.timed("cohort QC"):
            from gimtool.imaging.normalize import from_uint8
            from gimtool.imaging.qc import cohort_qc, qc_figure
            from gimtool.io.nifti import save_volume

            vols = writer.volumes()
            decode = from_uint8 if dtype == "uint8" else (lambda b: np.asarray(b, dtype=np.float32))
            mean, corr, flags, worst = cohort_qc(vols, qc_threshold, mask_arr, decode, N_QC_FIGURE)
            save_volume(writer.work / "mean.nii.gz", mean, affine)
            shown = []
            for i in worst:
                r = writer.rows[i]
                tag = "OUTLIER " if flags[i] else ""
                shown.append((f"{tag}{r['FID']} {r['IID']}\nr={corr[i]:.3f}", decode(vols[i])))
            fig = qc_figure(mean, shown)
            fig.savefig(writer.work / "qc.png", dpi=80)
            import matplotlib.pyplot as plt

            plt.close(fig)
            del vols
        qc_cols = list(IMAGE_QC_COLS)
        manifest = pl.DataFrame(
            {"FID": [str(r["FID"]) for r in writer.rows], "IID": [str(r["IID"]) for r in writer.rows],
             "SOURCE": [str(r["SOURCE"]) for r in writer.rows],
             **{c: [_num(r.get(c)) for r in writer.rows] for c in qc_cols}},
        ).with_columns(pl.Series(IMAGE_COHORT_QC_COLS[0], np.round(corr, 5)), pl.Series(IMAGE_COHORT_QC_COLS[1], flags.astype(np.int8)))
        manifest = manifest.with_columns(
            pl.col("BRAIN_VOXELS").cast(pl.Int64), pl.col("NONFINITE_VOXELS").cast(pl.Int64),
            *[pl.col(c).round_sig_figs(6) for c in ("RAW_MEAN", "RAW_SD", "RAW_P01", "RAW_P99")],
        )
        failed_df = pl.DataFrame(failed or None, schema={c: pl.Utf8 for c in IMAGE_FAILED_COLS})
        n_out = int(flags.sum())
        log.info(f"QC: correlation with the cohort mean image: median {np.nanmedian(corr):.3f}, min {np.nanmin(corr):.3f}; "
                 f"{n_out} below --qc-threshold {qc_threshold:g}")
        for i in np.flatnonzero(flags):
            r = writer.rows[i]
            log.warn(f"QC outlier: {r['FID']} {r['IID']} (correlation with the mean image {corr[i]:.3f}; {r['SOURCE']})")
        writer.finish(manifest, failed_df)
    finally:
        writer.close()
    log.output("image store", out)
    log.output("failed scans", f"{out}/failed.tsv ({len(failed)} rows)")
    log.output("QC figure", f"{out}/qc.png")
    if failed:
        msg = (f"{len(failed)} of {len(failed) + len(tasks) - len(failed)} scans failed (first: {failed[0]['REASON']}); "
               f"they are listed in {out}/failed.tsv, the store holds the other {n}")
        if not allow_failures:
            raise InputError(msg + "; use --allow-failures to accept this")
        log.warn(msg)


def _num(v):
    if v is None or v == "NA":
        return None
    return float(v)
