"""Association scan of many phenotypes at once (linear model of plink2 --glm), or BOLT-LMM.

Built-in (default): for every SNP and phenotype, y = intercept + covariates + beta*g, each
phenotype on its own non-missing samples and each SNP without the samples missing its call,
exactly as `plink2 --glm hide-covar`. Streams SNP chunks in bounded memory; --device cuda
runs the products on a GPU; --chunk K/N runs the K-th of N parts of the genome.
--backend bolt runs `bolt --lmm` once per phenotype instead.

Outputs: <out>.<PHENO>.sumstats.gz (SNP CHR BP GENPOS ALLELE1 ALLELE0 A1FREQ N BETA SE CHISQ P;
BETA per copy of ALLELE1 = the bim's 5th column), <out>.<PHENO>.manhattan.png and .qq.png,
<out>.summary.tsv (N, SNPs, lambda GC, min P, SNPs below 5e-8 and 5e-8/#phenotypes), <out>.log.

Example:
  gimtool gwas --bfile data/test --pheno pcs.tsv --covar covars.tsv --out gwas/pcs --threads 8
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options

Backend = Annotated[str, typer.Option("--backend", help="builtin (linear regression, plink2 --glm model) or bolt (BOLT-LMM --lmm).")]


def command(
    pheno: Annotated[Path, typer.Option("--pheno", help="Phenotype table: FID IID name... (tab/space separated, NA missing).")],
    out: options.Out,
    bfile: options.Bfile = None,
    pfile: options.Pfile = None,
    pheno_name: options.PhenoName = None,
    covar: options.Covar = None,
    covar_name: options.CovarName = None,
    input_missing_phenotype: options.MissingPheno = -9,
    backend: Backend = "builtin",
    maf: Annotated[float, typer.Option("--maf", min=0.0, max=0.5, help="Skip SNPs with minor allele frequency below this (over the samples used).")] = 0.0,
    chunk: Annotated[Optional[str], typer.Option("--chunk", help="K/N: test only the K-th of N contiguous parts of the SNPs (outputs concatenate to the whole).")] = None,
    pheno_transform: Annotated[str, typer.Option("--pheno-transform", help="none, or int: rank-based inverse normal transform after regressing out the covariates.")] = "none",
    precision: Annotated[str, typer.Option("--precision", help="double (exact to plink2's printed digits) or single (float32 products, ~1e-5 relative: faster on a GPU; on the CPU the compiled kernel computes in double either way).")] = "double",
    chunk_snps: Annotated[Optional[int], typer.Option("--chunk-snps", min=1, help="SNPs per streamed chunk (default: ~4 MB of packed .bed rows on the CPU).")] = None,
    ld_scores: Annotated[Optional[Path], typer.Option("--ld-scores", help="bolt: LD score table (--LDscoresFile); default --LDscoresUseChip.")] = None,
    genetic_map: Annotated[Optional[Path], typer.Option("--genetic-map", help="bolt: --geneticMapFile.")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Do not draw Manhattan and QQ plots.")] = False,
    keep: options.Keep = None,
    remove: options.Remove = None,
    device: options.Device = "cpu",
    threads: options.Threads = 1,
) -> None:
    options.set_threads(threads)  # before numpy loads its BLAS
    from gimtool.pipelines import gwas

    gwas.run(bfile, pheno, out, pheno_name, covar, covar_name, backend, maf, chunk, pheno_transform, precision,
             chunk_snps, ld_scores, genetic_map, not no_plots, keep, remove, device, threads, input_missing_phenotype,
             pfile)
