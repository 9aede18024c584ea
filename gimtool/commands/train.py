"""Train an MRI encoder (Genetic InfoMax and baselines) on paired image and genotype stores.

Writes to the run folder --out DIR: model.pt (final checkpoint), best.pt (the epoch of best
validation MI, or validation loss for methods without a critic; what `embed --checkpoint DIR`
uses), last.pt (each epoch; --resume continues from it), history.tsv and history.png (losses and the MI train/validation gap),
config.toml (the resolved hyperparameters) and train.log. Many GPUs:
`torchrun --nproc_per_node N -m gimtool train ... --device cuda`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    images: Annotated[Path, typer.Option("--images", help="Image store (prep-mri output folder).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: model.pt, last.pt, history.tsv/.png, config.toml, train.log.")],
    geno: Annotated[Optional[Path], typer.Option("--geno", help="Genotype store (prep-geno output folder); needed by methods that use genotypes.")] = None,
    keep: Annotated[Optional[Path], typer.Option("--keep", help="Training people (FID IID per line); default: everyone with an image (and genotypes).")] = None,
    val_keep: Annotated[Optional[Path], typer.Option("--val-keep", help="Validation people (FID IID per line), disjoint from --keep.")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Training method: gim, autoencoder, autoencoder-attention, gen-prediction, barlow-twins, simclr, simclr-jse, infonce, decorrelated-infonce, random-init (default gim).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with hyperparameters (flags override it).")] = None,
    epochs: Annotated[Optional[str], typer.Option("--epochs", help="Epochs: one number per stage (gim: 200,100,50, the default), or the total as one number, split over the stages (gim 4:2:1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Global mini-batch size (default 12).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Starting learning rate of the cosine schedule (default 1e-3).")] = None,
    crop_mm: Annotated[Optional[float], typer.Option("--crop-mm", help="Side of the random 3D crops in mm (default 160).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N (default cpu). Fails if CUDA is asked for and absent.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed; the same seed gives the same model.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads per process.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, help="DataLoader worker processes reading the stores (default 0).")] = None,
    patience: Annotated[Optional[int], typer.Option("--patience", min=0, help="Early stopping: stop when the validation MI (the loss for methods without a critic) has not improved for this many epochs; 0 = never (default).")] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's settings wherever gimtool's defaults depart from them: genetic transformer on genotype classes, critic without input standardization, 200/100/50-epoch schedule, 9.9 % SNP augmentation (README, 'Paper versus practice').")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    from gimtool.io.tables import read_ids
    from gimtool.runlog import RunLog
    from gimtool.train.config import load_config, parse_epochs

    out = Path(out)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    else:  # one process reports; the others only warn
        import logging

        logging.getLogger("gimtool").setLevel(logging.WARNING)
    log_path = out / "train.log" if is_main else out / f".train.rank{os.environ.get('RANK')}.log"
    with RunLog(str(out), "train", log_path=log_path) as log:
        cfg = load_config(config, {
            "method": method, "epochs": parse_epochs(epochs), "batch_size": batch_size, "lr": lr, "crop_mm": crop_mm,
            "device": device, "seed": seed, "threads": threads, "workers": workers, "patience": patience, "paper": paper or None,
        })
        options.set_threads(cfg.threads)
        from gimtool.model.methods import get_method
        from gimtool.train.loop import prepare_data, train

        try:
            m = get_method(cfg.method)
        except ValueError as e:
            from gimtool.errors import InputError

            raise InputError(f"--method {cfg.method}: {e}") from None
        log.input("images", images)
        if geno is not None:
            log.input("geno", geno)
        if config is not None:
            log.input("config", config)
        train_ids = read_ids(keep, "--keep list") if keep is not None else None
        val_ids = read_ids(val_keep, "--val-keep list") if val_keep is not None else None
        data = prepare_data(cfg, m, images, geno, train_ids, val_ids, log)
        log.info(f"config: {cfg.to_dict()}")
        with log.timed("training"):
            final = train(cfg, m, data, out, resume=resume, log=log, progress=not no_progress)
        log.output("model", final)
        if (out / "best.pt").is_file():
            log.output("best model (embed's default for this folder)", out / "best.pt")
        log.output("history", out / "history.tsv")
