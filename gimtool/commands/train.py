"""Train an MRI encoder (Genetic InfoMax and baselines) on paired image and genotype stores.

Example:
  gimtool train --images mri --geno geno.geno --keep train.ids --val-keep val.ids --method gim \
      --epochs 100 --patience 10 --out runs/gim
Writes to the run folder --out DIR: model.pt (final checkpoint), best.pt (the epoch of best
validation MI, or validation loss for methods without a critic; what `embed --checkpoint DIR`
uses), last.pt (each epoch; --resume continues from it), history.tsv and history.png (losses and the MI train/validation gap),
config.toml (the resolved hyperparameters) and train.log. Many GPUs:
`torchrun --nproc_per_node N -m gimtool train ... --device cuda`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def command(
    images: Annotated[Path, typer.Option("--images", help="Image store (prep-mri output folder).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: model.pt, last.pt, history.tsv/.png, config.toml, train.log.")],
    geno: Annotated[Optional[Path], typer.Option("--geno", help="Genotype store (prep-geno output folder); needed by methods that use genotypes.")] = None,
    keep: Annotated[Optional[Path], typer.Option("--keep", help="Training people (FID IID per line); default: everyone with an image (and genotypes).")] = None,
    val_keep: Annotated[Optional[Path], typer.Option("--val-keep", help="Validation people (FID IID per line), disjoint from --keep.")] = None,
    remove: Annotated[Optional[Path], typer.Option("--remove", help="Drop these people (FID IID per line) from the training and validation sets.")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Training method: gim, autoencoder, autoencoder-attention, gen-prediction, barlow-twins, simclr, simclr-jse, infonce, decorrelated-infonce, random-init (default gim).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with hyperparameters (flags override it).")] = None,
    epochs: Annotated[Optional[str], typer.Option("--epochs", help="Epochs: the total as one number (gim: all in its co-training stage; with --paper split 4:2:1 over its three stages), or one number per stage (gim: frozen-genetic,genetic-augment,co-train, e.g. the paper's 200,100,50). Default 350.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Global mini-batch size (default 12).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default 1e-3): held throughout (lr_schedule \"constant\", the default) or the start of the cosine (lr_schedule \"cosine\", --paper).")] = None,
    crop_mm: Annotated[Optional[float], typer.Option("--crop-mm", help="Side of the random 3D crops in mm; 0 (default) trains on whole volumes (the paper: 160).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N (default cpu). Fails if CUDA is asked for and absent.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed; the same seed gives the same model.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads per process.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, help="0 (default): threads of the training process read the crops from the memory-mapped stores (no copies between processes); N > 0: a DataLoader with N worker processes. Both give the same batches.")] = None,
    patience: Annotated[Optional[int], typer.Option("--patience", min=0, help="Early stopping: stop when the validation MI (the loss for methods without a critic) has not improved for this many epochs; 0 = never (default).")] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's settings wherever gimtool's defaults depart from them: genetic transformer on genotype classes, critic without input standardization, 200/100/50-epoch schedule, 9.9 % SNP augmentation (README, 'Paper versus practice').")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")] = False,
) -> None:
    from gimtool.pipelines import train

    train.run(images, out, geno, keep, val_keep, config, {
        "method": method, "epochs": epochs, "batch_size": batch_size, "lr": lr, "crop_mm": crop_mm,
        "device": device, "seed": seed, "threads": threads, "workers": workers, "patience": patience, "paper": paper or None,
    }, resume=resume, remove=remove)
