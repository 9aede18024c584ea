"""The training loop. It knows no method by name: a method (gimtool.model.methods) builds its
modules, lists its stages (which modules train, whether the genotypes are augmented) and
computes its loss; the loop runs the stages with Adam and a cosine-annealed learning rate,
validates, logs and checkpoints every epoch, and resumes exactly.

Outputs in the run folder: ``last.pt`` (every epoch, atomic), ``model.pt`` (at the end),
``history.tsv`` and ``history.png`` (per-epoch losses and the MI train-versus-validation gap),
``config.toml`` (the resolved config).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import torch

from gimtool.errors import InputError
from gimtool.conventions import TRAIN_HISTORY_COLS
from gimtool.io.atomic import atomic_path, atomic_write_text
from gimtool.train import checkpoint as ckpt_mod
from gimtool.train.config import TrainConfig, crop_shape, stage_epochs
from gimtool.train.data import Collate, KeyedBatches, PairDataset, Pairs, make_loader, pair_samples
from gimtool.train.distributed import Dist, setup


@dataclass
class RunData:
    """What a run trains on: the stores and the people (already paired)."""

    image_path: str
    geno_path: str | None
    train: Pairs
    val: Pairs | None
    shape: tuple[int, int, int]
    grid: dict
    crop: tuple[int, int, int]
    n_snps: int
    snp_hash: str | None
    positions: dict | None


def prepare_data(cfg: TrainConfig, method, image_path, geno_path, train_keep: pl.DataFrame | None,
                 val_keep: pl.DataFrame | None, log=None) -> RunData:
    """Open the stores, pair people by (FID, IID), and check that train and validation are disjoint."""
    from gimtool.io.genostore import GenoStore
    from gimtool.io.imagestore import ImageStore

    images = ImageStore(image_path)
    if method.needs_genotypes and geno_path is None:
        raise InputError(f"--method {method.name} needs genotypes: give --geno STORE")
    geno = GenoStore(geno_path) if geno_path is not None else None
    train = pair_samples(images, geno, train_keep, "training set", log)
    val = pair_samples(images, geno, val_keep, "validation set", log) if val_keep is not None else None
    if val is not None:
        both = train.ids.join(val.ids, on=["FID", "IID"], how="inner")
        if both.height:
            first = " ".join(both.row(0))
            raise InputError(f"--keep and --val-keep share {both.height} people (e.g. {first}); the validation set must be held out")
    crop = crop_shape(cfg, images.shape, images.voxel_size)
    return RunData(
        image_path=str(image_path), geno_path=None if geno is None else str(geno_path),
        train=train, val=val, shape=tuple(images.shape), grid=ckpt_mod.grid_of(images), crop=crop,
        n_snps=0 if geno is None else geno.n_snps, snp_hash=None if geno is None else geno.snp_hash,
        positions=None if geno is None else geno.positions(),
    )


class _LossModule(torch.nn.Module):
    """Routes the method's loss through one module call, so DistributedDataParallel sees the
    forward pass (and its gradient hooks) of whatever modules the method uses."""

    def __init__(self, method, modules: torch.nn.ModuleDict):
        super().__init__()
        self.method = method
        self.mods = modules

    def forward(self, batch, stage):
        return self.method.loss(self.mods, batch, stage)


def _to_device(batch: dict, device: torch.device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, list):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v.to(device, non_blocking=True)
    return out


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    # one torch seed per (run seed, epoch, rank): the methods' own random draws (intensity
    # augmentation, dropout) restart identically when an epoch is rerun after a resume
    return int(np.random.default_rng([seed, epoch, rank, 23]).integers(0, 2**62))


def _autocast(cfg: TrainConfig, device: torch.device):
    if device.type == "cuda" and cfg.bf16:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_modules(method, cfg: TrainConfig, crop, n_snps: int) -> torch.nn.ModuleDict:
    """The method's modules, initialised from the run seed (the same on every process)."""
    torch.manual_seed(cfg.seed)
    return method.build(cfg.model, tuple(crop), int(n_snps))


def _write_history(out: Path, history: list[dict]) -> None:
    cols = list(TRAIN_HISTORY_COLS)
    extra = sorted({k for row in history for k in row} - set(cols))
    cols += extra
    rows = {c: [row.get(c) for row in history] for c in cols}
    df = pl.DataFrame(rows, schema={c: (pl.Utf8 if c == "STAGE" else pl.Int64 if c in ("EPOCH", "STAGE_EPOCH") else pl.Float64) for c in cols}, strict=False)
    df = df.with_columns([pl.col(c).fill_nan(None) for c in cols if df.schema[c] == pl.Float64])
    with atomic_path(out / "history.tsv") as tmp:
        df.write_csv(tmp, separator="\t", null_value="NA")
    _plot_history(out / "history.png", df)


