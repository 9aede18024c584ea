"""`gimtool prep-mri` as a function: :func:`run` conforms every scan onto the MNI target grid
(one file at a time, or many through a process pool), writes the image store and runs the
cohort QC. Between the files (:mod:`gimtool.io.nifti`, :mod:`gimtool.io.imagestore`) and the
kernels (:mod:`gimtool.imaging.geometry`, ``resample``, ``normalize``, ``qc``). A script calls::

    from gimtool.pipelines import prep_mri
    prep_mri.run("cohort.img", images="images.tsv", voxel=2, threads=2)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from gimtool.devices import set_threads
from gimtool.errors import GimtoolError, InputError, OptionError
from gimtool.imaging.geometry import flirt_voxel_map, world_voxel_map
from gimtool.imaging.normalize import UINT8_SCALE, brain_mask, to_uint8, zscore
from gimtool.imaging.resample import fov_coverage, resample, smooths


@dataclass
class ConformConfig:
    """How every scan is conformed. `mask` is on the target grid (bool) or None (non-zero voxels);
    `flirt_mat` applies to every scan without its own MAT; `ref` = (shape, affine, zooms) of the
    FLIRT reference image."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    dtype: str = "float16"
    order: int = 1
    antialias: bool = True
    clip: tuple[float, float] = (0.5, 99.5)
    mask: np.ndarray | None = None
    flirt_mat: np.ndarray | None = None
    ref: tuple | None = None
    nifti_dir: str | None = None
    mat_is_pattern: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, float] | None:
        return UINT8_SCALE if self.dtype == "uint8" else None


def nifti_name(fid: str, iid: str) -> str:
    return f"{fid}_{iid}.nii.gz"


def conform_file(fid: str, iid: str, path: str, mat_path: str | None, cfg: ConformConfig) -> tuple[np.ndarray, dict]:
    """Load, place on the target grid, normalise and encode one scan.

    Returns (volume in the store's dtype, shape cfg.shape; QC dict of IMAGE_QC_COLS).
    Raises InputError naming the file for anything wrong with it.
    """
    from gimtool.io.nifti import load_volume, read_flirt_mat, save_volume

    vol = load_volume(path)
    mat = read_flirt_mat(mat_path) if mat_path else cfg.flirt_mat
    if mat is not None:
        if cfg.ref is None:
            raise ValueError("a FLIRT matrix needs the reference grid (cfg.ref)")
        rshape, raff, rzooms = cfg.ref
        vmap = flirt_voxel_map(mat, vol.affine, vol.data.shape, vol.zooms, raff, rshape, rzooms, target_affine=cfg.affine)
    else:
        vmap = world_voxel_map(vol.affine, cfg.affine)
    cover = fov_coverage(vmap, vol.data.shape, cfg.shape)
    how = f"FLIRT matrix {mat_path or '(--flirt-mat)'}" if mat is not None else "its affine"
    if cover == 0.0:
        raise InputError(f"{path}: placed by {how}, the image does not overlap the target grid; expected an image in (or a matrix to) MNI space")
    out = resample(vol.data, vmap, cfg.shape, order=cfg.order, antialias=cfg.antialias)
    if cfg.mask is None and cfg.antialias and smooths(vmap):
        # the scan's own support, resampled without smoothing: pre-smoothing would otherwise
        # grow a rim of near-zero voxels around a skull-stripped brain
        support = resample((vol.data != 0).astype(np.float32), vmap, cfg.shape, order=0, antialias=False)
        mask = brain_mask(out, support)
    elif cfg.mask is None:
        mask = brain_mask(out)
    else:
        mask = brain_mask(out, cfg.mask)
    try:
        z, stats = zscore(out, mask, cfg.clip)
    except ValueError as e:
        raise InputError(f"{path}: after placing it on the target grid by {how}, {e}") from None
    stored = to_uint8(z, UINT8_SCALE) if cfg.dtype == "uint8" else z.astype(np.float16)
    if cfg.nifti_dir:
        save_volume(Path(cfg.nifti_dir) / nifti_name(fid, iid), stored, cfg.affine, scale=cfg.scale)
    qc = {**stats, "FOV_COVERAGE": round(cover, 4), "NONFINITE_VOXELS": vol.n_nonfinite}
    return stored, qc


