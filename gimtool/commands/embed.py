"""Write embeddings from a trained checkpoint: PREFIX.tsv with FID IID z1..z128.

The 128 GWAS dimensions of the MRI encoder for every person in the image store (or --keep),
from whole volumes, or with --center-crop from the centre crop that validation used. The store
must be on the grid the model was trained on.

Example:
  gimtool embed --checkpoint runs/gim --images cohort.img --out runs/gim/embeddings
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
    shard: options.Shard = None,
) -> None:
    from gimtool.pipelines import embed

    embed.run(checkpoint, images, out, keep, remove, center_crop, batch_size, device, threads, shard=shard)
