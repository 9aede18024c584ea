"""Cross-process gathering for losses that couple the samples of a batch (JSE, InfoNCE, ...).

Under DistributedDataParallel each process holds B/W samples. Contrastive and correlation losses
must see the global batch, or a W-process run would optimise another objective than one process
with the same global batch. gather_rows concatenates the rows of every process (rank order) with a
backward that sums the gradients of every process's copy of the loss for the local rows; with DDP's
gradient averaging this gives exactly the single-process gradient. Only all_gather and all_reduce
are used, which gloo and NCCL both provide. Outside a process group it returns its input.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        W = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(W)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
        sizes = [int(s) for s in sizes]
        n_max = max(sizes)
        padded = torch.zeros((n_max,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(W)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """(b, ...) local rows -> (sum of b over processes, ...), differentiable."""
    if world_size() == 1:
        return x
    return _GatherRows.apply(x)
