"""A genetic relationship matrix with its eigendecomposition and sample IDs, saved as one .npz
(`gimtool h2 --method greml --grm-out` writes it, `--grm` reads it back)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.errors import InputError


def save_grm(path: str | os.PathLike, K: np.ndarray, lam: np.ndarray, U: np.ndarray, ids: pl.DataFrame,
             n_snps: int, source: str) -> None:
    """GRM + eigendecomposition + sample IDs in one .npz (uncompressed: the matrices don't compress)."""
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, K=K, lam=lam, U=U, FID=np.array(ids["FID"].to_list()), IID=np.array(ids["IID"].to_list()),
                     n_snps=np.array(n_snps), source=np.array(source))


def load_grm(path: str | os.PathLike):
    """(K, lam, U, ids, n_snps) from a file written by save_grm."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: GRM file not found (write one with --grm-out)")
    try:
        z = np.load(p, allow_pickle=False)
        K, lam, U = z["K"], z["lam"], z["U"]
        ids = pl.DataFrame({"FID": z["FID"].astype(str).tolist(), "IID": z["IID"].astype(str).tolist()})
        n_snps = int(z["n_snps"])
    except (KeyError, ValueError, OSError) as e:
        raise InputError(f"{p}: not a gimtool GRM file (expected arrays K, lam, U, FID, IID, n_snps): {e}") from None
    n = ids.height
    if K.shape != (n, n) or U.shape != (n, n) or lam.shape != (n,):
        raise InputError(f"{p}: GRM arrays do not fit its {n} samples (K {K.shape}, U {U.shape}, lam {lam.shape})")
    return K, lam, U, ids, n_snps
