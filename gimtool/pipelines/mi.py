"""`gimtool mi` as a function: :func:`run` estimates the held-out mutual information between each
representation table and the genotypes of a store (JSE critics of :mod:`gimtool.train.mi`), and
writes <out>.mi.tsv, <out>.curves.tsv, <out>.curves.png and <out>.log. A script calls::

    from gimtool.pipelines import mi
    mi.run("mi", ["emb_gim.pcs.tsv"], "cohort.geno", keep="test.ids", genetic_encoder="mlp")
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.conventions import ID_COLS, MI_COLS, MI_CURVE_COLS
from gimtool.errors import InputError, OptionError


def table_names(paths: list[str]) -> list[str]:
    """One name per representation file: its stem, numbered when stems repeat."""
    stems = [re.sub(r"\.(tsv|txt|pheno|phe)(\.gz)?$", "", Path(p).name) for p in paths]
    return [s if stems.count(s) == 1 else f"{s}_{i + 1}" for i, s in enumerate(stems)]


def store_path(geno: str) -> Path:
    """The genotype store folder (prep-geno's <out>.geno, or its --out prefix)."""
    p = Path(geno)
    if not p.is_dir() and Path(geno + ".geno").is_dir():
        return Path(geno + ".geno")
    return p


def model_config(genetic_encoder: str, genetic_dims: str | None):
    """The estimator's model configuration from --genetic-encoder and --genetic-dims."""
    from gimtool.model.config import ModelConfig
    from gimtool.train import mi as milib

    if genetic_encoder not in milib.ENCODERS:
        raise OptionError(f"--genetic-encoder {genetic_encoder}: expected one of {', '.join(milib.ENCODERS)}")
    over: dict = {}
    if genetic_dims:
        try:
            over["genetic_dims"] = tuple(int(x) for x in genetic_dims.split(","))
        except ValueError:
            raise OptionError(f"--genetic-dims {genetic_dims}: expected comma-separated integers such as 16,32") from None
    try:
        return ModelConfig(**over)
    except ValueError as e:
        raise OptionError(f"--genetic-dims {genetic_dims}: {e}") from None


def _tables(files, columns, store, mask, val_frac: float, where: Path, log) -> list[tuple]:
    """(name, path, columns used, paired people) of each representation file, checked for enough people."""
    from gimtool.io.phenotypes import read_named_table
    from gimtool.train import mi as milib

    tables = []
    for path, name in zip(files, table_names(files)):
        log.input(f"representations {name}", path)
        table = read_named_table(path, columns, "representation")
        cols_used = columns or [c for c in table.columns if c not in ID_COLS]
        people = milib.pair_people(store.samples, mask, table, cols_used)
        c = people.counts
        log.info(f"{name}: {c['table']} people in {path}, {c['selected']} selected in the store, {c['matched']} matched, "
                 f"{c['incomplete']} dropped for missing values, {c['used']} used; {len(cols_used)} dimensions")
        if c["matched"] == 0:
            raise InputError(f"{path}: no sample (FID IID) in common with the {c['selected']} selected samples of {where}")
        n_val = int(round(c["used"] * val_frac))
        if min(n_val, c["used"] - n_val) < milib.MIN_PER_PART:
            raise InputError(f"{path}: {c['used']} usable people leave {c['used'] - n_val} for training and {n_val} for "
                             f"validation (--val-frac {val_frac}); each part needs at least {milib.MIN_PER_PART}")
        tables.append((name, path, cols_used, people))
    return tables


def _estimate(tables, store, cols, settings, repeats: int, seed: int, dev, log) -> tuple[list[dict], list[dict]]:
    """The estimators of every table: (MI_COLS rows, MI_CURVE_COLS rows)."""
    from gimtool import progress
    from gimtool.train import mi as milib

    rows, curve_rows = [], []
    positions = store.positions()
    bar = progress.bar(total=len(tables) * repeats, desc="mi", unit="estimator")
    try:
        for name, path, cols_used, people in tables:
            geno_rows = milib.GenotypeRows(store.genotypes, people.store_rows, cols)

            def on_epoch(r: int, row: dict, name=name) -> None:
                bar.set_postfix_str(f"{name} seed {r + 1} epoch {row['EPOCH']} MI val {row['MI_VAL']:.4f}")

            with log.timed(f"estimator {name}"):
                res = milib.estimate_mi(people.Z, geno_rows, positions, cols, settings, repeats=repeats, seed=seed,
                                        device=dev, on_epoch=on_epoch)
            bar.update(repeats)
            rows.append(_result_row(name, path, len(cols_used), int(cols.size), repeats, res))
            for r, run_ in enumerate(res.runs):
                curve_rows.extend({"NAME": name, "REPEAT": r + 1, **c} for c in run_.curves)
            _log_result(name, res, log)
    finally:
        bar.close()
    return rows, curve_rows


def _result_row(name, path, n_dims: int, n_snps: int, repeats: int, res) -> dict:
    (mv, mv_se), (mt, mt_se) = res.mi_val, res.mi_train
    return {"NAME": name, "FILE": str(path), "N_DIMS": n_dims, "N_TRAIN": res.runs[0].n_train, "N_VAL": res.runs[0].n_val,
            "N_SNPS": n_snps, "REPEATS": repeats, "MI_VAL": mv, "MI_VAL_SE": mv_se, "MI_TRAIN": mt, "MI_TRAIN_SE": mt_se,
            "BEST_EPOCH": float(np.mean([r.best_epoch for r in res.runs]))}


def _log_result(name: str, res, log) -> None:
    for r, run_ in enumerate(res.runs):
        log.info(f"{name} seed {r + 1}: best epoch {run_.best_epoch} of {len(run_.curves) - 1}, "
                 f"MI validation {run_.mi_val:.4f}, training {run_.mi_train:.4f}")
    (mv, mv_se), (mt, mt_se) = res.mi_val, res.mi_train
    se = (lambda x: "n/a, one repeat" if np.isnan(x) else f"{x:.4f}")  # noqa: E731
    log.info(f"{name}: MI validation {mv:.4f} (SE {se(mv_se)}), training {mt:.4f} (SE {se(mt_se)})")
    if all(r.best_epoch == 0 for r in res.runs):
        log.warn(f"{name}: the critic never did better on validation pairs than untrained; no information "
                 "detected with these people and SNPs (more people, fewer SNPs or --genetic-encoder mlp may help)")


def _write(out: str, rows: list[dict], curve_rows: list[dict], log) -> pl.DataFrame:
    from gimtool.io import figures
    from gimtool.io.tables import write_tsv
    from gimtool.train.mi import MAX_MI

    mi_df = pl.DataFrame(rows).select(list(MI_COLS))
    curves = pl.DataFrame(curve_rows).select(list(MI_CURVE_COLS))
    for suffix, df in ((".mi.tsv", mi_df), (".curves.tsv", curves)):
        write_tsv(df, f"{out}{suffix}", float_precision=6)
        log.output(suffix.lstrip("."), f"{out}{suffix}")
    figures.mi_curves(curves.with_columns(pl.col("REPEAT") - 1), f"{out}.curves.png", MAX_MI)
    log.output("curves figure", f"{out}.curves.png")
    log.summary(f"mi: wrote the MI estimates of {mi_df.height} representation file(s) to {out}.mi.tsv "
                f"(curves in {out}.curves.tsv and .png)")
    return mi_df


def run(out: str, pheno: list[str], geno: str, pheno_name=None, keep=None, remove=None, repeats: int = 3,
        val_frac: float = 0.3, epochs: int = 200, patience: int = 10, batch_size: int = 64, lr: float = 1e-3,
        weight_decay: float = 0.0, snp_subsample: int | None = None, genetic_encoder: str = "transformer",
        genetic_dims: str | None = None, device: str = "cpu", seed: int = 0, threads: int = 1,
        select_snps: int = 0) -> pl.DataFrame:
    """`gimtool mi`: one row of MI_COLS per representation file in `pheno`; returns that frame."""
    from gimtool.devices import resolve_device, set_threads
    from gimtool.io.genostore import GenoStore
    from gimtool.io.phenotypes import split_names
    from gimtool.io.tables import select_samples
    from gimtool.runlog import RunLog
    from gimtool.train import mi as milib

    if not pheno:
        raise InputError("--pheno: give at least one representation table")
    model_cfg = model_config(genetic_encoder, genetic_dims)
    with RunLog(out, "mi") as log:
        set_threads(threads)
        dev = resolve_device(device)
        where = store_path(geno)
        log.input("genotype store", where)
        store = GenoStore(where)
        log.info(f"genotype store: {store.n_samples} samples, {store.n_snps} SNPs")
        mask = select_samples(store.samples, keep, remove, log)
        cols = milib.even_snp_subset(store.n_snps, snp_subsample)
        log.info(f"SNPs used: {cols.size} of {store.n_snps}" + (" (evenly spaced)" if cols.size < store.n_snps else ""))
        if genetic_encoder == "mlp" and cols.size * model_cfg.mlp_hidden > 200_000_000:
            log.warn(f"the MLP genetic encoder on {cols.size} SNPs has {cols.size * model_cfg.mlp_hidden:,} weights in its "
                     "first layer; consider --snp-subsample")
        settings = milib.MISettings(encoder=genetic_encoder, val_frac=val_frac, max_epochs=epochs, patience=patience,
                                    batch_size=batch_size, lr=lr, weight_decay=weight_decay, select_snps=select_snps,
                                    model=model_cfg)
        log.info(f"estimator: genetic encoder {genetic_encoder}"
                 + (f" (dims {','.join(map(str, model_cfg.genetic_dims))})" if genetic_encoder == "transformer" else "")
                 + f", validation share {val_frac}, at most {epochs} epochs, patience {patience}, batch {batch_size}, "
                   f"lr {lr}, weight decay {weight_decay}, {repeats} repeat(s), seed {seed}, device {dev}"
                 + (f"; the critic sees the {select_snps} SNPs with the largest multiple R² on the representation, "
                    "chosen on each repeat's estimator-train people" if 0 < select_snps < cols.size else ""))
        tables = _tables(pheno, split_names(pheno_name), store, mask, val_frac, where, log)
        rows, curve_rows = _estimate(tables, store, cols, settings, repeats, seed, dev, log)
        return _write(out, rows, curve_rows, log)
