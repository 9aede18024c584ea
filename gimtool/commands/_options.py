"""Options shared by several commands, defined once (Typer types: only commands import this).

Each is an ``Annotated`` type to use in a command's signature::

    def command(out: options.Out, threads: options.Threads = 1, ...):

The device and thread helpers live in :mod:`gimtool.devices`; they are re-exported here so a
command reads ``options.set_threads(threads)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from gimtool.devices import resolve_device, set_threads  # noqa: F401  (re-exported for commands)

# the commands whose --out is a file prefix (train, simulate and prep-mri write a folder)
PREFIX_COMMANDS = ("prep-geno", "embed", "pcs", "gwas", "clump", "h2", "mi")


def out_prefix(ctx: typer.Context, value: str) -> str:
    """--out DIR/ (or an existing folder DIR) names the folder: the outputs are DIR/<command>.*,
    never hidden files such as DIR/.log."""
    if ctx.info_name in PREFIX_COMMANDS and value and (value.endswith(("/", os.sep)) or os.path.isdir(value)):
        return os.path.join(value, ctx.info_name)
    return value


Out = Annotated[str, typer.Option("--out", callback=out_prefix, help="Output prefix (PLINK-style); <out>.log is written beside the outputs. A folder (DIR/ or an existing DIR): DIR/<command>.*")]
Threads = Annotated[int, typer.Option("--threads", min=1, help="CPU threads to use.")]
Device = Annotated[str, typer.Option("--device", help="Compute device: cpu, cuda or cuda:N. Fails if CUDA is asked for and absent.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same outputs.")]
Keep = Annotated[Optional[Path], typer.Option("--keep", help="Keep only the samples listed in this file (FID IID per line).")]
Shard = Annotated[Optional[str], typer.Option("--shard", help="K/N: only the K-th of N contiguous parts of the people (a job array's task), written to OUT.shardKofN; `gimtool merge --out OUT` joins the parts into what one run writes.")]
Remove = Annotated[Optional[Path], typer.Option("--remove", help="Drop the samples listed in this file (FID IID per line).")]
Bfile = Annotated[Optional[str], typer.Option("--bfile", help="PLINK 1 fileset prefix (.bed/.bim/.fam); or give --pfile.")]
Pfile = Annotated[Optional[str], typer.Option("--pfile", help="PLINK 2 fileset prefix (.pgen/.pvar/.psam), read as hardcalls (as plink2 --make-bed); or give --bfile.")]


# Phenotypes and covariates: the same in gwas, h2, pcs and mi (read by gimtool.io.phenotypes).
PhenoName = Annotated[Optional[list[str]], typer.Option("--pheno-name", help="Phenotype columns to use (repeat or comma-separate); default all.")]
Covar = Annotated[Optional[list[Path]], typer.Option("--covar", help="Covariate table: FID IID name... (repeat to join several files by FID IID, e.g. age/sex and ancestry PCs).")]
MissingPheno = Annotated[int, typer.Option("--input-missing-phenotype", help="Phenotype and covariate value read as missing besides NA (PLINK 2's flag; default -9).")]
CovarName = Annotated[Optional[list[str]], typer.Option("--covar-name", help="Covariate columns to use (repeat or comma-separate); default all.")]


# Ranges: one style in every command, typer's usage error (exit 2). P thresholds lie in (0, 1].
P_RANGE = click.FloatRange(0.0, 1.0, min_open=True)
R2_RANGE = click.FloatRange(0.0, 1.0, max_open=True)


def split_list(values) -> list[str]:
    """Repeated and comma-separated values (`--sumstats A --sumstats B,C`) as one list."""
    return [x for v in values or [] for x in str(v).split(",") if x]
