"""The voxel teacher: polygenic scores learned from the images' linear content, a target for z.

Why (issue 14; benchmarks/results/gim_subtle_factors.md): the JSE's gradient into the image
encoder grows with the dependence z already holds. A factor that reconstruction leaves at the
noise floor is never pushed in. On brainlike, gim's critic learned the polygenic scores of the
two large volume factors (R^2 0.72-0.76) and nothing of F6 (0.00-0.01), and its push on F6 was
zero in every run. The same critic trained on the top 128 voxel PCs of the training people
learns every factor's score (R^2 0.56-0.77). Regressing the image encoder on that critic's
genetic embedding v(g) found 10/18 true loci with the top 10 PCs against gim's 6 (three seeds:
10, 8, 9 against 6, 6, 6).

The teacher is fit once, before training, on the training people only (`fit_teacher`): the
critic of gim (linear genetic encoder on the `snps` SNPs of most multiple R^2, JSE, batch 12,
AdamW) learns on (voxel PCs, genotypes). Its genetic side is then a fixed affine map of the
standardized genotypes of at most `snps` SNPs; `GeneticTeacher` keeps it as buffers (no
parameters: it never trains with the model), standardized to mean 0, SD 1 over the training
people. gim adds teacher_weight x MSE(head(z), v(g)) to its loss (model.methods.GIMMethod).
v(g) is a function of the genotypes alone, so it is the same for a person whatever the batch,
the crop or the process.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .critic import SeparableCritic
from .genetic import MLPGeneticEncoder, standardized_dosage
from .losses import jse_loss, jse_mi


class GeneticTeacher(nn.Module):
    """(B, L) genotypes -> (B, dim) targets: standardized_dosage(g[:, snp_index]) @ weight + bias."""

    def __init__(self, n_snps: int, n_used: int, dim: int):
        super().__init__()
        self.n_snps = int(n_snps)
        self.register_buffer("snp_index", torch.arange(min(n_used, n_snps), dtype=torch.long))
        self.register_buffer("weight", torch.zeros(min(n_used, n_snps), dim))
        self.register_buffer("bias", torch.zeros(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        # false when the fit found no dependence that held out of the training people (fit_teacher):
        # gim then trains without the teacher's term
        self.register_buffer("active", torch.ones((), dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of 2026-12-03 before `active` existed: their teacher was always used
        state_dict.setdefault(prefix + "active", torch.ones((), dtype=torch.bool))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @torch.no_grad()
    def forward(self, geno: torch.Tensor, af: torch.Tensor | None) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("the genetic teacher was never fit (gimtool.train.teacher.fit_teacher)")
        if geno.dim() != 2 or geno.shape[1] != self.n_snps:
            raise ValueError(f"the genetic teacher was fit on {self.n_snps} SNPs; got genotypes {tuple(geno.shape)}")
        idx = self.snp_index.to(geno.device)
        x = standardized_dosage(geno[:, idx], None if af is None else af.to(geno.device)[idx])
        return x.to(self.weight.dtype) @ self.weight + self.bias

    @torch.no_grad()
    def set_map(self, snp_index: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, active: bool = True) -> None:
        if weight.shape != self.weight.shape or snp_index.shape != self.snp_index.shape:
            raise ValueError(f"teacher map {tuple(weight.shape)} / {tuple(snp_index.shape)} does not fit "
                             f"buffers {tuple(self.weight.shape)} / {tuple(self.snp_index.shape)}")
        self.snp_index.copy_(snp_index)
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        self.fitted.fill_(True)
        self.active.fill_(bool(active))


def teacher_critic_config(cfg: ModelConfig) -> ModelConfig:
    """The critic the teacher trains: gim's linear critic on cfg.teacher_snps SNPs, its image head on
    the whitened voxel PCs (as benchmarks/diag_voxel_critic.py, which measured it)."""
    return cfg.replace(genetic_encoder="linear", genetic_input="standardized", critic_snps=cfg.teacher_snps,
                       critic_snp_clump_kb=0.0, critic_queue=0, critic_guided_dims=0, critic_whiten_ridge=0.01,
                       critic_hidden=(), critic_standardize=True)


class TeacherFit:
    """The teacher's critic trained on (x, genotypes) of the training people: x the voxel PCs."""

    def __init__(self, cfg: ModelConfig, x_dim: int, n_snps: int, seed: int):
        self.cfg = teacher_critic_config(cfg)
        torch.manual_seed(seed)
        self.encoder = MLPGeneticEncoder(self.cfg, n_snps, hidden=0)
        self.critic = SeparableCritic(self.cfg, x_dim, self.cfg.genetic_out_dim, n_snps=n_snps)
        self.opt = torch.optim.AdamW([*self.encoder.parameters(), *self.critic.parameters()], lr=1e-3, weight_decay=0.01)
        self.n_snps = n_snps

    def _mask(self):
        return None if self.critic.selector is None else self.critic.selector.mask()

    def step(self, x: torch.Tensor, geno: torch.Tensor, af: torch.Tensor) -> float:
        """One JSE step on a batch, the SNP selection's moments updated first (as gim's loss does)."""
        self.critic.train()
        if self.critic.selector is not None:
            self.critic.selector.update(self.critic.x_norm.peek(x), standardized_dosage(geno, af))
        loss = jse_loss(self.critic(x, self.encoder(geno, mask=self._mask(), af=af)))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def mi(self, x: torch.Tensor, geno: torch.Tensor, af: torch.Tensor) -> float:
        """The JSE MI estimate on these rows, every other row a negative (held-out people)."""
        self.critic.eval()
        return float(jse_mi(jse_loss(self.critic(x, self.encoder(geno, mask=self._mask(), af=af)))))

    @torch.no_grad()
    def affine_map(self, n_used: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The genetic side v(g) = y_head(y_norm(encoder(g))) with the SNP selection fixed, as an
        affine map of the standardized genotypes: (snp_index (m,), weight (m, dim), bias (dim,))."""
        self.critic.eval()
        mask = self._mask()
        idx = torch.arange(self.n_snps) if mask is None else torch.nonzero(mask).flatten()
        idx = idx[:n_used]
        lin = self.encoder.net[0]
        scale = self.n_snps / max(1, len(idx))  # the encoder's mask rescaling (model.genetic)

        def side(y):
            return self.critic.y_head(self.critic.y_norm(y))

        bias = side(lin.bias[None])[0]
        rows = side(lin.weight[:, idx].t() * scale + lin.bias[None]) - bias  # one SNP at a time, at 1 SD
        return idx, rows, bias


def fit_teacher(teacher: GeneticTeacher, cfg: ModelConfig, x_train: torch.Tensor, geno_rows, af: torch.Tensor,
                seed: int, x_val: torch.Tensor | None = None, geno_val: torch.Tensor | None = None,
                batch: int = 12, log=None) -> list[dict]:
    """Train the teacher's critic for cfg.teacher_epochs on x_train (n, d) and the genotypes of the
    same n training people, `geno_rows(rows)` -> (len(rows), L) for row numbers 0..n-1 (a tensor, or
    a function that reads them from a store); fix its genetic side into `teacher`, standardized over
    the training people. Returns one dict per epoch (train JSE, validation MI when x_val is given).

    With validation people (x_val, geno_val), the genetic side of the epoch of best validation MI is
    kept, and if no epoch's was above 0 the teacher is inactive: its targets would be the training
    pairs' noise (measured at the quick start's 400 training people and 15,000 SNPs: validation MI
    -0.06 to -0.30 whatever the PCs and SNPs, while gim on the same people is no better)."""
    if isinstance(geno_rows, torch.Tensor):
        geno_rows = geno_rows.__getitem__
    n = x_train.shape[0]
    if n < batch:
        raise ValueError(f"teacher: {n} training people, fewer than a batch of {batch}")
    n_snps = int(af.shape[0])
    fit = TeacherFit(cfg, x_train.shape[1], n_snps, seed)
    rng = np.random.default_rng([seed, 41])
    out, best, best_mi = [], None, -math.inf
    validated = x_val is not None and x_val.shape[0] >= 2
    for ep in range(cfg.teacher_epochs):
        order = rng.permutation(n)
        losses = [fit.step(x_train[torch.as_tensor(k)], geno_rows(k), af) for k in order[: n - n % batch].reshape(-1, batch)]
        row = {"epoch": ep + 1, "train_jse": float(np.mean(losses))}
        if validated:
            row["val_mi"] = fit.mi(x_val, geno_val, af)
            if row["val_mi"] > best_mi:
                best_mi, best = row["val_mi"], (ep + 1, fit.affine_map(teacher.weight.shape[0]))
        out.append(row)
        if log is not None:
            val = f", validation MI {row['val_mi']:.4f}" if "val_mi" in row else ""
            log.info(f"teacher epoch {ep + 1}/{cfg.teacher_epochs}: train JSE {row['train_jse']:.4f} "
                     f"(2 ln 2 = {2 * math.log(2):.4f}){val}")
    epoch, (idx, w, b) = best if validated else (cfg.teacher_epochs, fit.affine_map(teacher.weight.shape[0]))
    v = torch.cat([standardized_dosage(geno_rows(k)[:, idx], af[idx]) @ w + b
                   for k in np.array_split(np.arange(n), max(1, n // 4096))])
    mu, sd = v.mean(0), v.std(0).clamp(min=1e-6)
    active = not validated or best_mi > 0
    teacher.set_map(idx, w / sd, (b - mu) / sd, active)
    if log is not None:
        log.info(f"teacher: the genetic side of epoch {epoch}" + (f" (best validation MI {best_mi:.4f})" if validated else "")
                 + ("" if active else "; no epoch's validation MI was above 0, so gim trains without the teacher"))
    return out


__all__ = ["GeneticTeacher", "TeacherFit", "fit_teacher", "teacher_critic_config"]
