"""Genotype QC and preparation: filters, cM positions, a QC'd fileset and a genotype store.

Writes <out>.bed/.bim/.fam (genetic positions in cM in the bim), the sample-major genotype
store <out>.geno/ that `train` and `mi` read, and <out>.log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    bfile: options.Bfile,
    out: options.Out,
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
    from gimtool.pipelines.prep_geno import QCFilters, run_qc, write_outputs
    from gimtool.io.plink import Bfile
    from gimtool.runlog import RunLog

    with RunLog(out, "prep-geno") as log:
        bf = Bfile(bfile)
        for p in (bf.bed_path, bf.bim_path, bf.fam_path):
            log.input("bfile", p)
        log.info(f"{bf.n_samples} samples and {bf.n_snps} SNPs read")
        f = QCFilters(
            maf=maf, geno=geno, mind=mind, hwe=hwe, chr=chr,
            keep=str(keep) if keep else None, remove=str(remove) if remove else None,
            extract=str(extract) if extract else None, exclude=str(exclude) if exclude else None,
            genetic_map=str(genetic_map) if genetic_map else None, cm_per_mb=cm_per_mb,
        )
        with log.timed("QC"):
            res = run_qc(bf, f, log, threads=threads)
        with log.timed("write"):
            write_outputs(bf, res, out, log, threads=threads)
        c = res.counts
        log.info(f"kept {c['samples_out']} of {c['samples_in']} samples and {c['snps_out']} of {c['snps_in']} SNPs")
        typer.echo(f"prep-geno: kept {c['samples_out']}/{c['samples_in']} samples, {c['snps_out']}/{c['snps_in']} SNPs -> {out}.bed, {out}.geno/", err=True)
