"""Process groups for `torchrun --nproc_per_node N -m gimtool train ...`.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); without them training runs
in one process and none of this does anything. The backend is NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gimtool.errors import InputError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of a list of floats over all processes (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.cpu().tolist()

    def close(self) -> None:
        if self.started_here and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str) -> Dist:
    """Join the process group torchrun describes (if any) and pick this process's device.

    With `--device cuda` each process takes GPU LOCAL_RANK; `--device cuda:N` is refused under
    torchrun, where one fixed GPU for every process is certainly a mistake.
    """
    from gimtool.devices import resolve_device

    d = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=d)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if d.type == "cuda":
        if d.index is not None:
            raise InputError(f"--device {device}: under torchrun give --device cuda (each process takes GPU LOCAL_RANK)")
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} GPU(s) visible")
        d = torch.device("cuda", local_rank)
        torch.cuda.set_device(d)
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if d.type == "cuda" else "gloo", rank=rank, world_size=world)
        started = True
    return Dist(rank=rank, world=world, local_rank=local_rank, device=d, started_here=started)
