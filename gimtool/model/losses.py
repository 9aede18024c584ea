"""Losses and the JSE mutual-information estimate. Pure tensor functions; shapes in docstrings.

Score matrices are (B, B) with scores[i, j] = T(x_i, y_j): positives on the diagonal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


def _check_square(scores: torch.Tensor) -> int:
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(f"score matrix must be (B, B) with B >= 2; got {tuple(scores.shape)}")
    return scores.shape[0]


def jse_loss(scores: torch.Tensor) -> torch.Tensor:
    """Eq. 2 with D = sigmoid(T): mean softplus(-T_pos) + mean over off-diagonal softplus(T_neg)."""
    B = _check_square(scores)
    scores = scores.float()  # softplus of bf16 scores under autocast loses the small terms
    eye = torch.eye(B, dtype=torch.bool, device=scores.device)
    pos = F.softplus(-scores.diagonal()).mean()
    neg = F.softplus(scores.masked_select(~eye)).mean()
    return pos + neg


def jse_mi(loss: torch.Tensor | float) -> torch.Tensor | float:
    """MI estimate from a JSE loss: 2 ln 2 - L (0 for an uninformative critic, at most 2 ln 2)."""
    return 2 * LN2 - loss


def jse_loss_separable(U: torch.Tensor, V: torch.Tensor, scale: float, block: int = 4096) -> torch.Tensor:
    """JSE loss of the full (n, n) score matrix (U V^T) * scale without holding it: U, V (n, k).

    Equals jse_loss((U @ V.T) * scale) (tested), in row blocks of `block`: what validation
    and the held-out MI estimate use, every other person of a set serving as a negative.
    """
    n = U.shape[0]
    if V.shape[0] != n or n < 2:
        raise ValueError(f"need U and V with the same n >= 2 rows; got {tuple(U.shape)} and {tuple(V.shape)}")
    U, V = U.float(), V.float()
    diag = (U * V).sum(1) * scale
    neg = U.new_zeros(())
    for a in range(0, n, block):
        neg = neg + F.softplus((U[a : a + block] @ V.t()) * scale).sum()
    return F.softplus(-diag).mean() + (neg - F.softplus(diag).sum()) / (n * (n - 1))


def info_nce(scores: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
    """Cross-modal InfoNCE on (already temperature-scaled) logits (B, B): CE of rows [and columns]."""
    B = _check_square(scores)
    scores = scores.float()
    target = torch.arange(B, device=scores.device)
    rows = F.cross_entropy(scores, target)
    return 0.5 * (rows + F.cross_entropy(scores.t(), target)) if symmetric else rows


def cosine_scores(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, d), (B, d) -> (B, B) cosine similarities / temperature."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).t() / temperature


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over 2B views: each view's positive is its partner, negatives all other 2B-2."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"views must both be (B, d); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
    return F.cross_entropy(sim, target)


def reconstruction_mse(recon: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean squared error per voxel (eq. 5's squared norm divided by the voxel count too, so lambda
    does not depend on the crop size)."""
    if recon.shape != image.shape:
        raise ValueError(f"reconstruction {tuple(recon.shape)} does not match image {tuple(image.shape)}")
    return F.mse_loss(recon.float(), image.float())


def _standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    z = z.float()
    return (z - z.mean(0)) / (z.std(0, unbiased=False) + eps)


def decorrelation_loss(z: torch.Tensor) -> torch.Tensor:
    """||z^T z - I||_F^2 / d for batch-standardised z (B, d) scaled so z^T z is the correlation matrix."""
    B, d = z.shape
    zs = _standardize(z) / math.sqrt(B)
    c = zs.t() @ zs
    return ((c - torch.eye(d, device=z.device)) ** 2).sum() / d


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, offdiag_weight: float) -> torch.Tensor:
    """Zbontar et al.: sum_i (1 - C_ii)^2 + w * sum_{i != j} C_ij^2, C the cross-correlation (d, d)."""
    B, d = z1.shape
    c = _standardize(z1).t() @ _standardize(z2) / B
    on = ((1 - c.diagonal()) ** 2).sum()
    off = (c**2).sum() - (c.diagonal() ** 2).sum()
    return on + offdiag_weight * off


def genotype_prediction_loss(logits: torch.Tensor, geno: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the 3 genotype classes per SNP; missing genotypes (not 0/1/2) ignored.

    logits (B, L, 3), geno (B, L) int.
    """
    if logits.shape[:2] != geno.shape or logits.shape[2] != 3:
        raise ValueError(f"logits {tuple(logits.shape)} must be (B, L, 3) for genotypes {tuple(geno.shape)}")
    g = geno.long()
    target = torch.where((g >= 0) & (g <= 2), g, torch.full_like(g, -100))
    return F.cross_entropy(logits.reshape(-1, 3).float(), target.reshape(-1), ignore_index=-100)
