"""The library behind `gimtool pcs`: embedding PCA (fit on one sample set, applied to all, with
reusable loadings) and genotype PCA from a bfile (LD pruning, exact or randomized).

Numerics live in :mod:`gimtool.stats.pca`; the command writes the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.io.plink import Bfile
from gimtool.stats import pca

LOADINGS_ID = "FEATURE"


# -- embeddings -------------------------------------------------------------------------------

def loadings_frame(features: list[str], fit: pca.PcaFit) -> pl.DataFrame:
    """FEATURE MEAN PC1..PCk: one row per input column; what `--apply` reads back."""
    data = {LOADINGS_ID: features, "MEAN": fit.mean}
    for i in range(fit.components.shape[0]):
        data[f"PC{i + 1}"] = fit.components[i]
    return pl.DataFrame(data)


def read_loadings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(features, mean (d,), components (k, d)) from a loadings file written by `pcs`."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: loadings file not found")
    df = pl.read_csv(path, separator="\t")
    need = [LOADINGS_ID, "MEAN"]
    pcs = [c for c in df.columns if c.startswith("PC")]
    if any(c not in df.columns for c in need) or not pcs:
        raise InputError(f"{path}: expected columns {LOADINGS_ID} MEAN PC1.. (a --out.loadings.tsv of gimtool pcs), found {' '.join(df.columns)}")
    return df[LOADINGS_ID].to_list(), df["MEAN"].to_numpy().astype(float), df.select(pcs).to_numpy().astype(float).T


def scores_frame(ids: pl.DataFrame, scores: np.ndarray, prefix: str = "PC") -> pl.DataFrame:
    return ids.select("FID", "IID").with_columns(
        [pl.Series(f"{prefix}{i + 1}", scores[:, i]) for i in range(scores.shape[1])]
    )


# -- genotypes --------------------------------------------------------------------------------

@dataclass
class GenoPca:
    eigenvectors: np.ndarray  # (n, k)
    eigenvalues: np.ndarray  # (k,)
    snp_index: np.ndarray  # SNPs used
    method: str


def allele_freqs(bf: Bfile, samples, threads: int, chunk: int = 8192) -> np.ndarray:
    """A1 frequency of every SNP over the chosen samples (missing calls ignored)."""
    f = np.empty(bf.n_snps)
    for a, b, g in bf.iter_chunks(chunk, samples=samples, num_threads=threads):
        ok = g != -127
        f[a:b] = np.where(ok, g, 0).sum(0) / np.maximum(2 * ok.sum(0), 1)
    return f


def genotype_pcs(
    bf: Bfile, k: int, samples=None, maf: float = 0.01, prune: bool = True, window: int = 50, step: int = 5,
    r2: float = 0.2, method: str = "auto", threads: int = 1, seed: int = 1, exact_max_n: int = 5000, log=None,
) -> GenoPca:
    """Ancestry PCs: SNPs with MAF ≥ maf, LD-pruned (unless prune=False), standardized; exact
    eigendecomposition of the GRM for n ≤ exact_max_n (or method='exact'), else randomized."""
    n = bf.n_samples if samples is None else len(samples)
    freq = allele_freqs(bf, samples, threads)
    mf = np.minimum(freq, 1 - freq)
    use = np.flatnonzero(mf >= max(maf, 1e-12))
    if log:
        log.info(f"{len(use)} of {bf.n_snps} SNPs with MAF >= {maf}")
    if prune:
        chrom = bf.bim["CHR"].to_numpy()[use]

        def read(a, b):
            g = bf.read(snps=use[a:b], samples=samples, num_threads=threads)
            return pca.standardize_genotypes(g, freq[use[a:b]])[0]

        keep = pca.ld_prune(read, chrom, mf[use], window, step, r2)
        use = use[keep]
        if log:
            log.info(f"LD pruning (window {window} SNPs, step {step}, r2 {r2}): {len(use)} SNPs kept")
    if len(use) < k:
        raise InputError(f"{bf.bim_path}: only {len(use)} SNPs left for {k} PCs")
    if k > n:
        raise InputError(f"--n {k}: more PCs than samples ({n})")

    def chunks():
        step_c = max(64, 2_000_000 // max(n, 1))
        for a in range(0, len(use), step_c):
            idx = use[a : a + step_c]
            g = bf.read(snps=idx, samples=samples, num_threads=threads)
            yield pca.standardize_genotypes(g, freq[idx])[0]

    if method == "auto":
        method = "exact" if n <= exact_max_n else "randomized"
    if method == "exact":
        vec, val = pca.grm_pca(chunks(), n, k)
    elif method == "randomized":
        vec, val = pca.randomized_pca(chunks, n, k, np.random.default_rng(seed))
    else:
        raise InputError(f"--method {method}: expected auto, exact or randomized")
    return GenoPca(vec, val, use, method)
