"""Write embeddings from a trained checkpoint: PREFIX.tsv with FID IID z1..z128.

The 128 GWAS dimensions of the MRI encoder for every person in the image store (or --keep),
from whole volumes, or with --center-crop from the centre crop that validation used. The store
must be on the grid the model was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A train run folder (its best.pt: the epoch of best validation MI; model.pt when it has none) or a checkpoint file (DIR/model.pt, DIR/last.pt).")],
    images: Annotated[Path, typer.Option("--images", help="Image store (prep-mri output folder) on the training grid.")],
    out: options.Out,
    keep: options.Keep = None,
    remove: options.Remove = None,
    center_crop: Annotated[bool, typer.Option("--center-crop", help="Embed the training-size centre crop instead of whole volumes.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Volumes per forward pass.")] = 8,
    device: options.Device = "cpu",
    threads: options.Threads = 1,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    import numpy as np
    import polars as pl

    from gimtool.io.imagestore import ImageStore
    from gimtool.conventions import EMBEDDING_PREFIX
    from gimtool.io.tables import select_samples, write_table
    from gimtool.runlog import RunLog
    from gimtool.train import checkpoint as ckpt_mod
    from gimtool.train.embedding import embed_volumes, load_model

    with RunLog(out, "embed") as log:
        options.set_threads(threads)
        dev = options.resolve_device(device)
        from gimtool.train.embedding import resolve_checkpoint

        checkpoint = resolve_checkpoint(checkpoint)
        log.input("checkpoint", checkpoint)
        log.input("images", images)
        store = ImageStore(images)
        method, modules, cfg, ck = load_model(checkpoint, dev)
        ckpt_mod.check_compatible(ck, checkpoint, grid=ckpt_mod.grid_of(store), check_snps=False)
        log.info(f"checkpoint: method {ck['method']}, {len(ck['history'])} epochs, trained on {ck['n_train']} people, "
                 f"gimtool {ck['gimtool_version']}{'' if ck['complete'] else ' (an unfinished run: last.pt)'}")
        mask = select_samples(store.samples, keep, remove, log)
        index = np.flatnonzero(mask)
        crop = tuple(ck["crop"]) if center_crop else None
        log.info(f"embedding {index.size} of {store.n} volumes ({'centre crop ' + str(crop) if crop else 'whole volumes ' + str(store.shape)})")
        with log.timed("embed"):
            Z = embed_volumes(method, modules, store, index, crop, dev, batch_size, bf16=cfg.bf16, progress=not no_progress)
        ids = store.samples[index]
        cols = [f"{EMBEDDING_PREFIX}{k + 1}" for k in range(Z.shape[1])]
        df = pl.concat([ids, pl.DataFrame(Z.astype(np.float64), schema=cols, orient="row")], how="horizontal")
        path = f"{out}.tsv"
        write_table(df, path)
        log.output("embeddings", path)
