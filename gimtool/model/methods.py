"""The registry of training methods (`gimtool train --method`).

A Method names its modules (built into one nn.ModuleDict that always holds 'encoder', the MRI
encoder f), its training stages and its loss. The training loop knows no method by name: it
builds the modules, runs the stages (setting requires_grad from Stage.trainable), asks the loader
for genotypes when `needs_genotypes`, and calls `loss(modules, batch, stage)`.

Batch (on the model's device):
    'image'  (B, 1, D, H, W) float32
    'views'  optional list of 2 such tensors for two-view methods; made here when absent
    'geno'   (B, L) int8 (-127 missing), when needs_genotypes
    'chrom', 'bp', 'cm'  (L,) for the SNPs in 'geno' (chrom as integer codes)
    'af'     optional (L,) A1 frequencies of the training people (standardized genetic input)
    'snp_mask' optional (L,) bool
    'aug_seed' optional (B,) int64: per-person seeds of the two-view augmentations (batch-split
             invariant, see model.augment.two_views); without it the global torch RNG is used
Metrics are plain floats; 'mi' is the JSE estimate 2 ln 2 - L_JSE on this batch where defined.
Losses that couple samples (JSE, InfoNCE, Barlow Twins, decorrelation) see the global batch
under torch.distributed (model.distributed.gather_rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import augment, losses
from .config import ModelConfig
from .critic import GenotypeHead, SeparableCritic, mlp
from .distributed import gather_rows
from .genetic import MLPGeneticEncoder, build_genetic_encoder, standardized_dosage
from .mri import MRIDecoder, MRIEncoder
from .teacher import GeneticTeacher


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    trainable: tuple[str, ...]  # modules of the ModuleDict that get gradients; the rest are frozen
    genetic_augment: bool = False  # loader draws a random SNP subset per batch (crop / even down-sampling)


def _cfg(modules: nn.ModuleDict) -> ModelConfig:
    cfg = getattr(modules, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise ValueError("modules were not built by Method.build (no .cfg attribute)")
    return cfg


def _views(batch: dict, cfg: ModelConfig) -> list[torch.Tensor]:
    views = batch.get("views")
    if views is None:
        return augment.two_views(batch["image"], cfg, seeds=batch.get("aug_seed"))
    if len(views) != 2:
        raise ValueError(f"batch['views'] must hold 2 views; got {len(views)}")
    return list(views)


def _snp_args(batch: dict) -> tuple:
    for key in ("geno", "chrom", "bp", "cm"):
        if key not in batch:
            raise ValueError(f"this method needs genotypes: batch has no '{key}'")
    return batch["geno"], batch["chrom"], batch["bp"], batch["cm"], batch.get("snp_mask"), batch.get("af")


def _f(x: torch.Tensor) -> float:
    return float(x.detach())


@dataclass
class Method:
    name: str = ""
    description: str = ""
    needs_genotypes: bool = False
    n_views: int = 1
    trains: bool = True
    module_names: tuple[str, ...] = field(default_factory=tuple)
    # modules built only under some configs (after module_names, in this order); a stage may list
    # them as trainable, and the loop drops them from a stage when they were not built
    optional_modules: tuple[str, ...] = field(default_factory=tuple)

    # -- construction ---------------------------------------------------------------------------
    def build(self, cfg: ModelConfig, image_shape: tuple[int, int, int], n_snps: int) -> nn.ModuleDict:
        """All modules of the method; `modules.cfg` keeps the config for loss()."""
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (D, H, W); got {image_shape}")
        if self.needs_genotypes and n_snps < 1:
            raise ValueError(f"method {self.name} needs genotypes; got n_snps={n_snps}")
        modules = nn.ModuleDict(self._build(cfg, tuple(int(s) for s in image_shape), int(n_snps)))
        modules.cfg = cfg
        names = tuple(modules.keys())
        extra = names[len(self.module_names):]
        assert "encoder" in modules and names[:len(self.module_names)] == self.module_names, (self.name, names)
        assert extra == tuple(m for m in self.optional_modules if m in extra), (self.name, names)
        return modules

    def _build(self, cfg: ModelConfig, image_shape: tuple[int, int, int], n_snps: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The names of the method's stages, in order (what `epochs` lists or maps)."""
        return ("train",)

    def stages(self, epochs: dict[str, int] | int) -> list[Stage]:
        """One stage named 'train' training every module; `epochs` an int or {'train': n}."""
        n = epochs.get("train", 0) if isinstance(epochs, dict) else int(epochs)
        if isinstance(epochs, dict) and set(epochs) - {"train"}:
            raise ValueError(f"method {self.name} has one stage 'train'; got epochs for {sorted(epochs)}")
        return [Stage("train", int(n), self.module_names)]

    # -- training and inference -------------------------------------------------------------------
    def loss(self, modules: nn.ModuleDict, batch: dict, stage: Stage) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def embed(self, modules: nn.ModuleDict, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) -> (B, repr_dim): the GWAS dimensions only."""
        return modules["encoder"].embed(image)


# ---- reconstruction ------------------------------------------------------------------------------


@dataclass
class AutoencoderMethod(Method):
    attentive: bool = False

    def _build(self, cfg, image_shape, n_snps):
        enc = MRIEncoder(cfg, attentive=self.attentive)
        return {"encoder": enc, "decoder": MRIDecoder(cfg, enc.code_dim)}

    def loss(self, modules, batch, stage):
        image = batch["image"]
        out = modules["encoder"](image)
        recon = losses.reconstruction_mse(modules["decoder"](out.code(), image.shape[2:]), image)
        return recon, {"loss": _f(recon), "recon": _f(recon)}


@dataclass
class GenPredictionMethod(Method):
    def _build(self, cfg, image_shape, n_snps):
        n = min(n_snps, cfg.genpred_max_snps)
        index = torch.linspace(0, n_snps - 1, n).round().long()  # an even subset along the array
        return {"encoder": MRIEncoder(cfg, attentive=False), "head": GenotypeHead(cfg.repr_dim, index)}

    def loss(self, modules, batch, stage):
        geno = _snp_args(batch)[0]
        head = modules["head"]
        n_built = int(head.snp_index.max()) + 1
        if geno.shape[1] < n_built:
            raise ValueError(f"gen-prediction was built for the full array ({n_built}+ SNPs); batch has {geno.shape[1]}")
        logits = head(modules["encoder"](batch["image"]).z)
        loss = losses.genotype_prediction_loss(logits, geno[:, head.snp_index.to(geno.device)])
        return loss, {"loss": _f(loss), "genpred": _f(loss)}


# ---- image-only two-view methods -----------------------------------------------------------------


@dataclass
class TwoViewMethod(Method):
    kind: str = "simclr"  # simclr | simclr-jse | barlow-twins

    def _build(self, cfg, image_shape, n_snps):
        dims = cfg.projector_dims
        return {"encoder": MRIEncoder(cfg, attentive=False), "projector": mlp(cfg.repr_dim, dims[:-1], dims[-1])}

    def loss(self, modules, batch, stage):
        cfg = _cfg(modules)
        v1, v2 = _views(batch, cfg)
        enc, proj = modules["encoder"], modules["projector"]
        p1 = gather_rows(proj(enc(v1).z))
        p2 = gather_rows(proj(enc(v2).z))
        if self.kind == "simclr":
            loss = losses.nt_xent(p1, p2, cfg.temperature)
            return loss, {"loss": _f(loss), "nt_xent": _f(loss)}
        if self.kind == "simclr-jse":
            scores = p1 @ p2.t() / p1.shape[1] ** 0.5
            loss = losses.jse_loss(scores)
            return loss, {"loss": _f(loss), "jse": _f(loss), "mi": _f(losses.jse_mi(loss))}
        loss = losses.barlow_twins_loss(p1, p2, cfg.barlow_offdiag)
        return loss, {"loss": _f(loss), "barlow": _f(loss)}


# ---- trans-modal methods -------------------------------------------------------------------------


@dataclass
class InfoNCEMethod(Method):
    """ContIG: MLP genetic encoder, projection heads, symmetric cross-modal NT-Xent."""

    decorrelate: bool = False

    def _build(self, cfg, image_shape, n_snps):
        dims = cfg.projector_dims
        return {
            "encoder": MRIEncoder(cfg, attentive=False),
            "genetic": MLPGeneticEncoder(cfg, n_snps),
            "image_proj": mlp(cfg.repr_dim, dims[:-1], dims[-1]),
            "genetic_proj": mlp(cfg.genetic_out_dim, dims[:-1], dims[-1]),
        }

    def loss(self, modules, batch, stage):
        cfg = _cfg(modules)
        z = gather_rows(modules["encoder"](batch["image"]).z)
        g = gather_rows(modules["genetic"](*_snp_args(batch)))
        scores = losses.cosine_scores(modules["image_proj"](z), modules["genetic_proj"](g), cfg.temperature)
        nce = losses.info_nce(scores)
        metrics = {"infonce": _f(nce)}
        loss = nce
        if self.decorrelate:
            decor = losses.decorrelation_loss(z)
            loss = nce + cfg.lambda_decor * decor
            metrics["decor"] = _f(decor)
        metrics["loss"] = _f(loss)
        return loss, metrics


GIM_STAGES = ("frozen-genetic", "genetic-augment", "co-train")
GIM_DEFAULT_EPOCHS = {"frozen-genetic": 200, "genetic-augment": 100, "co-train": 50}


@dataclass
class GIMMethod(Method):
    """Genetic InfoMax: JSE between z and the genetic embedding + lambda * reconstruction (eq. 5)."""

    def _build(self, cfg, image_shape, n_snps):
        enc = MRIEncoder(cfg, attentive=True)
        genetic = build_genetic_encoder(cfg, n_snps)
        modules = {
            "encoder": enc,
            "decoder": MRIDecoder(cfg, enc.code_dim),
            "genetic": genetic,
            "critic": SeparableCritic(cfg, cfg.repr_dim, cfg.genetic_out_dim, n_snps),
        }
        if cfg.uses_teacher:  # fit before training (gimtool.train.teacher), then fixed
            modules["teacher"] = GeneticTeacher(n_snps, cfg.teacher_snps, cfg.critic_dim)
            modules["teacher_head"] = nn.Linear(cfg.repr_dim, cfg.critic_dim)
        return modules

    @property
    def stage_names(self):
        return GIM_STAGES

    def stages(self, epochs):
        """Paper: 200 epochs with the genetic encoder frozen, 100 more with genetic augmentation,
        50 co-training everything. `epochs` a dict by stage name (missing names: the paper's
        numbers) or an int total split 4:2:1 (each stage >= 1 when the total is >= 3)."""
        if isinstance(epochs, dict):
            unknown = set(epochs) - set(GIM_STAGES)
            if unknown:
                raise ValueError(f"gim stages are {', '.join(GIM_STAGES)}; got {', '.join(sorted(unknown))}")
            n = [int(epochs.get(s, GIM_DEFAULT_EPOCHS[s])) for s in GIM_STAGES]
        else:
            total = int(epochs)
            n3 = max(1, round(total / 7)) if total >= 3 else 0
            n2 = max(1, round(2 * total / 7)) if total >= 3 else 0
            n = [total - n2 - n3, n2, n3]
        frozen = ("encoder", "decoder", "critic", "teacher_head")
        return [
            Stage(GIM_STAGES[0], n[0], frozen, genetic_augment=False),
            Stage(GIM_STAGES[1], n[1], frozen, genetic_augment=True),
            Stage(GIM_STAGES[2], n[2], frozen + ("genetic",), genetic_augment=True),
        ]

    def _genetic(self, modules, batch, stage, z: torch.Tensor | None = None) -> torch.Tensor:
        """The genetic embedding; with the critic's SNP selection, of the selected SNPs only
        (z, the gathered image representation, updates the selection's statistics in training)."""
        geno, chrom, bp, cm, mask, af = _snp_args(batch)
        selector = modules["critic"].selector
        if selector is not None:
            if z is not None and modules["critic"].training:
                z_std = modules["critic"].x_norm.peek(z.detach())
                selector.update(z_std, standardized_dosage(gather_rows(geno), af))
            selector.set_positions(chrom, bp)
            mask = selector.mask(mask)
        snp = (geno, chrom, bp, cm, mask, af)
        if "genetic" in stage.trainable:
            return modules["genetic"](*snp)
        with torch.no_grad():  # frozen: no activations kept for backward
            return modules["genetic"](*snp)

    def critic_projections(self, modules, batch, stage) -> tuple[torch.Tensor, torch.Tensor, float]:
        """u (B, k), v (B, k) and the scale of the critic's scores (u @ v.T) * scale, for the
        validation MI over a whole set (every other person a negative)."""
        critic = modules["critic"]
        u, v = critic.project(modules["encoder"].embed(batch["image"]), self._genetic(modules, batch, stage))
        return u, v, critic.scale

    def loss(self, modules, batch, stage):
        cfg = _cfg(modules)
        image = batch["image"]
        out = modules["encoder"](image)
        recon = losses.reconstruction_mse(modules["decoder"](out.code(), image.shape[2:]), image)
        z = gather_rows(out.z)
        g = self._genetic(modules, batch, stage, z)
        critic = modules["critic"]
        if critic.training:
            z = self._jse_gradient_scaled(z, critic.steps, cfg)
        scores = critic(z, gather_rows(g))
        jse = losses.jse_loss(scores)
        loss = jse + cfg.lambda_recon * recon
        metrics = {"jse": _f(jse), "recon": _f(recon), "mi": _f(losses.jse_mi(jse))}
        if "teacher" in modules and bool(modules["teacher"].active):
            taught = self._teacher_loss(modules, batch, out.z)
            loss = loss + cfg.teacher_weight * taught
            metrics["teacher"] = _f(taught)
        if modules["critic"].bank is not None and modules["critic"].training:
            bank = self._bank_loss(modules, batch, stage, out.z, g)
            loss = loss + bank
            metrics["jse_bank"] = _f(bank)
        return loss, {"loss": _f(loss), **metrics}

    @staticmethod
    def _teacher_loss(modules, batch, z_local: torch.Tensor) -> torch.Tensor:
        """MSE of a linear head of z against the teacher's v(g) (standardized over the training
        people, model.teacher): this process's rows only, as every row's target is its own."""
        target = modules["teacher"](batch["geno"], batch.get("af"))
        pred = modules["teacher_head"](z_local)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    @staticmethod
    def _jse_gradient_scaled(z: torch.Tensor, step: int, cfg: ModelConfig) -> torch.Tensor:
        """z as the critic sees it at critic step `step`: the same values, with the JSE's gradient into
        the image encoder scaled by 0 during the warm-up (the critic learns on the encoder's z), then
        rising linearly over critic_ramp_steps to jse_encoder_scale."""
        warm, ramp, top = cfg.critic_warmup_steps, cfg.critic_ramp_steps, cfg.jse_encoder_scale
        if step < warm or top == 0.0:
            return z.detach()
        a = (step - warm + 1) / (ramp + 1) if (ramp and step - warm < ramp) else 1.0
        a *= top
        return z if a == 1.0 else z.detach() + a * (z - z.detach())

    def _bank_loss(self, modules, batch, stage, z_local: torch.Tensor, g_local: torch.Tensor) -> torch.Tensor:
        """JSE of the critic over this step's pairs and those of the last critic_queue steps, z
        detached (model.critic.PairBank): the critic and genetic encoder learn from (Q + 1) x B
        pairs a step, the image encoder only from its own batch's JSE. g_local is this step's
        genetic embedding; those of the earlier batches are recomputed with the current encoder."""
        critic = modules["critic"]
        critic.bank.push(z_local, {k: batch[k] for k in ("geno", "chrom", "bp", "cm", "snp_mask", "af") if k in batch})
        zs = torch.cat([zb for zb, _ in critic.bank.items])
        gs = torch.cat([*(self._genetic(modules, b, stage) for _, b in list(critic.bank.items)[:-1]), g_local])
        return losses.jse_loss(critic.scores_frozen_stats(gather_rows(zs), gather_rows(gs)))


@dataclass
class RandomInitMethod(Method):
    def _build(self, cfg, image_shape, n_snps):
        return {"encoder": MRIEncoder(cfg, attentive=False)}

    @property
    def stage_names(self):
        return ()

    def stages(self, epochs):
        return []

    def loss(self, modules, batch, stage):
        raise ValueError("random-init does not train")


class LossModule(nn.Module):
    """Wraps (method, modules) so that DistributedDataParallel sees one forward: forward(batch, stage)."""

    def __init__(self, method: Method, modules: nn.ModuleDict):
        super().__init__()
        self.method = method
        self.parts = modules

    def forward(self, batch: dict, stage: Stage) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.loss(self.parts, batch, stage)


_AE = ("encoder", "decoder")
_TWO = ("encoder", "projector")
_NCE = ("encoder", "genetic", "image_proj", "genetic_proj")

METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        GIMMethod(name="gim", description="JSE between z and the genetic embedding + lambda * reconstruction",
                  needs_genotypes=True, module_names=("encoder", "decoder", "genetic", "critic"),
                  optional_modules=("teacher", "teacher_head")),
        AutoencoderMethod(name="autoencoder", description="plain conv encoder-decoder, MSE", module_names=_AE),
        AutoencoderMethod(name="autoencoder-attention", description="GIM's encoder (with attentive readout) + decoder, MSE",
                          module_names=_AE, attentive=True),
        GenPredictionMethod(name="gen-prediction", description="predict genotypes of an even SNP subset from z",
                            needs_genotypes=True, module_names=("encoder", "head")),
        TwoViewMethod(name="barlow-twins", description="Barlow Twins on two augmented views", n_views=2,
                      module_names=_TWO, kind="barlow-twins"),
        TwoViewMethod(name="simclr", description="SimCLR NT-Xent on two augmented views", n_views=2,
                      module_names=_TWO, kind="simclr"),
        TwoViewMethod(name="simclr-jse", description="SimCLR with the JSE in place of NT-Xent", n_views=2,
                      module_names=_TWO, kind="simclr-jse"),
        InfoNCEMethod(name="infonce", description="ContIG: cross-modal NT-Xent (temperature 0.1), MLP genetic encoder",
                      needs_genotypes=True, module_names=_NCE),
        InfoNCEMethod(name="decorrelated-infonce", description="ContIG + decorrelation of z", needs_genotypes=True,
                      module_names=_NCE, decorrelate=True),
        RandomInitMethod(name="random-init", description="untrained encoder (the paper's first row)", trains=False,
                         module_names=("encoder",)),
    ]
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None
