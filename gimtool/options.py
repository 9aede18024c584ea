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
    """Limit numeric libraries to `threads` CPU threads (torch, and BLAS via threadpoolctl if present)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass
