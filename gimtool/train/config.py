"""Every training hyperparameter in one typed, validated object.

Precedence: the defaults below (the paper's, section 4 and appendix B) < a TOML file
(``--config FILE.toml``) < command-line flags. The resolved config is saved in the checkpoint
and in ``<out>/config.toml``, so a run can be repeated from its own output.

TOML layout (keys are the field names of :class:`TrainConfig`; the model's own settings go in
a ``[model]`` table with the field names of ``gimtool.model.config.ModelConfig``)::

    method = "gim"
    lr = 1e-3
    batch_size = 12
    epochs = [200, 100, 50]     # one number per stage of the method, or the total as one number
    crop_mm = 160.0             # 0 (the default) = whole volumes
    [model]
    ...
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from gimtool.errors import InputError
from gimtool.model.config import ModelConfig  # plain dataclasses: no torch import

# The paper's array (UK Biobank Axiom, 658,720 SNPs) was down-sampled to 65,000 SNPs for the
# genetic augmentation; on other arrays the same fraction is kept.
PAPER_ARRAY_SNPS = 658_720
PAPER_AUG_SNPS = 65_000


def _default_model_config() -> ModelConfig:
    return ModelConfig()


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (see the module docstring for the TOML layout)."""

    method: str = "gim"
    # optimiser and schedule: Adam with a cosine-annealed learning rate, restarted per stage
    lr: float = 1e-3
    weight_decay: float = 0.0
    # the critic and the genetic encoder may learn on their own time scale (None: lr, weight_decay)
    lr_critic: float | None = None
    critic_weight_decay: float | None = 1e-2  # held-out MI of the critic turned positive with it (README)
    min_lr: float = 0.0
    # "cosine": annealed from lr to min_lr over each stage (the paper); "constant": lr throughout.
    # On cpu-large the seed whose critic had not started by epoch 5 never did under the cosine
    # decay (validation MI <= 0.012 in 10 epochs) and did at a constant rate (0.158 at epoch 10;
    # benchmarks/results/gim_lr_schedule.md); with lambda_recon 10 the constant rate gave the
    # best gim of every setting tried (gim_lambda_recon.md). The autoencoder is indifferent.
    lr_schedule: str = "constant"
    # early stopping: stop when the validation figure (MI for methods with a critic, else the
    # loss) has not improved for this many epochs; 0 = never. best.pt holds the best epoch.
    patience: int = 0
    batch_size: int = 12
    # epochs: None = the method's defaults (gim: the paper's 200, 100, 50; one-stage methods:
    # the same 350-epoch budget); an int = the total, split over the stages by the method
    # (gim 4:2:1); a list = one number per stage
    epochs: int | list[int] | None = None
    # gim's schedule when epochs is one number or None: "cotrain" trains every module from the
    # first epoch (all epochs in the co-train stage); "paper" splits them 4:2:1 over the paper's
    # frozen-genetic, genetic-augment and co-train stages (None: 200, 100, 50). A frozen genetic
    # encoder at random initialisation leaves the critic blind (README, "Paper versus practice").
    schedule: str = "cotrain"
    # random 3D crops of crop_mm millimetres per side (the paper's 160: 160 voxels at 1 mm, 40 at
    # 4 mm), clipped to the grid; validation uses the centre crop of the same size. 0 = the whole
    # volume at every step, as embed sees it: on random crops the crop's position is 96 % of z's
    # variance and gim's critic does not learn (benchmarks/results/gim_critic_guided.md)
    crop_mm: float = 0.0
    # genetic augmentation (stages with genetic_augment): with p = geno_crop_p a random
    # contiguous crop, otherwise an even down-sampling; both keep geno_aug_fraction of the SNPs
    geno_crop_p: float = 0.2
    geno_aug_fraction: float = PAPER_AUG_SNPS / PAPER_ARRAY_SNPS
    # density floor: the augmentation keeps at least this many SNPs (all of a smaller array).
    # The paper's 9.9 % of a 659k array is 65k SNPs, about one every 46 kb; on an array of a few
    # thousand SNPs the same fraction leaves causal loci untagged. 0 = the fraction everywhere.
    geno_aug_min_snps: int = 20_000
    workers: int = 0
    seed: int = 1
    device: str = "cpu"
    threads: int = 1
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on the CPU)
    model: ModelConfig = field(default_factory=_default_model_config)
    # the paper's settings wherever gimtool's defaults depart from them (PAPER_SETTINGS below)
    paper: bool = False

    # -- validation ------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        def bad(key: str, expected: str) -> InputError:
            return InputError(f"config key {key!r}: expected {expected}, got {getattr(self, key)!r}")

        if not isinstance(self.method, str) or not self.method:
            raise bad("method", "a method name")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a positive number")
        if not (isinstance(self.crop_mm, (int, float)) and math.isfinite(self.crop_mm) and self.crop_mm >= 0):
            raise bad("crop_mm", "a number >= 0 (0 = whole volumes)")
        if self.lr_critic is not None and not (math.isfinite(self.lr_critic) and self.lr_critic > 0):
            raise bad("lr_critic", "a positive number")
        if self.critic_weight_decay is not None and not (math.isfinite(self.critic_weight_decay) and self.critic_weight_decay >= 0):
            raise bad("critic_weight_decay", "a number >= 0")
        if self.lr_schedule not in ("cosine", "constant"):
            raise bad("lr_schedule", "'cosine' or 'constant'")
        if self.schedule not in ("cotrain", "paper"):
            raise bad("schedule", "'cotrain' or 'paper'")
        if not (isinstance(self.geno_aug_min_snps, int) and self.geno_aug_min_snps >= 0):
            raise bad("geno_aug_min_snps", "an integer >= 0")
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise bad("patience", "an integer >= 0")
        for key in ("weight_decay", "min_lr"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise bad(key, "a number >= 0")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise bad("batch_size", "an integer >= 1")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            raise bad("workers", "an integer >= 0")
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise bad("threads", "an integer >= 1")
        if not isinstance(self.seed, int):
            raise bad("seed", "an integer")
        if not (isinstance(self.geno_crop_p, (int, float)) and 0 <= self.geno_crop_p <= 1):
            raise bad("geno_crop_p", "a probability in [0, 1]")
        if not (isinstance(self.geno_aug_fraction, (int, float)) and 0 < self.geno_aug_fraction <= 1):
            raise bad("geno_aug_fraction", "a fraction in (0, 1]")
        ep = self.epochs
        ok = ep is None or (isinstance(ep, int) and not isinstance(ep, bool) and ep >= 0) or (
            isinstance(ep, list) and ep and all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in ep)
        )
        if not ok:
            raise bad("epochs", "an integer >= 0 or a list of them (one per stage)")
        if not isinstance(self.device, str):
            raise bad("device", "cpu, cuda or cuda:N")
        return self

    # -- conversion ------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain nested dict (saved in checkpoints; loads with weights_only=True)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["epochs"] = list(self.epochs) if isinstance(self.epochs, (list, tuple)) else self.epochs
        m = self.model
        d["model"] = m.to_dict() if hasattr(m, "to_dict") else dataclasses.asdict(m)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config", model_cls=None) -> "TrainConfig":
        """Build from a (possibly partial) dict; unknown keys and wrong types raise InputError naming the key."""
        cfg = cls(model=(model_cls or ModelConfig)())
        cfg.update(d, source=source, model_cls=model_cls)
        return cfg.validate()

    def update(self, d: dict, source: str = "config", model_cls=None) -> "TrainConfig":
        """Override fields from a dict (a TOML file or CLI flags); None values are ignored."""
        names = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self))
        for key, value in d.items():
            if value is None:
                continue
            if key not in names:
                raise InputError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(names))})")
            if key == "model":
                if not isinstance(value, dict):
                    raise InputError(f"{source}: key 'model' must be a table of model settings")
                mcls = model_cls or (type(self.model) if self.model is not None else ModelConfig)
                base = self.model if self.model is not None else mcls()
                self.model = _update_dataclass(base, value, f"{source} [model]")
                continue
            setattr(self, key, _coerce(value, hints[key], f"{source}: key {key!r}"))
        return self

    def save_toml(self) -> str:
        """The resolved config as TOML text (repeatable with --config)."""
        d = self.to_dict()
        model = d.pop("model")
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None]
        lines.append("")
        lines.append("[model]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in model.items() if v is not None]
        return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _coerce(value, hint, what: str):
    """Check a value against a simple type hint (int, float, str, bool, list[int], unions of these)."""
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) else (hint,)
    for opt in options:
        o = typing.get_origin(opt) or opt
        if o is bool and isinstance(value, bool):
            return value
        if o is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if o is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if o is str and isinstance(value, str):
            return value
        if o in (list, tuple) and isinstance(value, (list, tuple)):
            (inner,) = typing.get_args(opt)[:1] or (typing.Any,)
            return o(_coerce(x, inner, what) for x in value)
        if o is typing.Any:
            return value
    names = " or ".join(getattr(typing.get_origin(o) or o, "__name__", str(o)) for o in options)
    raise InputError(f"{what}: expected {names}, got {value!r}")


def _update_dataclass(obj, d: dict, source: str):
    names = {f.name for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, value in d.items():
        if key not in names:
            raise InputError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(names))})")
        changes[key] = _coerce(value, hints.get(key, typing.Any), f"{source}: key {key!r}")
    try:
        return dataclasses.replace(obj, **changes)
    except ValueError as e:  # ModelConfig validates itself and names the field
        raise InputError(f"{source}: {e}") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None, model_cls=None) -> TrainConfig:
    """Defaults < the paper's settings (when `paper = true` in the file or the flags) < TOML file at
    `path` < `overrides` (CLI flags; None = not given)."""
    d: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        try:
            d = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{path}: not valid TOML ({e})") from None
    paper = bool((overrides or {}).get("paper") or d.get("paper"))
    base = PAPER_SETTINGS if paper else {}
    cfg = TrainConfig.from_dict(base, source="--paper", model_cls=model_cls)
    cfg.update(d, source=str(path) if path else "config", model_cls=model_cls)
    if overrides:
        cfg.update(overrides, source="command line", model_cls=model_cls)
    return cfg.validate()


def parse_epochs(text: str | None) -> int | list[int] | None:
    """`--epochs 5` (every stage) or `--epochs 200,100,50` (one per stage)."""
    if text is None:
        return None
    try:
        parts = [int(t) for t in str(text).split(",")]
    except ValueError:
        raise InputError(f"--epochs {text!r}: expected an integer or comma-separated integers (e.g. 200,100,50)") from None
    return parts[0] if len(parts) == 1 else parts


