"""Shared fixtures.

Reference tools (plink2, plink1.9, bolt) and the BOLT-LMM example data are Debian packages that
`.ci/run` installs. Tests that need them skip only when the program is absent *and* the CI
variable is unset; in CI a missing tool is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

EXAMPLES_TAR = Path("/usr/share/doc/bolt-lmm/examples/examples.tar.xz")


def require_program(name: str) -> str:
    """Path of an external program; skip (outside CI) or fail (in CI) when it is absent."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not on PATH (install the Debian package; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def run(cmd: list[str], cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run a reference tool; fail the test with its output if it fails."""
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="session")
def eur_dir(tmp_path_factory) -> Path:
    """The BOLT-LMM example folder (EUR_subset: 379 people, 54,051 SNPs on chr 17-22, cM in Morgans)."""
    if not EXAMPLES_TAR.is_file():
        msg = f"{EXAMPLES_TAR} missing (Debian package bolt-lmm-example)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    d = tmp_path_factory.mktemp("bolt_examples")
    with tarfile.open(EXAMPLES_TAR) as tf:
        tf.extractall(d, filter="data")
    # the tar holds the files at its top level or in one folder; find EUR_subset.bed
    bed = next(d.rglob("EUR_subset.bed"))
    return bed.parent


@pytest.fixture(scope="session")
def eur_bfile(eur_dir) -> str:
    """Prefix of the EUR_subset fileset."""
    return str(eur_dir / "EUR_subset")


def gimtool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `gimtool` CLI (python -m gimtool) in a subprocess."""
    import sys

    p = subprocess.run([sys.executable, "-m", "gimtool", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        pytest.fail(f"gimtool {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p