# -- process pool ---------------------------------------------------------------------------------
_CFG: ConformConfig | None = None


def _init(cfg: ConformConfig) -> None:
    global _CFG
    _CFG = cfg
    set_threads(1)  # one scan per worker process: no thread pools inside it


def _work(task: tuple[int, str, str, str, str | None]):
    i, fid, iid, path, mat = task
    try:
        stored, qc = conform_file(fid, iid, path, mat, _CFG)  # type: ignore[arg-type]
        return i, stored, qc
    except GimtoolError as e:
        return i, None, str(e)
    except MemoryError:
        return i, None, f"{path}: out of memory while conforming"
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a cohort; the reason is kept
        return i, None, f"{path}: unexpected {type(e).__name__}: {e}"


def conform_many(tasks: list[tuple[int, str, str, str, str | None]], cfg: ConformConfig, threads: int = 1) -> Iterator[tuple]:
    """Yield (task index, stored volume or None, QC dict or failure reason) in task order.

    Tasks are (index, FID, IID, path, MAT path or None). With threads > 1 a process pool does
    the work; results still come back in task order, so the store's order is the list's.
    """
    if threads <= 1 or len(tasks) <= 1:
        _init(cfg)
        for t in tasks:
            yield _work(t)
        return
    import multiprocessing as mp

    # forkserver: a child forked from a parent whose thread pools (polars, BLAS) are running can
    # deadlock; the server process starts clean
    with mp.get_context("forkserver").Pool(processes=threads, initializer=_init, initargs=(cfg,)) as pool:
        yield from pool.imap(_work, tasks, chunksize=1)


# -- the whole command ---------------------------------------------------------------------------

N_QC_FIGURE = 3  # outliers shown in qc.png beside the mean image
INTERP_ORDERS = {"linear": 1, "cubic": 3, "nearest": 0}


def parse_clip(clip: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in clip.split(","))
    except ValueError:
        raise OptionError(f"--clip {clip!r}: expected two percentiles 'LOW,HIGH', e.g. 0.5,99.5") from None
    if not 0 <= lo < hi <= 100:
        raise OptionError(f"--clip {clip!r}: expected 0 <= LOW < HIGH <= 100")
    return lo, hi


def _bids_scans(root, session, ids_file, log):
    """The T1w scans of the BIDS dataset `root` (gimtool.io.bids), with what was left out logged."""
    from gimtool.io.bids import read_id_map, scan_bids

    log.input("BIDS dataset", root)
    id_map = None
    if ids_file is not None:
        log.input("BIDS ID map", ids_file)
        id_map = read_id_map(ids_file)
    todo, notes = scan_bids(root, session, id_map)
    for note in notes:
        log.info(f"--bids: {note}")
    if id_map is None:
        log.info("--bids: FID = IID = the subject label (--bids-ids FILE maps labels to FID IID)")
    return todo


def _scan_list(images, directory, pattern, log, bids=None, session=None, bids_ids=None):
    """The scans to conform (FID IID PATH MAT) from --images, or --dir with --pattern, or DIR/images.tsv,
    or --bids DIR."""
    from gimtool.io.nifti import read_image_list, scan_image_dir

    if sum(x is not None for x in (images, directory, bids)) != 1:
        raise InputError("give the scans with exactly one of --images LIST, --dir DIR [--pattern ...] or --bids DIR")
    if bids is None and (session is not None or bids_ids is not None):
        raise InputError("--session and --bids-ids go with --bids DIR")
    if bids is not None:
        return _bids_scans(bids, session, bids_ids, log)
    if pattern is not None and directory is None:
        raise InputError("--pattern needs --dir")
    if images is not None:
        log.input("image list", images)
        return read_image_list(images)
    if pattern is not None:
        log.input("image folder", directory)
        todo = scan_image_dir(directory, pattern)
        if "{FID}" not in pattern:
            log.info("--pattern has no {FID}: FID set to the IID")
        return todo
    lst = Path(directory) / "images.tsv"
    if not lst.is_file():
        raise InputError(f"{directory}: --dir without --pattern reads DIR/images.tsv, which is missing")
    log.input("image list", lst)
    return read_image_list(lst)


