"""examples/quickstart.sh rerun after an interrupt or a failure redoes the step that did not
complete and every step after it, and skips only steps whose log says `status: ok`; `make clean`
removes everything that setup and the tests make.

The script runs against a stand-in `gimtool` that records its calls and writes the log a real
command writes (status ok), so the test takes a second."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_GIMTOOL = r"""#!/usr/bin/env bash
# records the subcommand and its --out, then writes the log the real command would
echo "$*" >> "$CALLS"
cmd=$1; out=
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
case $cmd in
  simulate) mkdir -p "$out"; log=$out/simulate.log ;;
  train) mkdir -p "$out"; log=$out/train.log ;;
  *) mkdir -p "$(dirname "$out")"; log=$out.log ;;
esac
printf 'gimtool v0 %s\n\nstatus: %s\n' "$cmd" "${FAKE_STATUS:-ok}" > "$log"
"""


def _fake_bin(tmp_path: Path) -> Path:
    """tmp_path/bin with the stand-in gimtool and a python that does nothing (summarize.py)."""
    b = tmp_path / "bin"
    if b.is_dir():
        return b
    b.mkdir()
    for name, text in (("gimtool", FAKE_GIMTOOL), ("python", "#!/bin/sh\nexit 0\n")):
        (b / name).write_text(text)
        (b / name).chmod((b / name).stat().st_mode | stat.S_IEXEC)
    return b


def _quickstart(tmp_path: Path, d: Path) -> list[str]:
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{_fake_bin(tmp_path)}:{os.environ['PATH']}", "CALLS": str(calls)}
    p = subprocess.run(["bash", str(ROOT / "examples" / "quickstart.sh"), str(d)], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 0, p.stderr
    if not calls.exists():
        return []
    # "SUBCOMMAND NAME", NAME the last part of its --out
    return [f"{ln.split()[0]} {ln.split('--out ')[1].split()[0].rsplit('/', 1)[-1]}" for ln in calls.read_text().splitlines()]


ALL = ["simulate cohort", "prep-geno geno", "prep-mri mri", "train gim", "embed embeddings", "pcs emb", "pcs guided",
       "pcs ancestry", "gwas gim", "gwas guided", "gwas truth", "clump gim", "clump guided", "clump truth", "h2 gim",
       "mi gim"]


@pytest.fixture()
def done(tmp_path):
    """A quick start folder in which every step completed."""
    d = tmp_path / "qs"
    assert _quickstart(tmp_path, d) == ALL
    return d


def test_a_complete_run_is_not_redone(tmp_path, done):
    assert _quickstart(tmp_path, done) == []


def test_failed_simulate_is_redone_with_everything_after_it(tmp_path, done):
    log = done / "cohort" / "simulate.log"
    log.write_text(log.read_text().replace("status: ok", "status: failed"))
    assert _quickstart(tmp_path, done) == ALL


def test_interrupted_step_is_redone_from_there(tmp_path, done):
    log = done / "gwas" / "truth.log"
    log.write_text(log.read_text().replace("status: ok", "status: interrupted"))
    assert _quickstart(tmp_path, done) == ALL[ALL.index("gwas truth"):]


def test_a_log_cut_short_counts_as_not_done(tmp_path, done):
    # a run killed hard (SIGKILL, a node failure) leaves a log without a status line
    (done / "mri.log").write_text("gimtool v0 prep-mri\nstarted: now\n")
    calls = _quickstart(tmp_path, done)
    assert calls == ALL[ALL.index("prep-mri mri"):]


def test_interrupted_training_resumes(tmp_path, done):
    log = done / "gim" / "train.log"
    log.write_text(log.read_text().replace("status: ok", "status: interrupted"))
    (done / "gim" / "last.pt").write_bytes(b"")
    _quickstart(tmp_path, done)
    train = [ln for ln in (tmp_path / "calls.txt").read_text().splitlines() if ln.startswith("train ")]
    assert len(train) == 1 and train[0].endswith("--resume")


def test_make_clean_removes_what_setup_and_tests_make(tmp_path):
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not on PATH")
    work = tmp_path / "repo"
    (work / "gimtool" / "__pycache__").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    made = [".venv/bin/python", "quickstart/cohort/simulate.log", ".pytest_cache/v/x", ".hypothesis/examples/x",
            "gimtool.egg-info/PKG-INFO", "build/lib/gimtool/_speedups.so", "gimtool/_speedups.cpython-311-x86_64-linux-gnu.so",
            "gimtool/__pycache__/cli.cpython-311.pyc"]
    for rel in made:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("x")
    (work / "gimtool" / "cli.py").write_text("kept")
    subprocess.run([make, "clean"], cwd=work, check=True, capture_output=True)
    left = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    assert left == ["Makefile", "gimtool/cli.py"]
