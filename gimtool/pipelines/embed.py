"""Embeddings (the library behind `gimtool embed`): the GWAS dimensions of a trained encoder for
every person of an image store, written as PREFIX.tsv (FID IID z1..z128) with PREFIX.log."""

from __future__ import annotations

from pathlib import Path

from gimtool.devices import resolve_device, set_threads


def run(checkpoint, images, out, keep=None, remove=None, center_crop: bool = False, batch_size: int = 8,
        device: str = "cpu", threads: int = 1, progress: bool = True, shard: str | None = None) -> Path:
    """Embed with `checkpoint` (a file, or a run folder: its best.pt, else model.pt); returns the table's path.

    `shard` "K/N": only the K-th of N contiguous parts of the people, in whole batches (so each
    batch, hence each number, is the unsplit run's), into OUT.shardKofN.tsv; `gimtool merge
    --out OUT` joins the parts into OUT.tsv."""
    import numpy as np
    import polars as pl

    from gimtool.conventions import EMBEDDING_PREFIX
    from gimtool.io.imagestore import ImageStore
    from gimtool.io.tables import select_samples, write_table
    from gimtool.pipelines import shards
    from gimtool.runlog import RunLog
    from gimtool.train import checkpoint as ckpt_mod
    from gimtool.train.embedding import embed_volumes, load_model, resolve_checkpoint

    if shard is not None:
        out = shards.part_name(out, *shards.parse_part(shard, "--shard"))
    with RunLog(out, "embed") as log:
        set_threads(threads)
        dev = resolve_device(device)
        checkpoint = resolve_checkpoint(checkpoint)
        log.input("checkpoint", checkpoint)
        log.input("images", images)
        store = ImageStore(images)
        method, modules, cfg, ck = load_model(checkpoint, dev)
        ckpt_mod.check_compatible(ck, checkpoint, grid=ckpt_mod.grid_of(store), check_snps=False)
        log.info(f"checkpoint: method {ck['method']}, {len(ck['history'])} epochs, trained on {ck['n_train']} people, "
                 f"gimtool {ck['gimtool_version']}{'' if ck['complete'] else ' (an unfinished run)'}")
        index = np.flatnonzero(select_samples(store.samples, keep, remove, log))
        index = shards.take_part(index, shard, "--shard", "people", log, align=batch_size)
        crop = tuple(ck["crop"]) if center_crop else None
        log.info(f"embedding {index.size} of {store.n} volumes ({'centre crop ' + str(crop) if crop else 'whole volumes ' + str(store.shape)})")
        with log.timed("embed"):
            Z = embed_volumes(method, modules, store, index, crop, dev, batch_size, bf16=cfg.bf16, progress=progress)
        cols = [f"{EMBEDDING_PREFIX}{k + 1}" for k in range(Z.shape[1])]
        df = pl.concat([store.samples[index], pl.DataFrame(Z.astype(np.float64), schema=cols, orient="row")], how="horizontal")
        path = Path(f"{out}.tsv")
        write_table(df, path)
        log.output("embeddings", path)
        log.summary(f"embed: wrote the {Z.shape[1]}-d embeddings of {index.size} people to {path}")
    return path