def _flirt_setup(flirt_mat: str | None, ref, todo, log):
    """(matrix path is a pattern, the matrix for every scan or None, FLIRT reference geometry)."""
    from gimtool.imaging.geometry import fsl_mni152_reference
    from gimtool.io.nifti import load_header, read_flirt_mat

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
        if not uses_mats:
            log.warn("--ref is only used with FLIRT matrices (--flirt-mat or a MAT column); ignored")
    else:
        ref_geom = fsl_mni152_reference(1.0)
        if uses_mats:
            log.info("FLIRT reference: FSL MNI152_T1_1mm grid (182x218x182, sform -1 0 0 90 / 0 1 0 -126 / 0 0 1 -72)")
    return mat_is_pattern, global_mat, ref_geom


def _target_mask(mask, shape, affine, log) -> np.ndarray | None:
    """--mask placed on the target grid (None without it)."""
    if mask is None:
        return None
    from gimtool.imaging.resample import mask_on_grid
    from gimtool.io.nifti import load_volume

    log.input("brain mask", mask)
    m = load_volume(mask)
    on_grid = mask_on_grid(m.data, m.affine, affine, shape)
    if not on_grid.any():
        raise InputError(f"{mask}: the mask has no voxel on the MNI target grid; expected a brain mask in MNI space")
    log.info(f"brain mask: {int(on_grid.sum()):,} voxels on the target grid")
    return on_grid


def _pending(todo, flirt_mat, mat_is_pattern: bool, directory, writer, resume: bool, log) -> list[tuple]:
    """Tasks (index, FID, IID, path, MAT) of the scans not yet in the store."""
    tasks = []
    for k, (fid, iid, path, mat) in enumerate(todo.select("FID", "IID", "PATH", "MAT").iter_rows()):
        if mat is None and mat_is_pattern:
            mat = str(Path(directory or ".") / flirt_mat.format(FID=fid, IID=iid))
        tasks.append((k, fid, iid, path, mat))
    if writer.resumed_from:
        log.info(f"--resume: continuing from {writer.resumed_from}")
    done = writer.done
    skip = [t for t in tasks if (t[1], t[2]) in done]
    tasks = [t for t in tasks if (t[1], t[2]) not in done]
    if resume:
        log.info(f"--resume: {len(skip)} listed scans already in the store, {len(tasks)} to process")
        extra = len(done - {(t[1], t[2]) for t in skip})
        if extra:
            log.info(f"--resume: {extra} volumes in the store are not in this list; they are kept")
    return tasks


def _conform_into(writer, tasks: list[tuple], cfg: ConformConfig, threads: int, log) -> list[dict]:
    """Conform the tasks into the store; returns the failures (IMAGE_FAILED_COLS rows)."""
    from gimtool import progress

    failed = []
    by_index = {t[0]: t for t in tasks}
    with log.timed("conform"):
        bar = progress.bar(total=len(tasks), unit="scan", desc="prep-mri")
        for k, stored, qc in conform_many(tasks, cfg, threads=threads):
            _, fid, iid, path, _ = by_index[k]
            if stored is None:
                failed.append({"FID": fid, "IID": iid, "SOURCE": path, "REASON": qc})
                log.info(f"failed: {fid} {iid}: {qc}")
            else:
                writer.append(stored, {"FID": fid, "IID": iid, "SOURCE": path, **qc})
            bar.update(1)
        bar.close()
    return failed


