"""Held-out mutual information between representations and genotypes (JSE estimate, paper appendix A).

For each --pheno file (embeddings or their PCs: FID IID z1..zK) a fresh JSE critic (an MLP on the
representation x the genetic encoder on the genotypes of --geno) is trained on part of the
people (estimator-train) until its loss on the rest (estimator-validation, --val-frac) has not
improved for --patience epochs. The estimate is 2 ln 2 - converged JSE loss (nats; 0 = no
information, at most 2 ln 2 ~ 1.386), reported on the validation pairs (never seen by the
critic: the generalisation figure) and on the training pairs (the paper's figure), as the mean
and standard error over --repeats seeds (a new split and initialisation each).

Writes <out>.mi.tsv (one row per file), <out>.curves.tsv and <out>.curves.png (per-epoch losses
and estimates), and <out>.log.

  gimtool mi --pheno emb_gim.pcs.tsv --pheno emb_simclr.pcs.tsv --geno cohort.geno \\
      --keep cohort/test.ids --out mi --repeats 3 --genetic-encoder mlp --snp-subsample 20000
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from gimtool.commands import _options as options


def command(
    out: options.Out,
    pheno: Annotated[List[str], typer.Option("--pheno", help="Representation table(s) FID IID z1..zK: repeat or separate with commas; one output row per file.")],
    geno: Annotated[str, typer.Option("--geno", help="Genotype store (prep-geno's <out>.geno folder, or its --out prefix).")],
    pheno_name: options.PhenoName = None,
    keep: options.Keep = None,
    remove: options.Remove = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Independent estimators (seeds); the SE is over these.")] = 3,
    val_frac: Annotated[float, typer.Option("--val-frac", min=0.01, max=0.99, help="Share of the people held out as estimator-validation.")] = 0.3,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum training epochs per estimator.")] = 200,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Stop after this many epochs without a better validation loss.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Pairs per minibatch (the other pairs of a batch are the negatives).")] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, help="Adam L2 penalty on the critic (e.g. 0.01 against overfitting when SNPs are many and people few).")] = 0.0,
    snp_subsample: Annotated[Optional[int], typer.Option("--snp-subsample", min=1, help="Use this many SNPs, evenly spaced along the genome (default all).")] = None,
    select_snps: Annotated[int, typer.Option("--select-snps", min=0, help="The critic sees only the K SNPs with the largest multiple R² on the representation, chosen on the estimator-train people of each repeat (0 = all SNPs). With few people and many SNPs a critic over all of them memorizes.")] = 0,
    genetic_encoder: Annotated[str, typer.Option("--genetic-encoder", help="transformer (the paper's genetics-informed transformer) or mlp (faster; fixed SNP array).")] = "transformer",
    genetic_dims: Annotated[Optional[str], typer.Option("--genetic-dims", help="Transformer stage widths, e.g. 16,32 for a small fast encoder (default 32,64,128 as the paper).")] = None,
    device: options.Device = "cpu",
    seed: options.Seed = 0,
    threads: options.Threads = 1,
) -> None:
    from gimtool.pipelines import mi

    files = options.split_list(pheno)
    mi.run(out, files, geno, pheno_name, keep, remove, repeats, val_frac, epochs, patience, batch_size, lr, weight_decay,
           snp_subsample, genetic_encoder, genetic_dims, device, seed, threads, select_snps)
