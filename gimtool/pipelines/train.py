"""Training (the library behind `gimtool train`): resolve the config, pair the people of the two
stores, run the training loop, log. Outputs in the run folder: model.pt, best.pt, last.pt,
history.tsv/.png, config.toml and train.log (see gimtool.train.loop)."""

from __future__ import annotations

import os
from pathlib import Path

from gimtool.devices import set_threads
from gimtool.errors import InputError


def run(images, out, geno=None, keep=None, val_keep=None, config=None, overrides: dict | None = None,
        resume: bool = False, progress: bool = True) -> Path:
    """Train `overrides['method']` (or the config's method) and return the final checkpoint's path.

    overrides: TrainConfig fields from the command line (None values are ignored), e.g.
    {"method": "gim", "epochs": 6, "patience": 3}; epochs may be the text of --epochs ("200,100,50"). Under torchrun every process calls this; rank 0
    writes train.log, the others only warn.
    """
    import logging

    from gimtool.io.tables import read_ids
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
        from gimtool.train.loop import prepare_data, train

        try:
            method = get_method(cfg.method)
        except ValueError as e:
            raise InputError(f"--method {cfg.method}: {e}") from None
        for what, path in (("images", images), ("geno", geno), ("config", config)):
            if path is not None:
                log.input(what, path)
        train_ids = read_ids(keep, "--keep list") if keep is not None else None
        val_ids = read_ids(val_keep, "--val-keep list") if val_keep is not None else None
        data = prepare_data(cfg, method, images, geno, train_ids, val_ids, log)
        log.info(f"config: {cfg.to_dict()}")
        with log.timed("training"):
            final = train(cfg, method, data, out, resume=resume, log=log, progress=progress)
        log.output("model", final)
        if (out / "best.pt").is_file():
            log.output("best model (embed's default for this folder)", out / "best.pt")
        log.output("history", out / "history.tsv")
    return final
