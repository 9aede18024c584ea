"""Options shared by several commands, defined once.

Each is an ``Annotated`` type to use in a command's signature::

    def command(out: options.Out, threads: options.Threads = 1, ...):
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Out = Annotated[str, typer.Option("--out", help="Output prefix (PLINK-style); <out>.log is written beside the outputs.")]
Threads = Annotated[int, typer.Option("--threads", min=1, help="CPU threads to use.")]
Device = Annotated[str, typer.Option("--device", help="Compute device: cpu, cuda or cuda:N. Fails if CUDA is asked for and absent.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same outputs.")]
Keep = Annotated[Optional[Path], typer.Option("--keep", help="Keep only the samples listed in this file (FID IID per line).")]
Remove = Annotated[Optional[Path], typer.Option("--remove", help="Drop the samples listed in this file (FID IID per line).")]
Bfile = Annotated[str, typer.Option("--bfile", help="PLINK 1 fileset prefix (.bed/.bim/.fam).")]


def resolve_device(device: str):
    """Return a torch.device, failing loudly (no silent fallback) if CUDA is asked for and absent."""
    import torch

    from gimtool.errors import InputError

    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA was asked for but torch.cuda.is_available() is False")
    if d.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device}: expected cpu, cuda or cuda:N")
    return d


def set_threads(threads: int) -> None:
    """Limit numeric libraries to `threads` CPU threads.

    Sets the thread variables that BLAS, OpenMP and polars read when they start, and torch's
    pool if torch is already loaded (importing torch here would cost seconds for commands that
    never use it; when it is imported later, OMP_NUM_THREADS governs it).
    """
    import os
    import sys

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