def _cohort_qc(writer, dtype: str, mask_arr, qc_threshold: float, affine, log) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of each volume with the cohort mean and the outlier flags; writes mean.nii.gz
    and qc.png (the mean beside the worst volumes) into the store."""
    import matplotlib.pyplot as plt

    from gimtool.imaging.normalize import from_uint8
    from gimtool.imaging.qc import cohort_qc, qc_figure
    from gimtool.io.nifti import save_volume

    with log.timed("cohort QC"):
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
        plt.close(fig)
    return corr, flags


def _num(v):
    return None if v is None or v == "NA" else float(v)


def _manifest(rows: list[dict], corr: np.ndarray, flags: np.ndarray):
    """The store's manifest: IDs, source, per-scan QC (IMAGE_QC_COLS) and cohort QC columns."""
    import polars as pl

    from gimtool.conventions import IMAGE_COHORT_QC_COLS, IMAGE_QC_COLS

    manifest = pl.DataFrame(
        {"FID": [str(r["FID"]) for r in rows], "IID": [str(r["IID"]) for r in rows],
         "SOURCE": [str(r["SOURCE"]) for r in rows], **{c: [_num(r.get(c)) for r in rows] for c in IMAGE_QC_COLS}},
    ).with_columns(pl.Series(IMAGE_COHORT_QC_COLS[0], np.round(corr, 5)),
                   pl.Series(IMAGE_COHORT_QC_COLS[1], flags.astype(np.int8)))
    return manifest.with_columns(
        pl.col("BRAIN_VOXELS").cast(pl.Int64), pl.col("NONFINITE_VOXELS").cast(pl.Int64),
        *[pl.col(c).round_sig_figs(6) for c in ("RAW_MEAN", "RAW_SD", "RAW_P01", "RAW_P99")],
    )


def _finish(writer, failed: list[dict], dtype, mask_arr, qc_threshold, affine, log, cohort: bool = True) -> None:
    """Cohort QC, the manifest and failed.tsv, and the store renamed into place. Without `cohort`
    (a part of a --shard run) the cohort QC is left to `gimtool merge`, which does it once over
    everyone anyway: CORR_MEAN is NA, QC_OUTLIER 0, no mean.nii.gz or qc.png."""
    import polars as pl

    from gimtool.conventions import IMAGE_FAILED_COLS

    failed_df = pl.DataFrame(failed or None, schema={c: pl.Utf8 for c in IMAGE_FAILED_COLS})
    if not cohort:
        log.info("cohort QC (mean image, correlations, outliers): left to gimtool merge, over all the parts")
        n = len(writer.rows)
        manifest = _manifest(writer.rows, np.full(n, np.nan), np.zeros(n, dtype=bool))
        writer.finish(manifest.with_columns(pl.col("CORR_MEAN").fill_nan(None)), failed_df)
        return
    corr, flags = _cohort_qc(writer, dtype, mask_arr, qc_threshold, affine, log)
    log.info(f"QC: correlation with the cohort mean image: median {np.nanmedian(corr):.3f}, min {np.nanmin(corr):.3f}; "
             f"{int(flags.sum())} below --qc-threshold {qc_threshold:g}")
    for i in np.flatnonzero(flags):
        r = writer.rows[i]
        log.warn(f"QC outlier: {r['FID']} {r['IID']} (correlation with the mean image {corr[i]:.3f}; {r['SOURCE']})")
    writer.finish(_manifest(writer.rows, corr, flags), failed_df)


def _check_choices(dtype: str, interp: str) -> None:
    if dtype not in ("float16", "uint8"):
        raise OptionError(f"--dtype {dtype}: expected float16 or uint8")
    if interp not in INTERP_ORDERS:
        raise OptionError(f"--interp {interp}: expected linear, cubic or nearest")


