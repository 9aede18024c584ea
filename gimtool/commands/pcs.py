"""Principal components of embeddings (fit on training subjects, applied to all) or of genotypes.

Embeddings: --pheno EMBEDDINGS.tsv --fit-keep TRAIN_IDS --n-pcs 10 --out P
  PCA (centered) fit only on the --fit-keep samples, so held-out people never shape the PCs, then
  applied to every row. Writes <out>.pcs.tsv (FID IID PC1..PCn), <out>.explained.tsv and
  <out>.scree.png, and <out>.loadings.tsv, which --apply LOADINGS reuses on new data.

Genotypes: --bfile PREFIX (or --pfile PREFIX) --n-pcs 10 --out P
  Ancestry PCs of the standardized genotypes of LD-pruned SNPs (--prune none uses the SNPs as
  given); exact below --exact-max-n samples, randomized SVD above. Writes <out>.eigenvec
  (#FID IID PC1..) and <out>.eigenval as PLINK 2 does, <out>.covar.tsv (the same PCs under a
  'FID IID PC1..' header, which bolt --covarFile, regenie --covarFile and plink2 --covar all
  read) and <out>.prune.in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    out: options.Out,
    n: Annotated[int, typer.Option("--n-pcs", min=1, help="Number of components (--n still accepted, with a warning).")] = 10,
    pheno: Annotated[Optional[Path], typer.Option("--pheno", help="Embeddings table FID IID dim... (embedding mode).")] = None,
    pheno_name: options.PhenoName = None,
    fit_keep: Annotated[Optional[Path], typer.Option("--fit-keep", help="Fit the PCA on these samples only (FID IID per line); default all.")] = None,
    apply: Annotated[Optional[Path], typer.Option("--apply", help="Apply the loadings of an earlier run (<out>.loadings.tsv) instead of fitting.")] = None,
    bfile: Annotated[Optional[str], typer.Option("--bfile", help="PLINK 1 fileset prefix (genotype mode).")] = None,
    pfile: Annotated[Optional[str], typer.Option("--pfile", help="PLINK 2 fileset prefix (genotype mode; hardcalls).")] = None,
    prune: Annotated[str, typer.Option("--prune", help="Genotype mode: pairwise (LD pruning) or none.")] = "pairwise",
    prune_window: Annotated[int, typer.Option("--prune-window", min=2, help="LD pruning window, SNPs.")] = 50,
    prune_step: Annotated[int, typer.Option("--prune-step", min=1, help="LD pruning step, SNPs.")] = 5,
    prune_r2: Annotated[float, typer.Option("--prune-r2", min=0.0, max=1.0, help="LD pruning r² threshold.")] = 0.2,
    maf: Annotated[float, typer.Option("--maf", min=0.0, max=0.5, help="Genotype mode: minimum MAF of SNPs used.")] = 0.01,
    method: Annotated[str, typer.Option("--method", help="Genotype mode: auto, exact or randomized.")] = "auto",
    exact_max_n: Annotated[int, typer.Option("--exact-max-n", help="auto: exact eigendecomposition up to this many samples.")] = 5000,
    guided_by: Annotated[Optional[Path], typer.Option("--guided-by", help="Embedding mode: a genotype store (prep-geno's PREFIX.geno). Instead of the directions of largest variance, fit the directions of the embeddings that carry association with these genotypes, on the --fit-keep people only (README, 'GIM in practice').")] = None,
    guided_p: Annotated[float, typer.Option("--guided-p", min=0.0, max=1.0, help="--guided-by: P threshold of the SNPs that shape the directions.")] = 1e-5,
    guided_rotation: Annotated[str, typer.Option("--guided-rotation", help="--guided-by: varimax (default: rotate the top eigenvectors within their span so that each follows one group of loci: README, 'GIM in practice') or none (the eigenvectors as they are).")] = "varimax",
    keep: options.Keep = None,
    remove: options.Remove = None,
    threads: options.Threads = 1,
    seed: options.Seed = 1,
) -> None:
    options.set_threads(threads)
    from gimtool.pipelines import pcs

    pcs.run(out, n, pheno, pheno_name, fit_keep, apply, bfile, prune, prune_window, prune_step, prune_r2, maf, method,
            exact_max_n, guided_by, guided_p, keep, remove, threads, seed, pfile, guided_rotation=guided_rotation)
