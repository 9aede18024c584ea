"""Compute resources the caller chooses: the device and the number of CPU threads.

No typer, no torch at import: `train/distributed.py` and the pipelines import this module, and
torch costs seconds to import for commands that never use it.
"""

from __future__ import annotations

import os
import sys

from gimtool.errors import InputError, OptionError

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS")


class _Cpu:
    """The CPU, for code that only asks ``device.type`` and ``str(device)``: no torch import."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu"


CPU = _Cpu()


def resolve_device(device: str, torch_for_cpu: bool = True):
    """A torch.device for `device` (cpu, cuda or cuda:N), failing loudly (no silent fallback) when
    CUDA is asked for and absent. With ``torch_for_cpu=False``, "cpu" gives :data:`CPU` and torch
    is not imported."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise OptionError(f"--device {device}: expected cpu, cuda or cuda:N")
    if device == "cpu" and not torch_for_cpu:
        return CPU
    import torch

    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA was asked for but torch.cuda.is_available() is False")
    if d.type not in ("cpu", "cuda"):
        raise OptionError(f"--device {device}: expected cpu, cuda or cuda:N")
    return d


def set_threads(threads: int) -> None:
    """Limit numeric libraries to `threads` CPU threads: the one thread limiter of gimtool.

    Sets the variables that BLAS, OpenMP and polars read when they start (overriding the
    environment: --threads is the user's explicit choice), limits the BLAS and OpenMP pools
    already loaded (threadpoolctl), and torch's pool if torch is already loaded (importing torch
    here would cost seconds; when it is imported later, OMP_NUM_THREADS governs it). Call it
    before the heavy imports.
    """
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - a dependency; kept optional for scripts
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
