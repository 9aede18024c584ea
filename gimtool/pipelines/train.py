"""Training (the library behind `gimtool train`): resolve the config, pair the people of the two
stores, run the training loop, log. Outputs in the run folder: model.pt, best.pt, last.pt,
history.tsv/.png, config.toml and train.log (see gimtool.train.loop)."""

from __future__ import annotations

import os
from pathlib import Path

from gimtool.devices import set_threads
from gimtool.errors import InputError


def _people(images, keep, val_keep, remove, log):
    """The --keep and --val-keep lists (None: everyone) without the --remove list, as plink2 reads
    them: IDs without an image are ignored and counted; a list that selects no one is an error."""
    from gimtool.io.imagestore import ImageStore
    from gimtool.io.tables import align, read_ids

    have = ImageStore(images).samples
    dropped = read_ids(remove, "--remove list") if remove is not None else None
    lists = []
    for flag, path in (("--keep", keep), ("--val-keep", val_keep)):
        ids = read_ids(path, f"{flag} list") if path is not None else None
        if ids is not None and align(have, ids).n_matched == 0:
            raise InputError(f"{flag} {path}: the keep list selects no one (none of its {ids.height} IDs has an image in {images})")
        if dropped is not None and (ids is not None or flag == "--keep"):
            base = have if ids is None else ids
            ids = base.join(dropped, on=["FID", "IID"], how="anti")
            log.info(f"--remove {remove}: {base.height - ids.height} of the {flag} people removed, {ids.height} remain")
            if ids.height == 0:
                raise InputError(f"--remove {remove}: no one remains of the {flag} people")
        lists.append(ids)
    return lists


def run(images, out, geno=None, keep=None, val_keep=None, config=None, overrides: dict | None = None,
        resume: bool = False, progress: bool = True, remove=None) -> Path:
    """Train `overrides['method']` (or the config's method) and return the final checkpoint's path.

    overrides: TrainConfig fields from the command line (None values are ignored), e.g.
    {"method": "gim", "epochs": 6, "patience": 3}; epochs may be the text of --epochs ("200,100,50"). Under torchrun every process calls this; rank 0
    writes train.log, the others only warn.
    """
    import logging

    from gimtool.runlog import RunLog
    from gimtool.train.config import load_config, parse_epochs

    out = Path(out)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        from gimtool.io.atomic import make_dir

        make_dir(out, f"--out {out}")
    else:
        logging.getLogger("gimtool").setLevel(logging.WARNING)
    log_path = out / "train.log" if is_main else out / f".train.rank{os.environ.get('RANK')}.log"
    with RunLog(str(out), "train", log_path=log_path) as log:
        overrides = dict(overrides or {})
        if isinstance(overrides.get("epochs"), str):
            overrides["epochs"] = parse_epochs(overrides["epochs"])
        cfg = load_config(config, overrides)
        set_threads(cfg.threads)
        from gimtool.model.methods import get_method
        from gimtool.train.loop import prepare_data, resolve_model, train

        try:
            method = get_method(cfg.method)
        except ValueError as e:
            raise InputError(f"--method {cfg.method}: {e}") from None
        total = sum(cfg.epochs) if isinstance(cfg.epochs, list) else cfg.epochs
        if method.trains and total == 0:
            raise InputError(f"--epochs {overrides.get('epochs', cfg.epochs)}: no epoch to train "
                             "(for an untrained encoder use --method random-init)")
        for what, path in (("images", images), ("geno", geno), ("config", config)):
            if path is not None:
                log.input(what, path)
        train_ids, val_ids = _people(images, keep, val_keep, remove, log)
        data = prepare_data(cfg, method, images, geno, train_ids, val_ids, log)
        cfg = resolve_model(cfg, data)  # the grid the dense layer reads, as config.toml stores it
        log.info(f"config: {cfg.to_dict()}")
        with log.timed("training"):
            final = train(cfg, method, data, out, resume=resume, log=log, progress=progress)
        log.output("model", final)
        if (out / "best.pt").is_file():
            log.output("best model (embed's default for this folder)", out / "best.pt")
        log.output("history", out / "history.tsv")
        if is_main:
            best = out / "best.pt"
            log.summary(f"train: wrote {final}" + (f" and the best epoch's {best}" if best.is_file() else "")
                        + f", history.tsv/.png and config.toml to {out}/")
    return final
