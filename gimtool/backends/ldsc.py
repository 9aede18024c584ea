"""LDSC (`ldsc.py --h2`, with `munge_sumstats.py`) run from the user's PATH.

LDSC is not a gimtool dependency: the user installs it (its Python 3 port needs pandas < 3,
bitarray < 3). gimtool rewrites each sumstats file into munge_sumstats.py's input, runs
`munge_sumstats.py` and `ldsc.py --h2` against LD scores in LDSC's format, and reads the numbers
back from LDSC's log.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.backends import find_program, run_program
from gimtool.errors import GimtoolError


@dataclass
class LdscBackendResult:
    h2: float
    h2_se: float
    intercept: float
    intercept_se: float
    mean_chisq: float
    lambda_gc: float
    ratio: float
    ratio_se: float
    n_snp: int
    n: int


def _num(pattern: str, text: str, log_path: Path, what: str) -> re.Match:
    m = re.search(pattern, text)
    if m is None:
        raise GimtoolError(f"{log_path}: could not find {what} in LDSC's log")
    return m


def parse_ldsc_log(text: str, log_path: Path) -> dict:
    """The numbers `ldsc.py --h2` prints: h2 (SE), lambda GC, mean chi2, intercept (SE), ratio (SE)."""
    h2, se = _num(r"Total Observed scale h2: (\S+) \((\S+)\)", text, log_path, "the h2 line").groups()
    out = dict(h2=float(h2), h2_se=float(se))
    out["lambda_gc"] = float(_num(r"Lambda GC: (\S+)", text, log_path, "Lambda GC").group(1))
    out["mean_chisq"] = float(_num(r"Mean Chi\^2: (\S+)", text, log_path, "Mean Chi^2").group(1))
    m = re.search(r"Intercept: (\S+) \((\S+)\)", text)
    if m:
        out["intercept"], out["intercept_se"] = float(m.group(1)), float(m.group(2))
    else:
        m = _num(r"Intercept: constrained to (\S+?)\.?\s", text, log_path, "the intercept")
        out["intercept"], out["intercept_se"] = float(m.group(1)), float("nan")
    m = re.search(r"Ratio: (\S+) \((\S+)\)", text)
    out["ratio"], out["ratio_se"] = (float(m.group(1)), float(m.group(2))) if m else (float("nan"), float("nan"))
    m = re.search(r"After merging with regression SNP LD, (\d+) SNPs remain", text)
    out["n_snp"] = int(m.group(1)) if m else -1
    return out


def run_ldsc_h2(sumstats: pl.DataFrame, ref_ld: str, w_ld: str, intercept: float | None, workdir: str | None = None,
                name: str = "pheno") -> LdscBackendResult:
    """Munge one sumstats frame (gimtool schema) and run `ldsc.py --h2` on it."""
    munge = find_program("munge_sumstats.py")
    ldsc = find_program("ldsc.py")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="gimtool_ldsc_") as d:
        d = Path(d)
        raw = d / f"{name}.txt"
        cols = sumstats.select("SNP", pl.col("ALLELE1").alias("A1"), pl.col("ALLELE0").alias("A2"), "N", "BETA", "P")
        cols.drop_nulls().write_csv(raw, separator="\t")
        run_program([munge, "--sumstats", raw, "--out", d / name, "--signed-sumstats", "BETA,0", "--p", "P",
                     "--N-col", "N", "--a1", "A1", "--a2", "A2", "--snp", "SNP"], log_path=d / "munge.out")
        cmd = [ldsc, "--h2", d / f"{name}.sumstats.gz", "--ref-ld", ref_ld, "--w-ld", w_ld, "--out", d / "h2"]
        if intercept is not None:
            cmd += ["--intercept-h2", str(intercept)]
        run_program(cmd, log_path=d / "ldsc.out")
        log_path = d / "h2.log"
        vals = parse_ldsc_log(log_path.read_text(), log_path)
    n = int(np.median(sumstats["N"].drop_nulls().to_numpy())) if sumstats["N"].null_count() < sumstats.height else -1
    return LdscBackendResult(n=n, **vals)
