"""Principal components of embeddings (fit on training subjects, applied to all) or of genotypes.

Embeddings: --pheno EMBEDDINGS.tsv --fit-keep TRAIN_IDS --n 10 --out P
  PCA (centered) fit only on the --fit-keep samples, so held-out people never shape the PCs, then
  applied to every row. Writes <out>.pcs.tsv (FID IID PC1..PCn), <out>.explained.tsv and
  <out>.scree.png, and <out>.loadings.tsv, which --apply LOADINGS reuses on new data.
Genotypes: --bfile PREFIX --n 10 --out P
  Ancestry PCs of the standardized genotypes of LD-pruned SNPs (--prune none uses the SNPs as
  given); exact below --exact-max-n samples, randomized SVD above. Writes <out>.eigenvec
  (#FID IID PC1..) and <out>.eigenval as PLINK 2 does, ready for --covar, and <out>.prune.in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    out: options.Out,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of components.")] = 10,
    pheno: Annotated[Optional[Path], typer.Option("--pheno", help="Embeddings table FID IID dim... (embedding mode).")] = None,
    pheno_name: Annotated[Optional[list[str]], typer.Option("--pheno-name", help="Columns to use (repeat or comma-separate); default all.")] = None,
    fit_keep: Annotated[Optional[Path], typer.Option("--fit-keep", help="Fit the PCA on these samples only (FID IID per line); default all.")] = None,
    apply: Annotated[Optional[Path], typer.Option("--apply", help="Apply the loadings of an earlier run (<out>.loadings.tsv) instead of fitting.")] = None,
    bfile: Annotated[Optional[str], typer.Option("--bfile", help="PLINK 1 fileset prefix (genotype mode).")] = None,
    prune: Annotated[str, typer.Option("--prune", help="Genotype mode: pairwise (LD pruning) or none.")] = "pairwise",
    prune_window: Annotated[int, typer.Option("--prune-window", min=2, help="LD pruning window, SNPs.")] = 50,
    prune_step: Annotated[int, typer.Option("--prune-step", min=1, help="LD pruning step, SNPs.")] = 5,
    prune_r2: Annotated[float, typer.Option("--prune-r2", min=0.0, max=1.0, help="LD pruning r² threshold.")] = 0.2,
    maf: Annotated[float, typer.Option("--maf", min=0.0, max=0.5, help="Genotype mode: minimum MAF of SNPs used.")] = 0.01,
    method: Annotated[str, typer.Option("--method", help="Genotype mode: auto, exact or randomized.")] = "auto",
    exact_max_n: Annotated[int, typer.Option("--exact-max-n", help="auto: exact eigendecomposition up to this many samples.")] = 5000,
    keep: options.Keep = None,
    remove: options.Remove = None,
    threads: options.Threads = 1,
    seed: options.Seed = 1,
) -> None:
    options.set_threads(threads)
    import numpy as np
    import polars as pl

    from gimtool import pcs as lib
    from gimtool.io import figures as plots
    from gimtool.errors import InputError
    from gimtool.io.phenotypes import split_names
    from gimtool.conventions import PCA_EXPLAINED_COLS
    from gimtool.io.tables import read_table, select_samples, write_table
    from gimtool.runlog import RunLog
    from gimtool.io.atomic import atomic_path, atomic_write_text
    from gimtool.stats import pca

    if (pheno is None) == (bfile is None):
        raise InputError("give exactly one of --pheno (embeddings) or --bfile (genotypes)")

    def write_explained(eigenvalues, explained, log):
        df = pl.DataFrame({"PC": [f"PC{i + 1}" for i in range(len(eigenvalues))], "EIGENVALUE": eigenvalues,
                           "EXPLAINED": explained, "CUMULATIVE": np.cumsum(explained)}).select(PCA_EXPLAINED_COLS)
        with atomic_path(f"{out}.explained.tsv") as tmp:
            df.write_csv(tmp, separator="\t")
        plots.scree(explained, f"{out}.scree.png", title="explained variance")
        log.output("explained variance", f"{out}.explained.tsv")

    with RunLog(out, "pcs") as log:
        if pheno is not None:
            log.input("embeddings", pheno)
            if apply is not None:
                feats, mean, comps = lib.read_loadings(apply)
                log.input("loadings", apply)
                tab = read_table(pheno, feats, what="embedding")
            else:
                tab = read_table(pheno, split_names(pheno_name), what="embedding")
                feats = tab.columns[2:]
            x = tab.select(feats).to_numpy().astype(np.float64)
            complete = np.all(np.isfinite(x), axis=1)
            if (~complete).any():
                log.warn(f"{pheno}: {int((~complete).sum())} of {len(x)} samples have NA values; their PCs are NA")
            mask = select_samples(tab, keep, remove, log)
            if apply is None:
                fit_mask = mask & complete
                if fit_keep is not None:
                    fit_mask &= select_samples(tab, fit_keep, None, None)
                    log.input("fit samples", fit_keep)
                nfit = int(fit_mask.sum())
                if n > min(nfit, len(feats)):
                    raise InputError(f"--n {n}: at most min(fit samples {nfit}, columns {len(feats)}) components")
                fit = pca.fit_pca(x[fit_mask], n)
                mean, comps = fit.mean, fit.components
                log.info(f"PCA fit on {nfit} samples x {len(feats)} columns; applied to {int((mask & complete).sum())}")
                write_explained(fit.eigenvalues, fit.explained, log)
                with atomic_path(f"{out}.loadings.tsv") as tmp:
                    lib.loadings_frame(list(feats), fit).write_csv(tmp, separator="\t", float_precision=None)
                log.output("loadings", f"{out}.loadings.tsv")
            scores = np.full((len(x), comps.shape[0]), np.nan)
            use = mask & complete
            scores[use] = pca.apply_pca(x[use], mean, comps)
            write_table(lib.scores_frame(tab.filter(pl.Series(mask)), scores[mask]), f"{out}.pcs.tsv")
            log.output("PCs", f"{out}.pcs.tsv")
            return

        from gimtool.io.plink import Bfile

        if prune not in ("pairwise", "none"):
            raise InputError(f"--prune {prune}: expected pairwise or none")
        bf = Bfile(bfile)
        log.input("bfile", bf.bed_path)
        mask = select_samples(bf.fam.select("FID", "IID"), keep, remove, log)
        samples = None if mask.all() else np.flatnonzero(mask)
        with log.timed("genotype PCA"):
            res = lib.genotype_pcs(bf, n, samples=samples, maf=maf, prune=prune == "pairwise", window=prune_window,
                                   step=prune_step, r2=prune_r2, method=method, threads=threads, seed=seed,
                                   exact_max_n=exact_max_n, log=log)
        log.info(f"{res.method} PCA of {int(mask.sum())} samples x {len(res.snp_index)} SNPs")
        ids = bf.fam.filter(pl.Series(mask)).select("FID", "IID")
        vec = lib.scores_frame(ids, res.eigenvectors).rename({"FID": "#FID"})
        with atomic_path(f"{out}.eigenvec") as tmp:
            vec.write_csv(tmp, separator="\t")
        atomic_write_text(f"{out}.eigenval", "".join(f"{v:.6g}\n" for v in res.eigenvalues))
        atomic_write_text(f"{out}.prune.in", "".join(f"{s}\n" for s in bf.bim["SNP"].to_numpy()[res.snp_index]))
        # the GRM's trace is about N, so eigenvalue / N is the share of genotype variance
        plots.scree(res.eigenvalues / max(float(mask.sum()), 1.0), f"{out}.scree.png",
                    title="genotype PCs (eigenvalue / N)", cumulative=False)
        for suffix in ("eigenvec", "eigenval", "prune.in"):
            log.output(suffix, f"{out}.{suffix}")