def _plot_history(path: Path, df: pl.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if df.height == 0:
        return
    ep = df["EPOCH"].to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.plot(ep, df["TRAIN_LOSS"].to_numpy(), "o-", label="train", ms=3)
    if df["VAL_LOSS"].null_count() < df.height:
        ax.plot(ep, df["VAL_LOSS"].to_numpy(), "s-", label="validation", ms=3)
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    ax = axes[1]
    if df["TRAIN_MI"].null_count() < df.height:
        ax.plot(ep, df["TRAIN_MI"].to_numpy(), "o-", label="train", ms=3)
        if df["VAL_MI"].null_count() < df.height:
            ax.plot(ep, df["VAL_MI"].to_numpy(), "s-", label="validation", ms=3)
            ax.fill_between(ep, df["VAL_MI"].to_numpy().astype(float), df["TRAIN_MI"].to_numpy().astype(float), alpha=0.2, label="gap")
        ax.axhline(2 * math.log(2), color="grey", lw=0.8, ls=":", label="2 ln 2 (JSE maximum)")
        ax.set(xlabel="epoch", ylabel="JSE MI estimate (nats)", title="MI: train vs validation")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no MI estimate for this method", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    from matplotlib.ticker import MaxNLocator

    stages = df["STAGE"].to_list()
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        for k in range(1, len(stages)):
            if stages[k] != stages[k - 1]:
                a.axvline(ep[k] - 0.5, color="k", lw=0.6, ls="--")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _mean_metrics(sums: dict, n: float, prefix: str) -> dict:
    # the loop's own loss column is authoritative; a method's 'loss' metric repeats it
    return {f"{prefix}_{k.upper()}": (v / n if n else float("nan")) for k, v in sums.items() if k != "loss"}


def train(cfg: TrainConfig, method, data: RunData, out: str | Path, resume: bool = False, log=None,
          on_epoch_end: Callable[[int], None] | None = None, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint `<out>/model.pt`.

    `on_epoch_end(global_epoch)` is called after each epoch's checkpoint is written (tests use
    it to kill a run part way).
    """
    out = Path(out)
    dist = setup(cfg.device)
    try:
        return _train(cfg, method, data, out, resume, log, on_epoch_end, progress, dist)
    finally:
        dist.close()


def _info(log, dist: Dist, msg: str) -> None:
    if log is not None and dist.is_main:
        log.info(msg)


def _train(cfg, method, data: RunData, out: Path, resume, log, on_epoch_end, progress, dist: Dist) -> Path:
    device = dist.device
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", cfg.save_toml())
    modules = build_modules(method, cfg, data.crop, data.n_snps).to(device)
    base = {
        "method": method.name, "config": cfg.to_dict(), "snp_hash": data.snp_hash, "n_snps": data.n_snps,
        "grid": data.grid, "crop": list(data.crop), "n_train": int(data.train.image_index.size),
        "n_val": 0 if data.val is None else int(data.val.image_index.size),
    }
    n_params = sum(p.numel() for p in modules.parameters())
    _info(log, dist, f"method {method.name}: {n_params:,} parameters in {', '.join(modules.keys())}; crop {data.crop} of grid {data.shape}; {data.n_snps} SNPs")

    if not method.trains:
        if dist.is_main:
            ckpt_mod.save_checkpoint({**base, "modules": modules.state_dict(), "optimizer": None, "scheduler": None,
                                      "position": {"stage": 0, "epoch": 0, "global_epoch": 0}, "complete": True,
                                      "rng": _rng_state(), "history": []}, out / "model.pt")
            _info(log, dist, f"--method {method.name} does not train: saved the seeded initial weights to {out / 'model.pt'}")
        dist.barrier()
        return out / "model.pt"

    names = [s.name for s in method.stages(1)]
    stages = method.stages(stage_epochs(cfg, names))
    for s in stages:
        unknown = [t for t in s.trainable if t not in modules]
        if unknown:
            raise ValueError(f"method {method.name} stage {s.name}: trainable {unknown} not among modules {list(modules.keys())}")

    history: list[dict] = []
    start_stage, start_epoch, opt_state, sched_state = 0, 0, None, None
    if resume:
        path = out / "last.pt"
        if not path.is_file():
            raise InputError(f"--resume: {path} not found (nothing to resume; run without --resume)")
        ck = ckpt_mod.load_checkpoint(path)
        ckpt_mod.check_compatible(ck, path, method=method.name, snp_hash=data.snp_hash, grid=data.grid)
        if list(ck["crop"]) != list(data.crop):
            raise InputError(f"{path}: checkpoint crop {tuple(ck['crop'])} differs from this run's {data.crop} (crop_mm changed?)")
        old_epochs = ck["config"].get("epochs")
        if old_epochs != cfg.to_dict()["epochs"]:
            _info(log, dist, f"--resume: epochs changed from {old_epochs} to {cfg.epochs}")
        modules.load_state_dict(ck["modules"])
        history = list(ck["history"])
        start_stage, start_epoch = int(ck["position"]["stage"]), int(ck["position"]["epoch"])
        opt_state, sched_state = ck["optimizer"], ck["scheduler"]
        _set_rng_state(ck.get("rng"))
        _info(log, dist, f"resumed from {path}: stage {start_stage + 1} ({stages[min(start_stage, len(stages) - 1)].name}), {start_epoch} epoch(s) done in it, {len(history)} in all")

    # one random crop per person; two-view methods draw their views from it with their own
    # augmentations, seeded per person by batch['aug_seed'] (so a batch split over processes
    # augments exactly as one process does)
    mask_snps = getattr(cfg.model, "genetic_encoder", "transformer") == "mlp"
    train_ds = PairDataset(data.image_path, data.geno_path, data.train, data.crop, 1, method.needs_genotypes, mask_snps)
    val_ds = None if data.val is None else PairDataset(data.image_path, data.geno_path, data.val, data.crop, 1,
                                                      method.needs_genotypes, mask_snps)
    collate = Collate(data.positions if method.needs_genotypes else None, 1, mask_snps)
    if len(train_ds) < cfg.batch_size:
        raise InputError(f"training set: {len(train_ds)} people, fewer than --batch-size {cfg.batch_size}")
    pin = device.type == "cuda"
    global_epoch = sum(s.epochs for s in stages[:start_stage]) + start_epoch

    for si in range(start_stage, len(stages)):
        stage = stages[si]
        first_epoch = start_epoch if si == start_stage else 0
        if first_epoch >= stage.epochs or not stage.trainable:
            continue
        for name, m in modules.items():
            m.requires_grad_(name in stage.trainable)
        params = [p for name in stage.trainable for p in modules[name].parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sampler = KeyedBatches(len(train_ds), cfg.batch_size, cfg.seed, train=True, rank=dist.rank, world=dist.world,
                               augment=stage.genetic_augment and method.needs_genotypes, n_snps=data.n_snps,
                               crop_p=cfg.geno_crop_p, fraction=cfg.geno_aug_fraction)
        steps = len(sampler)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, stage.epochs * steps), eta_min=cfg.min_lr)
        if si == start_stage and opt_state is not None:
            opt.load_state_dict(opt_state)
            sched.load_state_dict(sched_state)
        loss_module = _LossModule(method, modules)
        if dist.enabled:
            loss_module = torch.nn.parallel.DistributedDataParallel(
                loss_module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )
        loader = make_loader(train_ds, sampler, collate, cfg.workers, pin)
        val_loader = None
        if val_ds is not None:
            val_sampler = KeyedBatches(len(val_ds), cfg.batch_size, cfg.seed, train=False, rank=dist.rank, world=dist.world)
            val_loader = make_loader(val_ds, val_sampler, collate, cfg.workers, pin)
        _info(log, dist, f"stage {si + 1}/{len(stages)} {stage.name}: {stage.epochs} epochs, training {', '.join(stage.trainable)}"
              f"{', genetic augmentation' if stage.genetic_augment else ''}; {steps} steps of {cfg.batch_size} per epoch")

        for e in range(first_epoch, stage.epochs):
            torch.manual_seed(_epoch_seed(cfg.seed, global_epoch, dist.rank))
            sampler.set_epoch(global_epoch)
            for name, m in modules.items():
                m.train(name in stage.trainable)
            lr_start = opt.param_groups[0]["lr"]
            t0 = time.perf_counter()
            tot, n_seen, sums = 0.0, 0, {}
            bar = None
            if progress and dist.is_main:
                from tqdm.auto import tqdm

                bar = tqdm(total=steps, desc=f"{stage.name} {e + 1}/{stage.epochs}", leave=False, disable=None, unit="batch")
            for batch in loader:
                batch = _to_device(batch, device)
                nb = batch["image"].shape[0]
                with _autocast(cfg, device):
                    loss, metrics = loss_module(batch, stage)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{stage.name} epoch {e + 1}: loss is {loss.item()} (lower --lr?)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                lv = float(loss.detach())
                tot += lv * nb
                n_seen += nb
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * nb
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.4f}")
                    bar.update(1)
            if bar is not None:
                bar.close()
            keys = sorted(sums)
            red = dist.sum([tot, n_seen, *[sums[k] for k in keys]])
            tot, n_seen, sums = red[0], red[1], dict(zip(keys, red[2:]))
            seconds = time.perf_counter() - t0
            row = {"EPOCH": global_epoch + 1, "STAGE": stage.name, "STAGE_EPOCH": e + 1, "LR": lr_start,
                   "TRAIN_LOSS": tot / n_seen, "SECONDS": seconds, "SAMPLES_PER_S": n_seen / seconds if seconds > 0 else float("nan")}
            row.update(_mean_metrics(sums, n_seen, "TRAIN"))
            if val_loader is not None:
                row.update(_validate(method, modules, val_loader, stage, cfg, device, dist, keys))
            row["TRAIN_MI"] = row.get("TRAIN_MI", float("nan"))
            row["VAL_MI"] = row.get("VAL_MI", float("nan"))
            row["MI_GAP"] = row["TRAIN_MI"] - row["VAL_MI"]
            row.setdefault("VAL_LOSS", float("nan"))
            history.append(row)
            global_epoch += 1
            done_stage = e + 1 == stage.epochs
            if dist.is_main:
                pos = {"stage": si + 1 if done_stage else si, "epoch": 0 if done_stage else e + 1, "global_epoch": global_epoch}
                ckpt_mod.save_checkpoint({**base, "modules": modules.state_dict(),
                                          "optimizer": None if done_stage else opt.state_dict(),
                                          "scheduler": None if done_stage else sched.state_dict(),
                                          "position": pos, "complete": False, "rng": _rng_state(), "history": history},
                                         out / "last.pt")
                _write_history(out, history)
                mi = f", MI train {row['TRAIN_MI']:.4f} val {row['VAL_MI']:.4f}" if not math.isnan(row["TRAIN_MI"]) else ""
                _info(log, dist, f"epoch {global_epoch} ({stage.name} {e + 1}/{stage.epochs}): train loss {row['TRAIN_LOSS']:.5f}, "
                      f"val loss {row['VAL_LOSS']:.5f}{mi}, {row['SAMPLES_PER_S']:.2f} samples/s")
            dist.barrier()
            if on_epoch_end is not None:
                on_epoch_end(global_epoch)

    for m in modules.values():
        m.requires_grad_(True)
    if dist.is_main:
        total = sum(s.epochs for s in stages)
        ckpt_mod.save_checkpoint({**base, "modules": modules.state_dict(), "optimizer": None, "scheduler": None,
                                  "position": {"stage": len(stages), "epoch": 0, "global_epoch": total}, "complete": True,
                                  "rng": _rng_state(), "history": history}, out / "model.pt")
        _write_history(out, history)
        _info(log, dist, f"final model: {out / 'model.pt'} ({total} epochs)")
    dist.barrier()
    return out / "model.pt"


@torch.no_grad()
def _validate(method, modules, loader, stage, cfg, device, dist: Dist, keys) -> dict:
    """Validation loss and metrics on the centre crops with all SNPs (no augmentation)."""
    modules.eval()
    tot, n, sums, counts = 0.0, 0, {}, {}
    for batch in loader:
        if batch is None:
            continue
        batch = _to_device(batch, device)
        nb = batch["image"].shape[0]
        with _autocast(cfg, device):
            loss, metrics = method.loss(modules, batch, stage)
        tot += float(loss) * nb
        n += nb
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v) * nb
            counts[k] = counts.get(k, 0) + nb
    # every rank must reduce the same list: use the training metrics' names, known everywhere
    keys = list(keys)
    red = dist.sum([tot, n, *[sums.get(k, 0.0) for k in keys], *[counts.get(k, 0) for k in keys]])
    tot, n = red[0], red[1]
    out = {"VAL_LOSS": tot / n if n else float("nan")}
    for j, k in enumerate(keys):
        c = red[2 + len(keys) + j]
        if k != "loss":
            out[f"VAL_{k.upper()}"] = red[2 + j] / c if c else float("nan")
    return out