GIM_STAGE_NAMES = ("frozen-genetic", "genetic-augment", "co-train")  # model.methods.GIM_STAGES (torch-free here)

# one-stage methods get the same budget as gim's three stages (paper: 200 + 100 + 50)
DEFAULT_SINGLE_STAGE_EPOCHS = 350


def stage_epochs(cfg: TrainConfig, stage_names: list[str]) -> dict[str, int] | int:
    """What to pass to Method.stages(): the config's epochs mapped onto the method's stages."""
    cotrain = cfg.schedule == "cotrain" and tuple(stage_names) == GIM_STAGE_NAMES
    if cfg.epochs is None:
        if cotrain:
            return {"frozen-genetic": 0, "genetic-augment": 0, "co-train": DEFAULT_SINGLE_STAGE_EPOCHS}
        return {} if len(stage_names) > 1 else {n: DEFAULT_SINGLE_STAGE_EPOCHS for n in stage_names}
    if isinstance(cfg.epochs, int):
        return {"frozen-genetic": 0, "genetic-augment": 0, "co-train": cfg.epochs} if cotrain else cfg.epochs
    if len(cfg.epochs) != len(stage_names):
        raise InputError(
            f"config key 'epochs': {len(cfg.epochs)} numbers given, but method {cfg.method!r} has "
            f"{len(stage_names)} stage(s) ({', '.join(stage_names)})"
        )
    return dict(zip(stage_names, cfg.epochs))


# Where gimtool's defaults depart from the paper, and the paper's value: `paper = true` (or
# `train --paper`) restores all of them. Why each default departs: README, "Paper versus practice".
PAPER_SETTINGS = {
    "paper": True,
    "schedule": "paper",  # 200 epochs with the genetic encoder frozen, 100 with augmentation, 50 co-training
    "geno_aug_min_snps": 0,  # 9.9 % of the SNPs on every array
    "critic_weight_decay": 0.0,
    "crop_mm": 160.0,  # random 160 mm crops
    "lr_schedule": "cosine",  # annealed per stage
    "model": {
        "lambda_recon": 1.0,
        "genetic_encoder": "transformer",
        "genetic_input": "classes",  # embeddings of 0/1/2/missing
        "critic_standardize": False,
        "critic_snps": 0,
        "critic_guided_dims": 0,
        "critic_hidden": [256],
        "critic_dim": 128,
        "teacher_weight": 0.0,
    },
}


def aug_fraction(cfg: TrainConfig, n_snps: int) -> float:
    """Share of the SNPs the genetic augmentation keeps: geno_aug_fraction, raised so that at
    least geno_aug_min_snps SNPs (or all of the array) are kept."""
    if n_snps < 1:
        return cfg.geno_aug_fraction
    return max(cfg.geno_aug_fraction, min(1.0, cfg.geno_aug_min_snps / n_snps))


def crop_shape(cfg: TrainConfig, grid_shape: tuple[int, ...], voxel_size: tuple[float, ...]) -> tuple[int, int, int]:
    """crop_mm in voxels of this grid, clipped to the grid; crop_mm 0: the whole grid."""
    if cfg.crop_mm == 0:
        return tuple(int(n) for n in grid_shape)
    return tuple(max(1, min(int(n), int(round(cfg.crop_mm / float(v))))) for n, v in zip(grid_shape, voxel_size))
