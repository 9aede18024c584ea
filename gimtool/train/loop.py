"""The training loop. It knows no method by name: a method (gimtool.model.methods) builds its
modules, lists its stages (which modules train, whether the genotypes are augmented) and
computes its loss; the loop runs the stages with Adam at a constant or cosine-annealed rate,
validates, logs and checkpoints every epoch, and resumes exactly. On SIGINT or SIGTERM (under
the CLI, see gimtool.signals) it writes last.pt at the next step boundary and stops; --resume
continues from that step with the result of an uninterrupted run.

Outputs in the run folder: ``last.pt`` (every epoch, atomic), ``model.pt`` (at the end),
``history.tsv`` and ``history.png`` (per-epoch losses and the MI train-versus-validation gap),
``config.toml`` (the resolved config).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import torch

from gimtool import signals
from gimtool.errors import InputError
from gimtool.conventions import TRAIN_HISTORY_COLS
from gimtool.io.atomic import atomic_path, atomic_write_text
from gimtool.train import checkpoint as ckpt_mod
from gimtool.train.config import TrainConfig, aug_fraction, crop_shape, stage_epochs
from gimtool.train.data import Collate, KeyedBatches, PairDataset, Pairs, make_loader, pair_samples
from gimtool.model import losses
from gimtool.model.distributed import gather_rows
from gimtool.model.methods import LossModule
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
    positions = None
    if geno is not None:
        from gimtool.train.freq import a1_frequencies

        # the standardized genetic input uses the training people's frequencies (model.genetic)
        positions = {**geno.positions(), "af": a1_frequencies(geno.genotypes, train.geno_index)}
    return RunData(
        image_path=str(image_path), geno_path=None if geno is None else str(geno_path),
        train=train, val=val, shape=tuple(images.shape), grid=ckpt_mod.grid_of(images), crop=crop,
        n_snps=0 if geno is None else geno.n_snps, snp_hash=None if geno is None else geno.snp_hash,
        positions=positions,
    )


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


def resolve_model(cfg: TrainConfig, data: RunData) -> TrainConfig:
    """The settings that depend on the data, fixed before the modules are built: the grid the
    image encoder's dense layer reads (ModelConfig.flatten_mm). The checkpoint and config.toml
    store the resolved grid, which is what `embed` builds; a resume resolves the same grid again."""
    grid = cfg.model.resolved_flatten_grid(tuple(data.crop), tuple(data.grid["voxel_size"]))
    if grid == cfg.model.flatten_grid:
        return cfg
    return dataclasses.replace(cfg, model=cfg.model.replace(flatten_grid=grid))


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
    terms = [c for c in ("JSE", "RECON", "TEACHER") if f"TRAIN_{c}" in df.columns]  # gim: its loss terms apart
    fig, axes = plt.subplots(1, 2 + len(terms), figsize=(5 * (2 + len(terms)), 3.8))
    for ax, (col, title) in zip(axes, [("LOSS", "loss")] + [(t, {"JSE": "JSE term", "RECON": "reconstruction MSE", "TEACHER": "teacher MSE"}[t]) for t in terms]):
        ax.plot(ep, df[f"TRAIN_{col}"].to_numpy(), "o-", label="train", ms=3)
        if f"VAL_{col}" in df.columns and df[f"VAL_{col}"].null_count() < df.height:
            ax.plot(ep, df[f"VAL_{col}"].to_numpy(), "s-", label="validation", ms=3)
        if col == "JSE":
            ax.axhline(2 * math.log(2), color="grey", lw=0.8, ls=":", label="2 ln 2 (no information)")
        ax.set(xlabel="epoch", ylabel=title, title=title)
        ax.legend()
    ax = axes[-1]
    if df["TRAIN_MI"].null_count() < df.height:
        ax.plot(ep, df["TRAIN_MI"].to_numpy(), "o-", label="train", ms=3)
        if df["VAL_MI"].null_count() < df.height:
            ax.plot(ep, df["VAL_MI"].to_numpy(), "s-", label="validation", ms=3)
            ax.fill_between(ep, df["VAL_MI"].to_numpy().astype(float), df["TRAIN_MI"].to_numpy().astype(float), alpha=0.2, label="gap")
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")  # no information (the maximum, 2 ln 2, would flatten the curves)
        ax.set(xlabel="epoch", ylabel="JSE MI estimate (nats)", title="MI: train vs validation (whole set)")
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
        with signals.deferred():  # a signal stops the run at the next step, with a checkpoint
            return _train(_Run(cfg, method, data, out, log, dist, on_epoch_end, progress, resume))
    finally:
        dist.close()


class _Batches(KeyedBatches):
    """The training batches, able to start an epoch at a given step (a resume after an interrupt:
    batches are keyed by epoch and index, so the rest of the epoch is what it would have been)."""

    skip = 0

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


def _stop_requested(dist: Dist) -> bool:
    """A SIGINT or SIGTERM is pending on any process (all processes agree: they stop together)."""
    stop = signals.pending() is not None
    return dist.sum([float(stop)])[0] > 0 if dist.enabled else stop


@dataclass
class _Run:
    """One training run: its inputs and the state that a checkpoint saves and a resume restores."""

    cfg: TrainConfig
    method: object
    data: RunData
    out: Path
    log: object
    dist: Dist
    on_epoch_end: Callable[[int], None] | None
    progress: bool
    resume: bool = False
    modules: torch.nn.ModuleDict | None = None
    base: dict | None = None
    history: list | None = None
    global_epoch: int = 0
    # model selection: the best validation figure so far (higher is better), its epoch, and how
    # many epochs have passed without improvement (early stopping)
    best: float = -math.inf
    best_epoch: int = 0
    since_best: int = 0
    partial: dict | None = None  # an epoch interrupted part way (from last.pt): its step, sums and RNG

    def info(self, msg: str) -> None:
        if self.log is not None and self.dist.is_main:
            self.log.info(msg)

    def selection(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "since_best": self.since_best}


def _train(run: _Run) -> Path:
    run.cfg = resolve_model(run.cfg, run.data)
    cfg, method, data, dist = run.cfg, run.method, run.data, run.dist
    if dist.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.out / "config.toml", cfg.save_toml())
    run.modules = build_modules(method, cfg, data.crop, data.n_snps).to(dist.device)
    run.base = {
        "method": method.name, "config": cfg.to_dict(), "snp_hash": data.snp_hash, "n_snps": data.n_snps,
        "grid": data.grid, "crop": list(data.crop), "n_train": int(data.train.image_index.size),
        "n_val": 0 if data.val is None else int(data.val.image_index.size),
    }
    n_params = sum(p.numel() for p in run.modules.parameters())
    run.info(f"method {method.name}: {n_params:,} parameters in {', '.join(run.modules.keys())}; crop {data.crop} of grid {data.shape}; "
             f"dense layer on {'x'.join(map(str, cfg.model.flatten_grid))} cells of the last maps; {data.n_snps} SNPs")
    if not method.trains:
        _save(run, run.out / "model.pt", {"stage": 0, "epoch": 0, "global_epoch": 0}, complete=True)
        run.info(f"--method {method.name} does not train: saved the seeded initial weights to {run.out / 'model.pt'}")
        dist.barrier()
        return run.out / "model.pt"
    stages = _stages(run)
    run.history = []
    start_stage, start_epoch, opt_state = 0, 0, None
    if run.resume:
        start_stage, start_epoch, opt_state = _resume(run, stages)
    elif "teacher" in getattr(method, "optional_modules", ()) and cfg.model.teacher_weight > 0 and not cfg.model.uses_teacher:
        run.info("teacher_weight > 0 is ignored with genetic_encoder = 'transformer' (no voxel teacher)")
    elif "teacher" in run.modules:  # fixed targets for gim's teacher term (model.teacher), fit once
        from gimtool.train.teacher import fit_run_teacher

        fit_run_teacher(run.modules["teacher"], cfg, data, cfg.seed, dist, run.log if dist.is_main else None,
                        run.progress and dist.is_main)
    datasets = _datasets(run)
    run.global_epoch = sum(s.epochs for s in stages[:start_stage]) + start_epoch
    stopped = run.since_best >= cfg.patience > 0
    for si in range(start_stage, len(stages)):
        if stopped:
            break
        first = start_epoch if si == start_stage else 0
        if first < stages[si].epochs and stages[si].trainable:
            stopped = _run_stage(run, si, stages, first, datasets, opt_state if si == start_stage else None)
    for m in run.modules.values():
        m.requires_grad_(True)
    total = sum(s.epochs for s in stages)
    if stopped:
        run.info(f"early stopping: validation {_selection_name(run)} has not improved for {cfg.patience} epochs "
                 f"(best {run.best:.4f} at epoch {run.best_epoch})")
    _save(run, run.out / "model.pt", {"stage": len(stages), "epoch": 0, "global_epoch": total}, complete=True)
    if dist.is_main:
        _write_history(run.out, run.history)
        run.info(f"final model: {run.out / 'model.pt'} ({run.global_epoch} epochs)"
                 + (f"; best.pt: epoch {run.best_epoch}" if run.best_epoch else ""))
    dist.barrier()
    return run.out / "model.pt"


def _stages(run: _Run) -> list:
    method = run.method
    stages = method.stages(stage_epochs(run.cfg, list(method.stage_names)))
    optional = set(getattr(method, "optional_modules", ())) - set(run.modules.keys())
    stages = [dataclasses.replace(s, trainable=tuple(t for t in s.trainable if t not in optional)) for s in stages]
    for s in stages:
        unknown = [t for t in s.trainable if t not in run.modules]
        if unknown:
            raise ValueError(f"method {method.name} stage {s.name}: trainable {unknown} not among modules {list(run.modules.keys())}")
    return stages


def _resume(run: _Run, stages) -> tuple[int, int, dict | None]:
    """Restore modules, history, selection and RNG from last.pt: (stage, epochs done in it, optimizer state)."""
    path = run.out / "last.pt"
    if not path.is_file():
        raise InputError(f"--resume: {path} not found (nothing to resume; run without --resume)")
    ck = ckpt_mod.load_checkpoint(path)
    ckpt_mod.check_compatible(ck, path, method=run.method.name, snp_hash=run.data.snp_hash, grid=run.data.grid)
    if list(ck["crop"]) != list(run.data.crop):
        raise InputError(f"{path}: checkpoint crop {tuple(ck['crop'])} differs from this run's {run.data.crop} (crop_mm changed?)")
    # checkpoints from before lr_schedule existed were all trained on the cosine
    old_schedule = ck["config"].get("lr_schedule", "cosine")
    if old_schedule != run.cfg.lr_schedule:
        raise InputError(f"{path}: checkpoint was trained with lr_schedule = {old_schedule!r}, this run uses "
                         f"{run.cfg.lr_schedule!r}; set lr_schedule = {old_schedule!r} in the TOML to resume it")
    old_epochs = ck["config"].get("epochs")
    if old_epochs != run.cfg.to_dict()["epochs"]:
        run.info(f"--resume: epochs changed from {old_epochs} to {run.cfg.epochs}")
    run.modules.load_state_dict(ck["modules"])
    run.history = list(ck["history"])
    sel = ck.get("selection") or {}
    run.best, run.best_epoch, run.since_best = sel.get("best", -math.inf), sel.get("best_epoch", 0), sel.get("since_best", 0)
    si, se = int(ck["position"]["stage"]), int(ck["position"]["epoch"])
    run.partial = ck["position"].get("partial")
    _set_rng_state(ck.get("rng"))
    run.info(f"resumed from {path}: stage {si + 1} ({stages[min(si, len(stages) - 1)].name}), {se} epoch(s) done in it, {len(run.history)} in all")
    opt = None if ck["optimizer"] is None else {"optimizer": ck["optimizer"], "scheduler": ck["scheduler"]}
    return si, se, opt


def _datasets(run: _Run) -> dict:
    """Training and validation datasets and the collate function (one random crop per person;
    two-view methods draw their views from it, seeded per person by batch['aug_seed'])."""
    data, method, cfg = run.data, run.method, run.cfg
    mask_snps = getattr(cfg.model, "genetic_encoder", "transformer") != "transformer"  # fixed-array encoders
    train_ds = PairDataset(data.image_path, data.geno_path, data.train, data.crop, 1, method.needs_genotypes, mask_snps)
    val_ds = None if data.val is None else PairDataset(data.image_path, data.geno_path, data.val, data.crop, 1,
                                                      method.needs_genotypes, mask_snps)
    if len(train_ds) < cfg.batch_size:
        raise InputError(f"training set: {len(train_ds)} people, fewer than --batch-size {cfg.batch_size}")
    collate = Collate(data.positions if method.needs_genotypes else None, 1, mask_snps)
    return {"train": train_ds, "val": val_ds, "collate": collate}


def _optimizer(run: _Run, stage) -> torch.optim.Optimizer:
    """Adam over the stage's trainable modules; the critic and the genetic encoder may have their
    own learning rate and weight decay (cfg.lr_critic, cfg.critic_weight_decay)."""
    cfg = run.cfg
    fast = ("critic", "genetic")
    groups = []
    for name in stage.trainable:
        own = name in fast
        groups.append({"params": list(run.modules[name].parameters()),
                       "lr": (cfg.lr_critic or cfg.lr) if own else cfg.lr,
                       "weight_decay": (cfg.critic_weight_decay if cfg.critic_weight_decay is not None else cfg.weight_decay)
                       if own else cfg.weight_decay})
    return torch.optim.Adam(groups, lr=cfg.lr)


def _constant_lr(step: int) -> float:
    return 1.0


def _run_stage(run: _Run, si: int, stages, first_epoch: int, datasets: dict, opt_state: dict | None) -> bool:
    """Train one stage from `first_epoch`; returns True when early stopping ended the run."""
    cfg, dist, method, stage = run.cfg, run.dist, run.method, stages[si]
    for name, m in run.modules.items():
        m.requires_grad_(name in stage.trainable)
    opt = _optimizer(run, stage)
    sampler = _Batches(len(datasets["train"]), cfg.batch_size, cfg.seed, train=True, rank=dist.rank, world=dist.world,
                           augment=stage.genetic_augment and method.needs_genotypes, n_snps=run.data.n_snps,
                           crop_p=cfg.geno_crop_p, fraction=aug_fraction(cfg, run.data.n_snps))
    steps = len(sampler)
    if cfg.lr_schedule == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _constant_lr)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, stage.epochs * steps), eta_min=cfg.min_lr)
    if opt_state is not None:
        opt.load_state_dict(opt_state["optimizer"])
        sched.load_state_dict(opt_state["scheduler"])
    loss_module = LossModule(method, run.modules)
    if dist.enabled:
        device = dist.device
        loss_module = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    pin = dist.device.type == "cuda"
    loader = make_loader(datasets["train"], sampler, datasets["collate"], cfg.workers, pin)
    val_loader = None
    if datasets["val"] is not None:
        val_sampler = KeyedBatches(len(datasets["val"]), cfg.batch_size, cfg.seed, train=False, rank=dist.rank, world=dist.world)
        val_loader = make_loader(datasets["val"], val_sampler, datasets["collate"], cfg.workers, pin)
    teacher = run.modules["teacher"] if "teacher" in run.modules else None
    idle = " (teacher inactive: teacher_head gets no gradient)" if (
        "teacher_head" in stage.trainable and teacher is not None and not bool(teacher.active)) else ""
    run.info(f"stage {si + 1}/{len(stages)} {stage.name}: {stage.epochs} epochs, training {', '.join(stage.trainable)}"
             f"{', genetic augmentation' if stage.genetic_augment else ''}; {steps} steps of {cfg.batch_size} per epoch{idle}")
    for e in range(first_epoch, stage.epochs):
        partial, run.partial = run.partial, None  # only the first epoch of a resumed stage
        if partial is None:
            torch.manual_seed(_epoch_seed(cfg.seed, run.global_epoch, dist.rank))
        sampler.set_epoch(run.global_epoch)
        sampler.skip = partial["step"] if partial else 0
        row, keys = _train_epoch(run, stage, (si, e), loader, loss_module, opt, sched, steps, partial)
        if val_loader is not None:
            row.update(_validate(method, run.modules, val_loader, stage, cfg, dist.device, dist, keys))
        row["TRAIN_MI"] = row.get("TRAIN_MI", float("nan"))
        row["VAL_MI"] = row.get("VAL_MI", float("nan"))
        row["MI_GAP"] = row["TRAIN_MI"] - row["VAL_MI"]
        row.setdefault("VAL_LOSS", float("nan"))
        run.history.append(row)
        run.global_epoch += 1
        done = e + 1 == stage.epochs
        _end_epoch(run, row, {"stage": si + 1 if done else si, "epoch": 0 if done else e + 1, "global_epoch": run.global_epoch},
                   None if done else opt, None if done else sched)
        if _stop_requested(dist):
            signals.interrupt(f"checkpoint {run.out / 'last.pt'} at the end of epoch {run.global_epoch}: "
                              "rerun with --resume to continue")
        if run.since_best >= cfg.patience > 0:
            return True
    return False


def _train_epoch(run: _Run, stage, where: tuple[int, int], loader, loss_module, opt, sched, steps: int,
                 partial: dict | None = None) -> tuple[dict, list[str]]:
    """One pass over the training batches (stage index and epoch `where`): the history row's
    training columns, and the metric names. `partial`: the part done before an interrupt (the
    sampler skips its steps). A pending signal saves last.pt after the current step and stops."""
    cfg, dist = run.cfg, run.dist
    si, e = where
    for name, m in run.modules.items():
        m.train(name in stage.trainable)
    lr_start = opt.param_groups[0]["lr"] if partial is None else partial["lr_start"]
    t0 = time.perf_counter() - (partial["seconds"] if partial else 0.0)
    tot, n_seen, sums, step = 0.0, 0, {}, 0
    if partial is not None:
        step = partial["step"]
        if dist.is_main:  # the sums saved are over all processes
            tot, n_seen, sums = partial["tot"], partial["n_seen"], dict(partial["sums"])
    bar = None
    if run.progress and dist.is_main:
        from gimtool.progress import bar as progress_bar

        bar = progress_bar(total=steps, initial=step, desc=f"train {stage.name} {e + 1}/{stage.epochs}", unit="batch")
    batches = iter(loader)
    if partial is not None:
        _set_rng_state(partial["rng"])  # after the loader drew its seeds: the RNG of the interrupted run
    for batch in batches:
        batch = _to_device(batch, dist.device)
        nb = batch["image"].shape[0]
        with _autocast(cfg, dist.device):
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
        step += 1
        if _stop_requested(dist):
            if bar is not None:
                bar.close()
            _save_interrupted(run, (si, e, step), (tot, n_seen, sums), lr_start, time.perf_counter() - t0, opt, sched)
            signals.interrupt(f"checkpoint {run.out / 'last.pt'} at epoch {run.global_epoch + 1}, step {step} of "
                              f"{steps}: rerun with --resume to continue")
    if bar is not None:
        bar.close()
    keys = sorted(sums)
    red = dist.sum([tot, n_seen, *[sums[k] for k in keys]])
    tot, n_seen, sums = red[0], red[1], dict(zip(keys, red[2:]))
    seconds = time.perf_counter() - t0
    row = {"EPOCH": run.global_epoch + 1, "STAGE": stage.name, "STAGE_EPOCH": e + 1, "LR": lr_start,
           "TRAIN_LOSS": tot / n_seen, "SECONDS": seconds, "SAMPLES_PER_S": n_seen / seconds if seconds > 0 else float("nan")}
    row.update(_mean_metrics(sums, n_seen, "TRAIN"))
    return row, keys


def _selection_name(run: _Run) -> str:
    return "MI" if run.method.needs_genotypes and hasattr(run.method, "critic_projections") else "loss"


def _end_epoch(run: _Run, row: dict, position: dict, opt, sched) -> None:
    """Model selection, last.pt (and best.pt when the validation figure improved), history, log line."""
    figure = row["VAL_MI"] if _selection_name(run) == "MI" else -row["VAL_LOSS"]
    improved = math.isfinite(figure) and figure > run.best
    if improved:
        run.best, run.best_epoch, run.since_best = figure, run.global_epoch, 0
    elif math.isfinite(figure):
        run.since_best += 1
    _save(run, run.out / "last.pt", position, complete=False, opt=opt, sched=sched)
    if improved:
        _save(run, run.out / "best.pt", position, complete=False)
    if run.dist.is_main:
        _write_history(run.out, run.history)
        mi = f", MI train {row['TRAIN_MI']:.4f} val {row['VAL_MI']:.4f}" if not math.isnan(row["TRAIN_MI"]) else ""
        run.info(f"epoch {run.global_epoch} ({row['STAGE']} {row['STAGE_EPOCH']}): train loss {row['TRAIN_LOSS']:.5f}, "
                 f"val loss {row['VAL_LOSS']:.5f}{mi}, {row['SAMPLES_PER_S']:.2f} samples/s{' (best)' if improved else ''}")
    run.dist.barrier()
    if run.on_epoch_end is not None:
        run.on_epoch_end(run.global_epoch)


def _save_interrupted(run: _Run, where: tuple[int, int, int], done: tuple, lr_start: float, seconds: float,
                      opt, sched) -> None:
    """last.pt part way through an epoch: the position (stage, epoch, steps done), the epoch's sums
    so far over all processes, and the RNG, so that --resume finishes the epoch exactly."""
    si, e, step = where
    tot, n_seen, sums = done
    keys = sorted(sums)
    red = run.dist.sum([tot, n_seen, *[sums[k] for k in keys]])
    partial = {"step": step, "tot": red[0], "n_seen": red[1], "sums": dict(zip(keys, red[2:])), "lr_start": lr_start,
               "seconds": seconds, "rng": _rng_state()}
    _save(run, run.out / "last.pt", {"stage": si, "epoch": e, "global_epoch": run.global_epoch, "partial": partial},
          complete=False, opt=opt, sched=sched)
    run.dist.barrier()


def _save(run: _Run, path: Path, position: dict, complete: bool, opt=None, sched=None) -> None:
    if not run.dist.is_main:
        return
    ckpt_mod.save_checkpoint({**run.base, "modules": run.modules.state_dict(),
                              "optimizer": None if opt is None else opt.state_dict(),
                              "scheduler": None if sched is None else sched.state_dict(),
                              "position": position, "complete": complete, "rng": _rng_state(),
                              "history": list(run.history or []), "selection": run.selection()}, path)


@torch.no_grad()
def _validate(method, modules, loader, stage, cfg, device, dist: Dist, keys) -> dict:
    """Validation loss and metrics on the centre crops with all SNPs (no augmentation).

    Methods with a separable critic (`critic_projections`) also get VAL_MI over the whole
    validation set at once, every other person a negative: far less noisy than the mean over
    batches of 12, and what model selection and early stopping use.
    """
    modules.eval()
    tot, n, sums, counts = 0.0, 0, {}, {}
    us, vs, scale = [], [], None
    whole_set = hasattr(method, "critic_projections")
    for batch in loader:
        if batch is None:
            continue
        batch = _to_device(batch, device)
        nb = batch["image"].shape[0]
        with _autocast(cfg, device):
            loss, metrics = method.loss(modules, batch, stage)
            if whole_set:
                u, v, scale = method.critic_projections(modules, batch, stage)
                us.append(u.float())
                vs.append(v.float())
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
    if whole_set:
        k = int(modules["critic"].x_head[-1].out_features)
        U = gather_rows(torch.cat(us) if us else torch.zeros(0, k, device=device))
        V = gather_rows(torch.cat(vs) if vs else torch.zeros(0, k, device=device))
        if U.shape[0] >= 2:
            out["VAL_MI"] = float(losses.jse_mi(losses.jse_loss_separable(U, V, scale)))
    return out
