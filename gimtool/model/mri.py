"""MRI encoder f and decoder h (paper appendix B).

Shapes: images (B, 1, D, H, W) float32; any D, H, W (crops, whole volumes, 1/2/4 mm grids).
Normalisation is GroupNorm so a step never depends on how the batch is split across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig


def _norm(cfg: ModelConfig, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(cfg.norm_groups, channels), channels)


class ResBlock3d(nn.Module):
    """Pre-activation residual block: two 3^3 convolutions with GroupNorm and SiLU."""

    def __init__(self, cfg: ModelConfig, channels: int):
        super().__init__()
        self.n1 = _norm(cfg, channels)
        self.c1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.n2 = _norm(cfg, channels)
        self.c2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return x + h


class AttentiveReadout3d(nn.Module):
    """Multi-head attention from learnable queries over all positions of a feature map.

    (B, C, D, H, W) -> (B, out_dim); one query per head, softmax over the D*H*W positions.
    """

    def __init__(self, in_channels: int, out_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = out_dim // heads
        self.query = nn.Parameter(torch.randn(heads, self.head_dim) * self.head_dim**-0.5)
        self.key = nn.Linear(in_channels, out_dim)
        self.value = nn.Linear(in_channels, out_dim)
        self.out = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        k = self.key(tokens).view(B, -1, self.heads, self.head_dim).transpose(1, 2)  # (B, h, N, hd)
        v = self.value(tokens).view(B, -1, self.heads, self.head_dim).transpose(1, 2)
        q = self.query.view(1, self.heads, 1, self.head_dim).expand(B, -1, -1, -1).to(k.dtype)
        o = F.scaled_dot_product_attention(q, k, v)  # (B, h, 1, hd)
        return self.out(o.reshape(B, self.heads * self.head_dim))


@dataclass
class EncoderOutput:
    z: torch.Tensor  # (B, repr_dim): the GWAS representation
    readout: torch.Tensor | None  # (B, readout_dim) or None: reconstruction-only dims

    def code(self) -> torch.Tensor:
        """What the decoder reads: z, or z concatenated with the readout."""
        return self.z if self.readout is None else torch.cat([self.z, self.readout], dim=1)


class MRIEncoder(nn.Module):
    """Three residual blocks (32, 64, 128 channels) joined by two stride-2 convolutions.

    A dense layer on the (adaptively pooled, flattened) last maps gives z; with
    `attentive=True` a multi-head attentive readout adds `readout_dim` more dims.
    """

    def __init__(self, cfg: ModelConfig, attentive: bool = True):
        super().__init__()
        c1, c2, c3 = cfg.conv_channels
        self.cfg = cfg
        self.stem = nn.Conv3d(1, c1, 3, stride=cfg.stem_stride, padding=1)
        self.block1 = ResBlock3d(cfg, c1)
        self.down1 = nn.Conv3d(c1, c2, 3, stride=2, padding=1)
        self.block2 = ResBlock3d(cfg, c2)
        self.down2 = nn.Conv3d(c2, c3, 3, stride=2, padding=1)
        self.block3 = ResBlock3d(cfg, c3)
        self.final_norm = _norm(cfg, c3)
        self.pool = nn.AdaptiveAvgPool3d(cfg.flatten_grid)
        n_flat = c3 * cfg.flatten_grid[0] * cfg.flatten_grid[1] * cfg.flatten_grid[2]
        self.dense = nn.Linear(n_flat, cfg.repr_dim)
        self.readout = AttentiveReadout3d(c3, cfg.readout_dim, cfg.readout_heads) if attentive else None

    @property
    def code_dim(self) -> int:
        return self.cfg.repr_dim + (self.cfg.readout_dim if self.readout is not None else 0)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) -> last feature maps (B, C3, ~D/4, ~H/4, ~W/4)."""
        if image.dim() != 5 or image.shape[1] != 1:
            raise ValueError(f"MRI encoder expects images of shape (B, 1, D, H, W); got {tuple(image.shape)}")
        recompute = self.cfg.checkpoint_mri and self.training and torch.is_grad_enabled()

        def run(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return checkpoint(block, x, use_reentrant=False) if recompute else block(x)

        x = run(self.block1, self.stem(image))
        x = run(self.block2, self.down1(x))
        x = run(self.block3, self.down2(x))
        return F.silu(self.final_norm(x))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) -> z (B, repr_dim) without the reconstruction-only readout."""
        return self.dense(self.pool(self.features(image)).flatten(1))

    def forward(self, image: torch.Tensor) -> EncoderOutput:
        x = self.features(image)
        z = self.dense(self.pool(x).flatten(1))
        return EncoderOutput(z=z, readout=self.readout(x) if self.readout is not None else None)


class MRIDecoder(nn.Module):
    """h: code (B, code_dim) -> image (B, 1, *out_shape) for any out_shape.

    The code is projected onto a small grid, upsampled to the encoder's last-map size, then
    through residual blocks and two x2 upsamplings mirroring the encoder; a final trilinear
    resize lands exactly on out_shape (odd sizes included).
    """

    def __init__(self, cfg: ModelConfig, code_dim: int):
        super().__init__()
        c1, c2, c3 = cfg.conv_channels
        self.cfg = cfg
        self.grid = cfg.flatten_grid
        self.project = nn.Linear(code_dim, c3 * self.grid[0] * self.grid[1] * self.grid[2])
        self.block3 = ResBlock3d(cfg, c3)
        self.up2 = nn.Conv3d(c3, c2, 3, padding=1)
        self.block2 = ResBlock3d(cfg, c2)
        self.up1 = nn.Conv3d(c2, c1, 3, padding=1)
        self.block1 = ResBlock3d(cfg, c1)
        self.head_norm = _norm(cfg, c1)
        self.head = nn.Conv3d(c1, 1, 3, padding=1)

    def forward(self, code: torch.Tensor, out_shape: tuple[int, int, int]) -> torch.Tensor:
        B = code.shape[0]
        out_shape = tuple(int(s) for s in out_shape)
        shape1, shape2, shape3 = self.cfg.map_shapes(out_shape)
        x = self.project(code).view(B, -1, *self.grid)
        x = F.interpolate(x, size=shape3, mode="trilinear", align_corners=False)
        recompute = self.cfg.checkpoint_mri and self.training and torch.is_grad_enabled()

        def run(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return checkpoint(block, x, use_reentrant=False) if recompute else block(x)

        x = run(self.block3, x)
        x = F.interpolate(self.up2(x), size=shape2, mode="trilinear", align_corners=False)
        x = run(self.block2, x)
        x = F.interpolate(self.up1(x), size=shape1, mode="trilinear", align_corners=False)
        x = run(self.block1, x)
        x = self.head(F.silu(self.head_norm(x)))
        if x.shape[2:] != out_shape:
            x = F.interpolate(x, size=out_shape, mode="trilinear", align_corners=False)
        return x
