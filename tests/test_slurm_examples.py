"""examples/slurm/: each launch script passes `bash -n`, and its dry run (DRY_RUN=1) prints
commands that work. The prep-mri and gwas tasks and merges it prints are run here, on a tiny
simulated cohort, and give what one run gives; the torchrun line is parsed by torchrun's own
argument parser and its gimtool part by gimtool's command line (nothing is launched: no GPU)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from gimtool.cli import main
from tests.pipelines.test_shards import cohort, files_of  # noqa: F401  (cohort: the fixture)

SLURM = Path(__file__).resolve().parents[1] / "examples" / "slurm"
SCRIPTS = ("prep_mri_array.sh", "gwas_array.sh", "train_torchrun.sh")


def dry_run(script: str, **env) -> list[list[str]]:
    """The commands a dry run prints, split as the shell would (comment lines left out)."""
    p = subprocess.run(["bash", SLURM / script], capture_output=True, text=True,
                       env={**os.environ, "DRY_RUN": "1", **{k: str(v) for k, v in env.items()}})
    assert p.returncode == 0, p.stderr
    return [shlex.split(ln) for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("#")]


def gimtool_lines(lines):
    return [ln[1:] for ln in lines if ln[0] == "gimtool"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    p = subprocess.run(["bash", "-n", SLURM / script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # a missing required setting is one clear line, not a half-submitted array
    p = subprocess.run(["bash", SLURM / script], capture_output=True, text=True, env={"PATH": os.environ["PATH"], "DRY_RUN": "1"})
    assert p.returncode != 0 and "set " in p.stderr


def test_prep_mri_array_dry_run_runs(cohort, tmp_path):  # noqa: F811
    lines = dry_run("prep_mri_array.sh", IMAGES=cohort / "images.tsv", OUT=tmp_path / "arr" / "cohort.img", N=3,
                    THREADS=1, PREP_ARGS="--voxel 4 --qc-threshold 0.85")
    array, merge_job = lines[0], lines[1]
    assert array[0] == "sbatch" and "--array=1-3%50" in array and array[-1] == "task"
    assert merge_job[0] == "sbatch" and "--dependency=afterok:JOB_array" in merge_job and merge_job[-1] == "merge"
    cmds = gimtool_lines(lines)
    assert [c[0] for c in cmds] == ["prep-mri"] * 3 + ["merge"]
    assert [c[c.index("--shard") + 1] for c in cmds[:3]] == ["1/3", "2/3", "3/3"]
    assert cmds[3][-2:] == ["--qc-threshold", "0.85"]  # the merge redoes the cohort QC with the tasks' threshold
    for c in cmds:
        assert main(c) == 0, c
    one = tmp_path / "one.img"
    assert main(["prep-mri", "--images", str(cohort / "images.tsv"), "--out", str(one), "--voxel", "4",
                 "--qc-threshold", "0.85", "--allow-failures"]) == 0
    assert files_of(tmp_path / "arr" / "cohort.img") == files_of(one)
    assert not (tmp_path / "arr" / "slurm-logs").exists()  # a dry run creates nothing


def test_gwas_array_dry_run_runs(cohort, tmp_path):  # noqa: F811
    extra = f"--covar {cohort / 'covariates.tsv'} --covar-name age,sex"
    lines = dry_run("gwas_array.sh", BFILE=cohort / "geno", PHENO=cohort / "truth" / "factors.tsv", OUT=tmp_path / "g" / "f",
                    N=4, THREADS=1, GWAS_ARGS=extra)
    cmds = gimtool_lines(lines)
    assert [c[0] for c in cmds] == ["gwas"] * 4 + ["merge"]
    for c in cmds:
        assert main(c) == 0, c
    assert main(["gwas", "--bfile", str(cohort / "geno"), "--pheno", str(cohort / "truth" / "factors.tsv"), *extra.split(),
                 "--out", str(tmp_path / "one")]) == 0
    for ph in ("F1", "F2"):
        for suffix in ("sumstats.gz", "manhattan.png", "qq.png"):
            assert (tmp_path / "g" / f"f.{ph}.{suffix}").read_bytes() == (tmp_path / f"one.{ph}.{suffix}").read_bytes()


def test_train_torchrun_dry_run_parses(tmp_path):
    import typer.main
    from torch.distributed.run import get_args_parser

    from gimtool.cli import app

    env = dict(IMAGES="cohort.img", GENO="geno.geno", OUT=tmp_path / "run", NODES=3, GPUS=8, CPUS=64,
               TRAIN_ARGS="--keep train.ids --val-keep val.ids --method gim --epochs 100 --batch-size 48")
    lines = dry_run("train_torchrun.sh", **env)
    sbatch, srun = lines
    assert sbatch[0] == "sbatch" and "--nodes=3" in sbatch and "--gpus-per-node=8" in sbatch and sbatch[-1] == "run"
    assert srun[0] == "srun" and "torchrun" in srun
    tr = get_args_parser().parse_args(srun[srun.index("torchrun") + 1:])
    assert (tr.nnodes, tr.nproc_per_node, tr.module, tr.training_script) == ("3", "8", True, "gimtool")
    assert tr.rdzv_backend == "c10d" and tr.rdzv_endpoint == "NODE0:29500"
    args = tr.training_script_args
    assert args[0] == "train" and "--resume" not in args
    group = typer.main.get_command(app)
    ctx = group.make_context("gimtool", list(args))
    sub = group.get_command(ctx, "train")
    params = sub.make_context("train", list(args[1:])).params  # option names, types and required ones as gimtool checks them
    assert (params["device"], params["threads"], params["batch_size"], params["method"]) == ("cuda", 8, 48, "gim")
    # a run folder with last.pt: the job continues it
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    assert dry_run("train_torchrun.sh", **env)[1][-1] == "--resume"
