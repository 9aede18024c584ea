"""External programs (BOLT-LMM, LDSC, PLINK) run as subprocesses, found on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from gimtool.errors import GimtoolError, MissingProgramError

# program -> how to get it
INSTALL_HINTS = {
    "bolt": "install BOLT-LMM (Debian/Ubuntu: apt-get install bolt-lmm) or put `bolt` on PATH",
    "plink2": "install PLINK 2 (apt-get install plink2)",
    "plink1.9": "install PLINK 1.9 (apt-get install plink1.9)",
    "ldsc.py": "install LDSC (https://github.com/bulik/ldsc) and put ldsc.py and munge_sumstats.py on PATH",
    "munge_sumstats.py": "install LDSC (https://github.com/bulik/ldsc) and put munge_sumstats.py on PATH",
}


def find_program(name: str) -> str:
    """Absolute path of `name` on PATH, or a MissingProgramError that says how to install it."""
    path = shutil.which(name)
    if path is None:
        hint = INSTALL_HINTS.get(name, f"put {name} on PATH")
        raise MissingProgramError(f"{name} not found on PATH: {hint}")
    return path


class ProgramFailed(GimtoolError):
    """An external program exited non-zero; the message carries its own last error lines."""


def run_program(
    cmd: Sequence[str | os.PathLike],
    log_path: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run a program, keep its combined output in `log_path`, and surface its error when it fails."""
    cmd = [str(c) for c in cmd]
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log_path is not None:
        Path(log_path).write_text(p.stdout)
    if p.returncode != 0:
        lines = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
        err = [ln for ln in lines if "error" in ln.lower()] or lines[-3:]
        where = f" (full output in {log_path})" if log_path else ""
        raise ProgramFailed(f"{Path(cmd[0]).name} failed with exit code {p.returncode}: {' | '.join(err[-3:])}{where}")
    return p
