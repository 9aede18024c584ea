"""BOLT-LMM (`bolt --lmm`) as the association backend of `gimtool gwas --backend bolt`.

BOLT takes one `--phenoCol` per association run, so each phenotype is one BOLT process;
phenotypes run in parallel, splitting the thread budget between them. The Debian package ships
no LD-score table, so `--LDscoresUseChip` (LD scores computed from the genotypes) is used unless
a table is given. Each run keeps BOLT's own log (`<out>.<PHENO>.bolt.log`) and its statsFile is
rewritten into gimtool's sumstats schema by the caller.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gimtool.backends import find_program, run_program


@dataclass
class BoltRun:
    pheno: str
    stats: Path  # BOLT's --statsFile
    log: Path  # BOLT's combined output


@dataclass
class LmmOptions:
    """What every `bolt --lmm` run of one command shares besides the fileset and phenotype."""

    covar_file: str | os.PathLike | None = None
    covar_names: Sequence[str] = ()  # quantitative covariates
    ld_scores: str | os.PathLike | None = None  # --LDscoresFile; default --LDscoresUseChip
    genetic_map: str | os.PathLike | None = None
    extra: Sequence[str] = ()  # more bolt arguments, appended as given


def bolt_command(bolt: str, bfile: str, pheno_file: str | os.PathLike, pheno: str, stats: str | os.PathLike,
                 threads: int = 1, opts: LmmOptions = LmmOptions()) -> list[str]:
    """The `bolt --lmm` command line for one phenotype (quantitative covariates only)."""
    cmd = [
        bolt,
        f"--bfile={bfile}",
        f"--phenoFile={pheno_file}",
        f"--phenoCol={pheno}",
        "--lmm",
        f"--numThreads={threads}",
        f"--statsFile={stats}",
    ]
    if opts.covar_file is not None and opts.covar_names:
        cmd.append(f"--covarFile={opts.covar_file}")
        cmd += [f"--qCovarCol={c}" for c in opts.covar_names]
    cmd.append(f"--LDscoresFile={opts.ld_scores}" if opts.ld_scores else "--LDscoresUseChip")
    if opts.genetic_map:
        cmd.append(f"--geneticMapFile={opts.genetic_map}")
    return cmd + list(opts.extra)


def run_bolt_lmm(bfile: str, pheno_file: str | os.PathLike, phenos: list[str], out: str, threads: int = 1,
                 opts: LmmOptions = LmmOptions()) -> list[BoltRun]:
    """Run `bolt --lmm` for each phenotype, at most `threads` threads in total.

    Files: `<out>.<PHENO>.bolt.stats` and `<out>.<PHENO>.bolt.log`. A failing run raises
    ProgramFailed carrying BOLT's own error line; a missing `bolt` raises MissingProgramError.
    """
    bolt = find_program("bolt")
    parallel = max(1, min(len(phenos), threads))
    per_run = max(1, threads // parallel)

    def one(ph: str) -> BoltRun:
        stats = Path(f"{out}.{ph}.bolt.stats")
        log = Path(f"{out}.{ph}.bolt.log")
        cmd = bolt_command(bolt, bfile, pheno_file, ph, stats, per_run, opts)
        run_program(cmd, log_path=log)
        return BoltRun(ph, stats, log)

    with cf.ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(one, ph) for ph in phenos]
        runs = []
        for f in futures:
            runs.append(f.result())  # re-raises the first failure, BOLT's message included
    return runs
