"""Genotype QC and preparation: filters, cM positions, a QC'd fileset and a genotype store.

Writes <out>.bed/.bim/.fam (genetic positions in cM in the bim), the sample-major genotype
store <out>.geno/ that `train` and `mi` read, and <out>.log.

Example:
  gimtool prep-geno --bfile raw/cohort --genetic-map genetic_map_GRCh37.txt --maf 0.01 --geno 0.05 \
      --hwe 1e-6 --remove qc_failed.ids --out data/cohort --threads 8
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options

# its outputs are closed and its threads joined when run() returns: the CLI exits without the
# interpreter's teardown (gimtool.cli._exit_now)
EXIT_WITHOUT_TEARDOWN = True


def command(
    out: options.Out,
    bfile: options.Bfile = None,
    pfile: options.Pfile = None,
    maf: Annotated[float, typer.Option(help="Minimum minor allele frequency (founders).", min=0.0, max=0.5)] = 0.01,
    geno: Annotated[float, typer.Option(help="Maximum SNP missing-call rate.", min=0.0, max=1.0)] = 0.1,
    mind: Annotated[Optional[float], typer.Option(help="Maximum sample missing-call rate (off by default).", min=0.0, max=1.0)] = None,
    hwe: Annotated[Optional[float], typer.Option(help="Hardy-Weinberg exact test p-value threshold (off by default).", min=0.0, max=1.0)] = None,
    chr: Annotated[str, typer.Option("--chr", help="Chromosomes to keep, e.g. '1-22' or '1-22,X'; others are dropped and counted in the log.")] = "1-22",
    keep: options.Keep = None,
    remove: options.Remove = None,
    extract: Annotated[Optional[Path], typer.Option(help="Keep only the SNPs listed (one ID per line).")] = None,
    exclude: Annotated[Optional[Path], typer.Option(help="Drop the SNPs listed (one ID per line).")] = None,
    genetic_map: Annotated[Optional[Path], typer.Option("--genetic-map", help="Genetic map (chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)), gzipped or not.")] = None,
    cm_per_mb: Annotated[float, typer.Option("--cm-per-mb", help="Rate used when the bim has no genetic positions and no map is given.", min=0.0)] = 1.0,
    threads: options.Threads = 1,
) -> None:
    from gimtool.pipelines import prep_geno

    prep_geno.run(bfile, out, maf, geno, mind, hwe, chr, keep, remove, extract, exclude, genetic_map, cm_per_mb,
                  threads, pfile)
