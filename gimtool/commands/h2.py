"""SNP heritability by LD score regression (from sumstats) or GREML (from genotypes).

--method ldsc (default): LD score regression as LDSC v1 computes it, on each --sumstats file.
LD scores come from a reference fileset (--bfile REF; written to <out>.l2.ldscore.gz, .l2.M,
.l2.M_5_50 in LDSC's format) or are reused (--ref-ld PREFIX). --backend ldsc runs the user's
ldsc.py/munge_sumstats.py instead of the built-in regression.

--method greml: REML heritability of every --pheno column from the genotypes of --bfile, with one
GRM and one eigendecomposition for all phenotypes (--grm-out / --grm save and reuse them).
--backend bolt-reml runs `bolt --reml` per phenotype instead.

Writes <out>.h2.tsv (one row per phenotype), <out>.h2.summary.tsv (mean and sd over phenotypes)
and <out>.log.

  gimtool h2 --bfile REF --sumstats gwas.PC1.sumstats.gz,gwas.PC2.sumstats.gz --out h2
  gimtool h2 --method greml --bfile COHORT --pheno pcs.tsv --covar covar.tsv --out h2g
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from gimtool.commands import _options as options


def _intercept(value: str) -> float | None:
    from gimtool.errors import OptionError

    if value == "free":
        return None
    try:
        return float(value)
    except ValueError:
        raise OptionError(f"--intercept {value}: expected 'free' or a number (usually 1)") from None


def command(
    out: options.Out,
    method: Annotated[str, typer.Option("--method", help="ldsc (LD score regression on sumstats) or greml (REML on genotypes).")] = "ldsc",
    backend: Annotated[str, typer.Option("--backend", help="builtin, ldsc (ldsc.py on PATH; --method ldsc) or bolt-reml (bolt --reml; --method greml).")] = "builtin",
    sumstats: Annotated[Optional[List[str]], typer.Option("--sumstats", help="Sumstats file(s) (gimtool, BOLT-LMM or PLINK 2): repeat, separate with commas, or list as arguments.")] = None,
    files: Annotated[Optional[List[str]], typer.Argument(help="More sumstats files (e.g. a shell glob).", show_default=False)] = None,
    bfile: Annotated[Optional[str], typer.Option("--bfile", help="ldsc: reference fileset for LD scores; greml: the cohort's genotypes.")] = None,
    pfile: Annotated[Optional[str], typer.Option("--pfile", help="As --bfile, from a PLINK 2 fileset (.pgen/.pvar/.psam; hardcalls).")] = None,
    ref_ld: Annotated[Optional[str], typer.Option("--ref-ld", help="Reuse LD scores: prefix of <prefix>.l2.ldscore.gz (or LDSC's per-chromosome files).")] = None,
    w_ld: Annotated[Optional[str], typer.Option("--w-ld", help="Regression-weight LD scores (default: the reference LD scores).")] = None,
    ld_wind_cm: Annotated[Optional[float], typer.Option("--ld-wind-cm", help="LD window in cM (default 1).")] = None,
    ld_wind_kb: Annotated[Optional[float], typer.Option("--ld-wind-kb", help="LD window in kb instead of cM.")] = None,
    intercept: Annotated[str, typer.Option("--intercept", help="free (two-step estimator, as LDSC) or a fixed value such as 1.")] = "free",
    n_samples: Annotated[Optional[int], typer.Option("--n-samples", help="Sample size for sumstats without an N column (BOLT-LMM).")] = None,
    use_m: Annotated[bool, typer.Option("--use-all-m/--use-m-5-50", help="M for h2: all SNPs, or (LDSC's default) those with MAF > 5%.")] = False,
    pheno: Annotated[Optional[str], typer.Option("--pheno", help="greml: phenotype table (FID IID name...).")] = None,
    pheno_name: options.PhenoName = None,
    covar: options.Covar = None,
    covar_name: options.CovarName = None,
    input_missing_phenotype: options.MissingPheno = -9,
    grm_out: Annotated[Optional[str], typer.Option("--grm-out", help="greml: save the GRM and its eigendecomposition to this .npz.")] = None,
    grm: Annotated[Optional[str], typer.Option("--grm", help="greml: reuse a GRM saved with --grm-out instead of reading genotypes.")] = None,
    max_n: Annotated[int, typer.Option("--max-n", help="greml: refuse more people than this (the GRM and its eigenvectors are 16 N^2 bytes).")] = 20_000,
    chunk_snps: Annotated[int, typer.Option("--chunk-snps", min=1, help="SNPs per chunk when streaming genotypes (as gwas --chunk-snps; --chunk-size still accepted with a warning).")] = 2000,
    keep: options.Keep = None,
    remove: options.Remove = None,
    threads: options.Threads = 1,
    device: options.Device = "cpu",
) -> None:
    options.set_threads(threads)
    from gimtool.pipelines import h2

    fixed = _intercept(intercept) if method == "ldsc" else None
    paths = options.split_list(sumstats) + options.split_list(files)
    h2.run(out, method, backend, paths, bfile, ref_ld, w_ld, ld_wind_cm, ld_wind_kb, fixed, n_samples, use_m, pheno,
           pheno_name, covar, covar_name, grm_out, grm, max_n, chunk_snps, keep, remove, threads, device,
           input_missing_phenotype, pfile)
