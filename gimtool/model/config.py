"""Typed hyperparameters of the model core, with the paper's values as defaults.

Section 3.2, section 4 and appendix B of the Genetic InfoMax paper give most numbers; the rest
(RBF grid, critic width, crop shift, ...) are ours and say so in their comment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class ModelConfig:
    # MRI encoder f and decoder h (appendix B)
    repr_dim: int = 128  # z, the GWAS dimensions
    readout_dim: int = 128  # attentive readout, used only for reconstruction
    readout_heads: int = 4
    conv_channels: tuple[int, int, int] = (32, 64, 128)
    norm_groups: int = 8  # GroupNorm: independent of the per-process batch, so DDP == one process
    stem_stride: int = 1  # 2 halves activation memory at 1 mm; the paper uses full resolution
    # The dense layer reads the last feature maps after adaptive average pooling to flatten_grid
    # (the paper flattens the maps of a fixed 160^3 crop as they are, which at 1 mm would make a
    # 1-billion-weight layer). flatten_mm > 0: `train` sets flatten_grid from the crop, to cells of
    # about flatten_mm millimetres (resolved_flatten_grid; the checkpoint stores the grid it used),
    # never finer than the last maps. 32 mm is the last maps as they are at 8 mm (4 voxels per map
    # cell), and the same ~6 x 7 x 6 cells of a whole brain at every voxel size. A fixed 4 x 4 x 4
    # (flatten_mm = 0, the default before 2026-12-03) averaged the subtle regional factors away:
    # trained on the truth, brainlike's F3 / F5 R2 0.05 / 0.07 against 0.16 / 0.26 unpooled
    # (benchmarks/results/gim_encoder_capacity.md). flatten_grid is used as given when flatten_mm = 0.
    flatten_grid: tuple[int, int, int] = (4, 4, 4)
    flatten_mm: float = 32.0
    checkpoint_mri: bool = False  # activation checkpointing of the residual blocks (1 mm, large crops)

    # Genetic transformer (section 4, appendix B)
    genetic_dims: tuple[int, int, int] = (32, 64, 128)
    window: int = 10
    heads: int = 4
    pool_rate: int = 10
    pos_dim: int = 128  # sinusoidal encoding of the bp position
    pos_proj_dim: int = 16  # per-head width of the left/right position projections (ours)
    pos_min_period_bp: float = 100.0  # shortest / longest wavelength of the bp encoding (ours)
    pos_max_period_bp: float = 3.0e8
    rbf_centres: int = 16  # t_0..t_c of eq. 9, evenly from 0 to rbf_max_cm (ours)
    rbf_max_cm: float = 2.0
    mlp_ratio: int = 4
    blocks_per_stage: int = 1  # each block = window attention + shifted window attention
    # Recompute each block's activations in the backward pass instead of storing them: memory of
    # the genetic transformer drops to about its block inputs (650k SNPs fit at batch 12) for ~1.3x time.
    checkpoint_genetic: bool = True
    # Blocks run on groups of whole chromosomes of at most this many tokens (exact, since no window
    # mixes chromosomes), which bounds the transient memory of one block at any array size.
    genetic_chunk_tokens: int = 65_536
    n_chrom_codes: int = 27  # PLINK codes 1..26 (X=23, Y=24, XY=25, MT=26); 0 = unknown
    genetic_out_dim: int = 128
    # MLP genetic encoder (ContIG / ablation baseline)
    mlp_hidden: int = 256
    # gim's genetic encoder: "linear" (one linear map of the standardized genotypes, a set of
    # polygenic scores: the default, README "Paper versus practice"), "transformer" (the paper's
    # genetics-informed transformer) or "mlp" (table 2's first rows)
    genetic_encoder: str = "linear"
    # "standardized": (g - 2p) / sqrt(2p(1 - p)) at the encoder's input; "classes": the paper's
    # embedding of 0/1/2/missing (model.genetic explains why the default departs from it)
    genetic_input: str = "standardized"

    # Critic and heads
    # The critic's heads: linear maps to a 16-d space (a reduced-rank bilinear critic). MLP heads
    # (256,) -> 128 memorize the training pairs first at CPU cohort sizes (README, "Paper versus
    # practice"); the paper leaves the critic's form open.
    critic_hidden: tuple[int, ...] = ()
    critic_dim: int = 16
    # standardize both critic inputs per feature with running statistics (model.critic); false is
    # the first version, whose JSE sat at 2 ln 2
    critic_standardize: bool = True
    # the critic's genetic side sees only the critic_snps SNPs most associated with z (running
    # statistics, model.critic.SnpSelector; linear and mlp encoders); 0 = every SNP (the paper).
    # 64, not 16: on brainlike 11 of the 18 true loci's lead SNPs rank in the top 16 by R2 on z,
    # 17 in the top 64, and gim with 64 found 9/18 true loci (guided readout) against 7/18 with 16
    # (benchmarks/results/table1_brainlike-10_variants.md, on crops)
    critic_snps: int = 64
    # > 0: the critic's SNPs are clumped, no two within this many kb on a chromosome (greedy by
    # R2 on z, as PLINK's --clump-kb), so that LD copies of the loci z already holds do not fill
    # the critic_snps (model.critic.SnpSelector.selected); 0 = the plain top critic_snps
    critic_snp_clump_kb: float = 0.0
    # > 0: the critic also trains, every step, on the (z, genotype) pairs of the last critic_queue
    # training batches (z detached: only the critic and the genetic encoder learn from them), so
    # it sees critic_queue + 1 times the pairs and negatives of a batch of 12 (model.critic.PairBank)
    critic_queue: int = 0
    # > 0 (with critic_snps): the critic's image head sees z only through its critic_guided_dims
    # directions most associated with the selected SNPs (a reduced-rank regression on the
    # selector's running moments, model.critic.SnpSelector.directions); 0 = all of z. It lets a
    # critic learn on a fixed z where the default cannot (benchmarks/results/gim_critic_guided.md).
    # The directions start once the moments have seen twice as many rows as z has dimensions
    # (before, they follow float rounding); tests/train/test_train_ddp.py checks DDP against one process.
    critic_guided_dims: int = 0
    # > 0 (with critic_snps): the critic's image head reads z whitened by the selector's running
    # covariance, z_std (C + r I)^-1/2 with r = critic_whiten_ridge x C's mean eigenvalue (ZCA, so the
    # coordinates stay put from step to step); 0 = z_std as it is. z's genetic signal lies in its
    # low-variance directions (stats.guided): whitened, a linear head reaches them at the pace of the
    # high-variance ones. Identity until the moments have seen twice as many rows as z has dimensions
    # (as the directions). Measured at the defaults (benchmarks/results/gim_subtle_factors.md): the
    # critic starts an epoch or two sooner, but over two seeds per cohort the loci and the held-out MI
    # are mixed (brainlike seed 2: 6/18 against 7), so it is off.
    critic_whiten_ridge: float = 0.0
    # > 0: the JSE reaches the image encoder only after the critic has trained this many steps
    # (z detached before: the encoder learns from reconstruction alone while the critic catches up)
    critic_warmup_steps: int = 0
    # after the warm-up, the JSE's gradient into the image encoder grows linearly from 0 to full over
    # this many critic steps. Switched on at once, it arrives where Adam's second moments were set by
    # the small reconstruction gradients alone: on cpu-large (whole volumes) the reconstruction error
    # rose from 0.065 to 0.102 in the epoch after the switch; with a 450-step ramp it did not (0.069).
    # The critic lost its MI either way (gim_critic_guided.md, section 4)
    critic_ramp_steps: int = 0
    # the JSE's gradient into the image encoder, once the warm-up and ramp are over, as a fraction of
    # the critic's own (1 = the paper's objective). The values the critic sees are unchanged.
    jse_encoder_scale: float = 1.0
    projector_dims: tuple[int, ...] = (256, 256)  # SimCLR / Barlow Twins projection head
    # The voxel teacher (model.teacher): before training, gim's critic is fit on the top teacher_pcs
    # voxel PCs of the training people (volumes averaged to about teacher_voxel_mm; the PCA on at most
    # teacher_max_people of them) and their genotypes, for teacher_epochs; its genetic side v(g), a set
    # of critic_dim polygenic scores of at most teacher_snps SNPs, is then a fixed target, and gim adds
    # teacher_weight x MSE(linear head(z), v(g)) to its loss. It pushes into z the heritable factors that
    # reconstruction leaves at the noise floor, which the JSE cannot (its push grows with the dependence
    # z already holds; benchmarks/results/gim_subtle_factors.md). 0 = off (the paper). Only with a
    # fixed-array genetic encoder (linear, mlp): the transformer's augmentation reads a subset of the
    # SNP columns, without those the teacher reads, so with it there is no teacher (`train` says so).
    # Measured on brainlike (benchmarks/results/gim_voxel_teacher.md): with the varimax readout 12, 14 and
    # 13 of 18 true loci (seeds 1-3) against 9, 7 and 8 without it; z's R2 of the subtle factors F3-F6
    # 0.16-0.34 against 0.05-0.15. Weight 10 (seeds 1-2): 16 and 9.
    teacher_weight: float = 1.0
    teacher_pcs: int = 128
    teacher_snps: int = 64
    teacher_epochs: int = 6
    teacher_voxel_mm: float = 8.0
    teacher_max_people: int = 4000

    # Losses
    # lambda of eq. 5 (the paper: 1). At 1 the reconstruction loses to the critic: gim's validation
    # reconstruction error ended at twice the autoencoder's (cpu-large 0.078 vs 0.035) and its z held
    # less of the large volume factors the critic does not see. At 10 (with lr_schedule "constant"),
    # on cpu-large in 3 of 3 seeds, held-out MI of the guided readout 0.303/0.301/0.291 against
    # 0.231/0.209/0.160 at 1 and the autoencoder's 0.242/0.240 (README, "Paper versus practice";
    # benchmarks/results/gim_lambda_recon.md)
    lambda_recon: float = 10.0
    temperature: float = 0.1  # InfoNCE / NT-Xent (ContIG)
    lambda_decor: float = 1.0
    barlow_offdiag: float = 5e-3
    genpred_max_snps: int = 10_000  # gen-prediction predicts an even subset of at most this many SNPs

    # Two-view image augmentations (SimCLR, Barlow Twins); fractions of the crop / intensity units
    aug_max_shift: float = 0.1
    aug_intensity_scale: float = 0.1
    aug_intensity_shift: float = 0.1
    aug_noise_std: float = 0.05

    def __post_init__(self) -> None:
        for name in ("conv_channels", "flatten_grid", "genetic_dims", "critic_hidden", "projector_dims"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""

        def bad(name: str, expected: str) -> None:
            raise ValueError(f"model config: {name} = {getattr(self, name)!r}, expected {expected}")

        if len(self.conv_channels) != 3 or min(self.conv_channels) < 1:
            bad("conv_channels", "three positive channel counts")
        if any(c % self.norm_groups for c in self.conv_channels):
            bad("norm_groups", f"a divisor of every conv channel count {self.conv_channels}")
        if len(self.genetic_dims) < 1 or any(d % self.heads for d in self.genetic_dims):
            bad("genetic_dims", f"dimensions divisible by heads={self.heads}")
        if self.readout_dim % self.readout_heads or self.conv_channels[-1] % self.readout_heads:
            bad("readout_heads", "a divisor of readout_dim and of the last conv channel count")
        if self.window < 2 or self.window % 2:
            bad("window", "an even number >= 2 (shifted windows move by window/2)")
        if self.pool_rate < 2:
            bad("pool_rate", ">= 2")
        if self.pos_dim % 2 or self.pos_dim < 2:
            bad("pos_dim", "an even number")
        if self.rbf_centres < 2 or self.rbf_max_cm <= 0:
            bad("rbf_centres", ">= 2 centres and rbf_max_cm > 0")
        if self.stem_stride not in (1, 2):
            bad("stem_stride", "1 or 2")
        if len(self.flatten_grid) != 3 or min(self.flatten_grid) < 1:
            bad("flatten_grid", "three positive sizes")
        if not self.flatten_mm >= 0:
            bad("flatten_mm", ">= 0 (0: flatten_grid as given)")
        if self.genetic_encoder not in ("transformer", "mlp", "linear"):
            bad("genetic_encoder", "'transformer', 'mlp' or 'linear'")
        if self.genetic_input not in ("standardized", "classes"):
            bad("genetic_input", "'standardized' or 'classes'")
        if self.temperature <= 0:
            bad("temperature", "> 0")
        if self.critic_snps < 0:
            bad("critic_snps", ">= 0")
        if self.critic_snp_clump_kb < 0:
            bad("critic_snp_clump_kb", ">= 0")
        if self.critic_queue < 0:
            bad("critic_queue", ">= 0")
        if self.critic_guided_dims < 0:
            bad("critic_guided_dims", ">= 0")
        if not (self.critic_whiten_ridge >= 0 and math.isfinite(self.critic_whiten_ridge)):
            bad("critic_whiten_ridge", ">= 0 (0: off)")
        if self.critic_whiten_ridge > 0 and self.critic_guided_dims > 0:
            bad("critic_whiten_ridge", "0 when critic_guided_dims > 0 (the guided directions are already whitened)")
        if self.critic_warmup_steps < 0:
            bad("critic_warmup_steps", ">= 0")
        if self.critic_ramp_steps < 0:
            bad("critic_ramp_steps", ">= 0")
        if not (0.0 <= self.jse_encoder_scale <= 1.0):
            bad("jse_encoder_scale", "a number in [0, 1]")
        if not (self.teacher_weight >= 0 and math.isfinite(self.teacher_weight)):
            bad("teacher_weight", ">= 0 (0: no teacher)")
        if not self.teacher_voxel_mm > 0:
            bad("teacher_voxel_mm", "> 0")
        for name in ("teacher_pcs", "teacher_snps", "teacher_epochs", "teacher_max_people"):
            if getattr(self, name) < 1:
                bad(name, ">= 1")
        for name in ("genetic_chunk_tokens", "repr_dim", "readout_dim", "genetic_out_dim", "critic_dim", "mlp_hidden", "genpred_max_snps"):
            if getattr(self, name) < 1:
                bad(name, ">= 1")

    @property
    def uses_teacher(self) -> bool:
        """Whether gim builds the voxel teacher (teacher_weight > 0 and a fixed-array genetic encoder)."""
        return self.teacher_weight > 0 and self.genetic_encoder != "transformer"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, numbers), safe for torch.load(weights_only=True) and TOML."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of to_dict; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def map_shapes(self, crop: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
        """Shapes of the MRI encoder's three feature-map levels for an input of `crop` voxels: after
        the stem's stride, then after each of two stride-2 convolutions with padding 1 (ceil(n / 2)
        each). The decoder upsamples through the same shapes in reverse."""
        shape = tuple(max(1, -(-int(n) // self.stem_stride)) for n in crop)
        shapes = [shape]
        for _ in range(2):
            shape = tuple(max(1, -(-n // 2)) for n in shape)
            shapes.append(shape)
        return tuple(shapes)  # type: ignore[return-value]

    def last_map_shape(self, crop: tuple[int, ...]) -> tuple[int, int, int]:
        """Shape of the MRI encoder's last feature maps for an input of `crop` voxels."""
        return self.map_shapes(crop)[-1]

    def resolved_flatten_grid(self, crop: tuple[int, ...], voxel_size: tuple[float, ...]) -> tuple[int, int, int]:
        """The grid the dense layer reads for inputs of `crop` voxels of `voxel_size` mm: with
        flatten_mm > 0, ceil(extent / flatten_mm) cells per axis, at most the last maps' size (so
        never an upsampling); with flatten_mm = 0, flatten_grid."""
        if self.flatten_mm <= 0:
            return self.flatten_grid
        if len(crop) != 3 or len(voxel_size) != 3:
            raise ValueError(f"resolved_flatten_grid: expected a 3-D crop and voxel size, got {crop} and {voxel_size}")
        maps = self.last_map_shape(crop)
        # 1e-9: an extent that is an exact multiple of flatten_mm (224 mm / 32) gives that many cells
        return tuple(max(1, min(m, math.ceil(int(n) * float(v) / self.flatten_mm - 1e-9)))
                     for m, n, v in zip(maps, crop, voxel_size))  # type: ignore[return-value]


__all__ = ["ModelConfig"]
