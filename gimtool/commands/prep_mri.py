"""Conform T1 scans to MNI space and build the image store that train and embed read.

Each NIfTI (.nii/.nii.gz; 3D, or 4D with one volume; any orientation, integer or float) is placed
on the FSL MNI152 grid (182x218x182 at --voxel 1, 91x109x91 at --voxel 2) through its affine,
or through an FSL FLIRT matrix (--flirt-mat or a MAT column, FSL's scaled-voxel convention, with
--ref the FLIRT reference; default FSL's MNI152 grid), trilinearly; then z-scored inside the
brain (--mask, else non-zero voxels) after percentile clipping (outside the brain: the z of the
low clipping point), and stored as float16 or uint8.

Writes STORE/ (manifest.tsv with QC columns, the volume array, meta.json, failed.tsv, qc.png,
mean.nii.gz, nifti/ with --write-nifti) and STORE.log.

Scans come from a list (--images; a PATH may be ARCHIVE.zip:MEMBER, read without extracting),
a folder (--dir, --pattern) or a BIDS dataset (--bids, --session, --bids-ids).

Example: gimtool prep-mri --images images.tsv --voxel 2 --threads 2 --out cohort.img
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    out: options.Out,
    images: Annotated[Optional[Path], typer.Option("--images", help="Image list: FID IID PATH [MAT] per line (header 'FID IID PATH [MAT]' optional; relative paths are relative to the list).")] = None,
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Folder of scans; with --pattern, files are matched by name, else DIR/images.tsv is read.")] = None,
    bids: Annotated[Optional[Path], typer.Option("--bids", help="BIDS dataset: one sub-*/[ses-*/]anat/*_T1w.nii[.gz] per subject; FID = IID = subject label unless --bids-ids.")] = None,
    session: Annotated[Optional[str], typer.Option("--session", help="--bids: take the T1w scan of this session (ses-LABEL) when subjects have several.")] = None,
    bids_ids: Annotated[Optional[Path], typer.Option("--bids-ids", help="--bids: table with columns participant_id FID IID mapping subject labels to sample IDs (unlisted subjects are left out).")] = None,
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
    shard: options.Shard = None,
) -> None:
    from gimtool.pipelines import prep_mri

    prep_mri.run(out, images, directory, pattern, voxel, flirt_mat, ref, mask, dtype, interp, antialias, clip,
                 write_nifti, qc_threshold, threads, resume, allow_failures, shard=shard, bids=bids,
                 session=session, bids_ids=bids_ids)
