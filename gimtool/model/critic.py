"""Critics and projection heads.

The JSE critic D(f(Y), G) is separable: T[i, j] = <u(z_i), v(g_j)> / sqrt(critic_dim), with u and v
MLP heads on the image representation and on the genetic embedding. One (B, B) matrix scores
every pairing of the batch at the cost of 2B head evaluations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.GELU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class SeparableCritic(nn.Module):
    """(B, x_dim), (B, y_dim) -> (B, B) scores, positives on the diagonal."""

    def __init__(self, cfg: ModelConfig, x_dim: int, y_dim: int):
        super().__init__()
        self.x_head = mlp(x_dim, cfg.critic_hidden, cfg.critic_dim)
        self.y_head = mlp(y_dim, cfg.critic_hidden, cfg.critic_dim)
        self.scale = 1.0 / math.sqrt(cfg.critic_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"critic: {x.shape[0]} image rows but {y.shape[0]} genetic rows")
        return (self.x_head(x) @ self.y_head(y).t()) * self.scale


class GenotypeHead(nn.Module):
    """Linear prediction head h^g: z (B, d) -> logits (B, n, 3) for a fixed subset of n SNPs."""

    def __init__(self, in_dim: int, snp_index: torch.Tensor):
        super().__init__()
        self.register_buffer("snp_index", snp_index.long())
        self.linear = nn.Linear(in_dim, 3 * snp_index.numel())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).view(z.shape[0], -1, 3)