def _conform_store(log, out, todo, directory, voxel, flirt_mat, ref, mask, dtype, interp, antialias, lohi, write_nifti,
                   qc_threshold, threads, resume, cohort_qc: bool = True) -> tuple[list[dict], int, int]:
    """Conform the listed scans into the store at `out` and finish it: (failures, volumes stored,
    scans processed in this run). `cohort_qc` False: a --shard part, see _finish."""
    from gimtool.conventions import IMAGE_QC_COLS
    from gimtool.imaging.grids import mni_grid
    from gimtool.io.imagestore import StoreWriter

    shape, affine = mni_grid(voxel)
    log.info(f"target grid: MNI152 {voxel:g} mm, {shape[0]}x{shape[1]}x{shape[2]}, RAS voxel order, origin {affine[:3, 3].tolist()}")
    mat_is_pattern, global_mat, ref_geom = _flirt_setup(flirt_mat, ref, todo, log)
    mask_arr = _target_mask(mask, shape, affine, log)
    intensity = {"method": "zscore-in-mask", "mask": str(mask) if mask else "nonzero", "clip_percentiles": list(lohi),
                 "interp": interp, "antialias": antialias, "background": "z-score of the low clipping point"}
    writer = StoreWriter(out, shape, affine, (voxel,) * 3, IMAGE_QC_COLS, dtype=dtype,
                         scale=(1 / 32, -4.0) if dtype == "uint8" else None, intensity=intensity, resume=resume)
    try:
        tasks = _pending(todo, flirt_mat, mat_is_pattern, directory, writer, resume, log)
        if write_nifti:
            writer.nifti_dir.mkdir(exist_ok=True)
        cfg = ConformConfig(shape=shape, affine=affine, dtype=dtype, order=INTERP_ORDERS[interp], antialias=antialias,
                            clip=lohi, mask=mask_arr, flirt_mat=global_mat, ref=ref_geom,
                            nifti_dir=str(writer.nifti_dir) if write_nifti else None)
        failed = _conform_into(writer, tasks, cfg, threads, log)
        n = len(writer.rows)
        log.info(f"{n} volumes in the store, {len(failed)} scans failed")
        if n == 0:
            raise InputError(f"no scan could be used; first failure: {failed[0]['REASON']}" if failed else "no scans to process")
        _finish(writer, failed, dtype, mask_arr, qc_threshold, affine, log, cohort=cohort_qc)
    finally:
        writer.close()
    return failed, n, len(tasks)


def run(out: str, images=None, directory=None, pattern: str | None = None, voxel: float = 1.0,
        flirt_mat: str | None = None, ref=None, mask=None, dtype: str = "float16", interp: str = "linear",
        antialias: bool = True, clip: str = "0.5,99.5", write_nifti: bool = False, qc_threshold: float = 0.8,
        threads: int = 1, resume: bool = False, allow_failures: bool = False, shard: str | None = None,
        bids=None, session: str | None = None, bids_ids=None) -> int:
    """`gimtool prep-mri`: the image store at `out` (STORE/ with manifest, volumes, QC) and
    STORE.log; returns the number of volumes stored. Failed scans are an error unless
    `allow_failures`. `shard` "K/N": only the K-th of N contiguous parts of the list, into the
    store OUT.shardKofN (`gimtool merge --out OUT` joins the N parts). `bids`: a BIDS dataset instead
    of a list (`session` chooses the session, `bids_ids` maps subject labels to FID IID)."""
    from gimtool.pipelines import shards
    from gimtool.runlog import RunLog

    if shard is not None:
        out = shards.part_name(out, *shards.parse_part(shard, "--shard"))
    with RunLog(out, "prep-mri") as log:
        _check_choices(dtype, interp)
        lohi = parse_clip(clip)
        todo = _scan_list(images, directory, pattern, log, bids, session, bids_ids)
        log.info(f"{todo.height} scans listed")
        todo = shards.take_part(todo, shard, "--shard", "scans", log)
        failed, n, n_tasks = _conform_store(log, out, todo, directory, voxel, flirt_mat, ref, mask, dtype, interp,
                                            antialias, lohi, write_nifti, qc_threshold, threads, resume,
                                            cohort_qc=shard is None)
        log.output("image store", out)
        log.output("failed scans", f"{out}/failed.tsv ({len(failed)} rows)")
        if shard is None:
            log.output("QC figure", f"{out}/qc.png")
        if failed:
            msg = (f"{len(failed)} of {n_tasks} scans failed (first: {failed[0]['REASON']}); "
                   f"they are listed in {out}/failed.tsv, the store holds the other {n}")
            if not allow_failures:
                raise InputError(msg + "; use --allow-failures to accept this")
            log.warn(msg)
        log.summary(f"prep-mri: wrote the image store {out}/ with {n} conformed volumes "
                    + ("(manifest.tsv, QC in qc.png)" if shard is None else "(a part: gimtool merge joins the parts, then QC)")
                    + (f"; {len(failed)} failed scans in {out}/failed.tsv" if failed else ""))
    return n
