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

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from gimtool.commands import _options as options


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x for x in str(v).split(",") if x)
    return out


def _names(paths: list[str]) -> list[str]:
    import re

    stems = [re.sub(r"\.(tsv|txt|pheno|phe)(\.gz)?$", "", Path(p).name) for p in paths]
    return [s if stems.count(s) == 1 else f"{s}_{i + 1}" for i, s in enumerate(stems)]


def _store_path(geno: str) -> Path:
    p = Path(geno)
    if not p.is_dir() and Path(geno + ".geno").is_dir():
        return Path(geno + ".geno")  # accept prep-geno's --out prefix too
    return p


def _plot(curves, path: Path) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    from gimtool.train.mi import MAX_MI

    names = curves["NAME"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        sub = curves.filter(pl.col("NAME") == name)
        for r in sub["REPEAT"].unique(maintain_order=True).to_list():
            c = sub.filter(pl.col("REPEAT") == r)
            ep = c["EPOCH"].to_numpy()
            col = f"C{r % 10}"
            row[0].plot(ep, c["MI_VAL"].to_numpy(), "-", color=col, label=f"validation, seed {r + 1}")
            row[0].plot(ep, c["MI_TRAIN"].to_numpy(), "--", color=col, label=f"training, seed {r + 1}")
            b = int(np.argmin(c["VAL_LOSS"].to_numpy()))
            row[0].plot([ep[b]], [c["MI_VAL"][b]], "o", color=col, ms=5)
            row[1].plot(ep, c["VAL_LOSS"].to_numpy(), "-", color=col)
            row[1].plot(ep, c["TRAIN_LOSS"].to_numpy(), "--", color=col)
        row[0].axhline(0.0, color="grey", lw=0.5)
        row[0].set(xlabel="epoch", ylabel="JSE MI estimate (nats)", title=f"{name}: MI (max {MAX_MI:.3f})")
        row[0].legend(fontsize=7, title="dot: best validation epoch", title_fontsize=7)
        row[1].set(xlabel="epoch", ylabel="JSE loss", title=f"{name}: loss (solid validation, dashed training)")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def command(
    out: options.Out,
    pheno: Annotated[List[str], typer.Option("--pheno", help="Representation table(s) FID IID z1..zK: repeat or separate with commas; one output row per file.")],
    geno: Annotated[str, typer.Option("--geno", help="Genotype store (prep-geno's <out>.geno folder, or its --out prefix).")],
    pheno_name: Annotated[Optional[List[str]], typer.Option("--pheno-name", help="Columns to use from every --pheno file (default all).")] = None,
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
    genetic_encoder: Annotated[str, typer.Option("--genetic-encoder", help="transformer (the paper's genetics-informed transformer) or mlp (faster; fixed SNP array).")] = "transformer",
    genetic_dims: Annotated[Optional[str], typer.Option("--genetic-dims", help="Transformer stage widths, e.g. 16,32 for a small fast encoder (default 32,64,128 as the paper).")] = None,
    device: options.Device = "cpu",
    seed: options.Seed = 0,
    threads: options.Threads = 1,
) -> None:
    import sys

    import numpy as np
    import polars as pl
    from tqdm import tqdm

    from gimtool.errors import InputError
    from gimtool.io.genostore import GenoStore
    from gimtool.conventions import MI_COLS, MI_CURVE_COLS
    from gimtool.io.tables import read_table, select_samples
    from gimtool.model.config import ModelConfig
    from gimtool.runlog import RunLog
    from gimtool.io.atomic import atomic_path
    from gimtool.train import mi as milib

    files = _split(pheno)
    columns = _split(pheno_name) or None
    if not files:
        raise InputError("--pheno: give at least one representation table")
    if genetic_encoder not in milib.ENCODERS:
        raise InputError(f"--genetic-encoder {genetic_encoder}: expected one of {', '.join(milib.ENCODERS)}")
    model_over: dict = {}
    if genetic_dims:
        try:
            model_over["genetic_dims"] = tuple(int(x) for x in genetic_dims.split(","))
        except ValueError:
            raise InputError(f"--genetic-dims {genetic_dims}: expected comma-separated integers such as 16,32") from None
    try:
        model_cfg = ModelConfig(**model_over)
    except ValueError as e:
        raise InputError(f"--genetic-dims {genetic_dims}: {e}") from None

    with RunLog(out, "mi") as log:
        options.set_threads(threads)
        dev = options.resolve_device(device)
        store_path = _store_path(geno)
        log.input("genotype store", store_path)
        store = GenoStore(store_path)
        log.info(f"genotype store: {store.n_samples} samples, {store.n_snps} SNPs")
        mask = select_samples(store.samples, keep, remove, log)
        cols = milib.even_snp_subset(store.n_snps, snp_subsample)
        log.info(f"SNPs used: {cols.size} of {store.n_snps}" + (" (evenly spaced)" if cols.size < store.n_snps else ""))
        if genetic_encoder == "mlp" and cols.size * model_cfg.mlp_hidden > 200_000_000:
            log.warn(f"the MLP genetic encoder on {cols.size} SNPs has {cols.size * model_cfg.mlp_hidden:,} weights in its "
                     "first layer; consider --snp-subsample")
        settings = milib.MISettings(encoder=genetic_encoder, val_frac=val_frac, max_epochs=epochs, patience=patience,
                                    batch_size=batch_size, lr=lr, weight_decay=weight_decay, model=model_cfg)
        log.info(f"estimator: genetic encoder {genetic_encoder}"
                 + (f" (dims {','.join(map(str, model_cfg.genetic_dims))})" if genetic_encoder == "transformer" else "")
                 + f", validation share {val_frac}, at most {epochs} epochs, patience {patience}, batch {batch_size}, "
                   f"lr {lr}, weight decay {weight_decay}, {repeats} repeat(s), seed {seed}, device {dev}")
        positions = store.positions()

        names = _names(files)
        tables = []
        for path, name in zip(files, names):
            log.input(f"representations {name}", path)
            table = read_table(path, columns=columns, what="representation")
            cols_used = columns or [c for c in table.columns if c not in ("FID", "IID")]
            if not cols_used:
                raise InputError(f"{path}: no representation columns after FID IID")
            people = milib.pair_people(store.samples, mask, table, cols_used)
            c = people.counts
            log.info(f"{name}: {c['table']} people in {path}, {c['selected']} selected in the store, {c['matched']} matched, "
                     f"{c['incomplete']} dropped for missing values, {c['used']} used; {len(cols_used)} dimensions")
            if c["matched"] == 0:
                raise InputError(f"{path}: no sample (FID IID) in common with the {c['selected']} selected samples of {store_path}")
            n_val = int(round(c["used"] * val_frac))
            if min(n_val, c["used"] - n_val) < milib.MIN_PER_PART:
                raise InputError(f"{path}: {c['used']} usable people leave {c['used'] - n_val} for training and {n_val} for "
                                 f"validation (--val-frac {val_frac}); each part needs at least {milib.MIN_PER_PART}")
            tables.append((name, path, cols_used, people))

        rows, curve_rows = [], []
        bar = tqdm(total=len(tables) * repeats, desc="mi", unit="estimator", disable=None, file=sys.stderr)
        try:
            for name, path, cols_used, people in tables:
                geno_rows = milib.GenotypeRows(store.genotypes, people.store_rows, cols)

                def on_epoch(r: int, row: dict, name=name) -> None:
                    bar.set_postfix_str(f"{name} seed {r + 1} epoch {row['EPOCH']} MI val {row['MI_VAL']:.4f}")

                with log.timed(f"estimator {name}"):
                    res = milib.estimate_mi(people.Z, geno_rows, positions, cols, settings, repeats=repeats, seed=seed,
                                            device=dev, on_epoch=on_epoch)
                bar.update(repeats)
                (mv, mv_se), (mt, mt_se) = res.mi_val, res.mi_train
                best = float(np.mean([r.best_epoch for r in res.runs]))
                rows.append({"NAME": name, "FILE": str(path), "N_DIMS": len(cols_used), "N_TRAIN": res.runs[0].n_train,
                             "N_VAL": res.runs[0].n_val, "N_SNPS": int(cols.size), "REPEATS": repeats, "MI_VAL": mv,
                             "MI_VAL_SE": mv_se, "MI_TRAIN": mt, "MI_TRAIN_SE": mt_se, "BEST_EPOCH": best})
                for r, run in enumerate(res.runs):
                    log.info(f"{name} seed {r + 1}: best epoch {run.best_epoch} of {len(run.curves) - 1}, "
                             f"MI validation {run.mi_val:.4f}, training {run.mi_train:.4f}")
                    for c in run.curves:
                        curve_rows.append({"NAME": name, "REPEAT": r + 1, **c})
                se = (lambda x: "n/a, one repeat" if np.isnan(x) else f"{x:.4f}")
                log.info(f"{name}: MI validation {mv:.4f} (SE {se(mv_se)}), training {mt:.4f} (SE {se(mt_se)})")
                if all(r.best_epoch == 0 for r in res.runs):
                    log.warn(f"{name}: the critic never did better on validation pairs than untrained; no information "
                             "detected with these people and SNPs (more people, fewer SNPs or --genetic-encoder mlp may help)")
        finally:
            bar.close()

        mi_df = pl.DataFrame(rows).select(list(MI_COLS))
        curves = pl.DataFrame(curve_rows).select(list(MI_CURVE_COLS))
        for suffix, df in ((".mi.tsv", mi_df), (".curves.tsv", curves)):
            df = df.with_columns([pl.col(c).fill_nan(None) for c, t in df.schema.items() if t == pl.Float64])
            with atomic_path(f"{out}{suffix}") as tmp:
                df.write_csv(tmp, separator="\t", null_value="NA", float_precision=6)
            log.output(suffix.lstrip("."), f"{out}{suffix}")
        with atomic_path(f"{out}.curves.png") as tmp:
            _plot(curves.with_columns(pl.col("REPEAT") - 1), Path(str(tmp)))
        log.output("curves figure", f"{out}.curves.png")
