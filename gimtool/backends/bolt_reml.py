"""BOLT-REML (`bolt --reml`) run from PATH, one phenotype at a time.

BOLT's multi-phenotype `--reml` fits a multivariate model (genetic correlations included); gimtool's
GREML fits each phenotype on its own, so for a like-for-like comparison BOLT is run once per
phenotype. The h2 and its SE are read from BOLT's output ("h2g (1,1): 0.53 (0.02)").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gimtool.backends import find_program, run_program
from gimtool.errors import GimtoolError


@dataclass
class BoltRemlResult:
    h2: float
    h2_se: float
    n: int


def parse_bolt_reml(text: str, where: str = "bolt output") -> BoltRemlResult:
    m = re.search(r"h2g \(1,1\): (\S+) \((\S+)\)", text)
    if m is None:
        raise GimtoolError(f"{where}: no 'h2g (1,1): H2 (SE)' line in BOLT's output")
    n = re.search(r"Number of indivs with no missing phenotype\(s\) to use: (\d+)", text)
    return BoltRemlResult(float(m.group(1)), float(m.group(2)), int(n.group(1)) if n else -1)


def run_bolt_reml(
    bfile: str, pheno_file: str, pheno_col: str, covar_file: str | None = None, covar_cols: Sequence[str] = (),
    remove_file: str | None = None, threads: int = 1, log_path: str | Path | None = None, extra: Sequence[str] = (),
) -> BoltRemlResult:
    """`bolt --reml` for one phenotype column; covariates are quantitative (--qCovarCol)."""
    bolt = find_program("bolt")
    cmd = [bolt, f"--bfile={bfile}", f"--phenoFile={pheno_file}", f"--phenoCol={pheno_col}", "--reml",
           f"--numThreads={threads}"]
    if covar_file is not None:
        cmd.append(f"--covarFile={covar_file}")
        cmd += [f"--qCovarCol={c}" for c in covar_cols]
    if remove_file is not None:
        cmd.append(f"--remove={remove_file}")
    cmd += list(extra)
    p = run_program(cmd, log_path=log_path)
    return parse_bolt_reml(p.stdout, str(log_path or "bolt output"))
