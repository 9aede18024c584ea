"""`gimtool pcs` as a function: embedding PCA (fit on one sample set, applied to all, with
reusable loadings) and genotype PCA from a bfile (LD pruning, exact or randomized). :func:`run`
reads the inputs, computes through :mod:`gimtool.stats.pca` and writes the outputs and the log.
A script calls::

    from gimtool.pipelines import pcs
    pcs.run("emb", pheno="embeddings.tsv", fit_keep="train.ids", n=10)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import polars as pl

from gimtool.conventions import MISSING_INT8, PCA_EXPLAINED_COLS
from gimtool.errors import InputError, OptionError
from gimtool.io.genotypes import GenotypeSource, open_genotypes
from gimtool.stats import pca

# the guided readout's rotation when none is asked for (README, 'Rotating the guided directions')
GUIDED_ROTATION = "varimax"

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


def guided_fit(store_path, ids: pl.DataFrame, x: np.ndarray, k: int, p_threshold: float, log=None,
               chunk_snps: int = 8192, rotation: str = GUIDED_ROTATION):
    """The genotype-guided readout (stats.guided) of embeddings x (n, d) of the people `ids`,
    fit on those who also have genotypes in the store. Returns a stats.guided.GuidedFit."""
    from gimtool.io.genostore import GenoStore
    from gimtool.io.tables import align
    from gimtool.stats import guided

    store = GenoStore(store_path)
    al = align(ids, store.samples)
    if al.n_matched < 2 * k:
        raise InputError(f"{store_path}: {al.n_matched} of the {ids.height} fit samples have genotypes; need at least {2 * k}")
    order = np.argsort(al.table_index, kind="stable")  # read the store's rows in order
    rows, zrows = al.table_index[order], al.ref_index[order]
    if log:
        log.info(f"guided readout: {al.n_matched} fit samples with genotypes ({ids.height - al.n_matched} without, left out), "
                 f"{store.n_snps} SNPs, SNPs selected at P < {p_threshold:g}")
    G = store.genotypes

    def chunks():
        for a in range(0, store.n_snps, chunk_snps):
            yield pca.standardize_genotypes(np.asarray(G[rows, a:a + chunk_snps]))[0]

    fit = guided.fit_guided(x[zrows], chunks(), k, p_threshold, rotation=rotation)
    if log:
        log.info(f"guided readout: {fit.n_selected} of {fit.n_tested} SNPs associated with the {fit.q} whitened "
                 f"dimensions at P < {p_threshold:g}; top {k} directions hold {fit.explained.sum():.1%} of their sum of squares")
        if rotation == "none":
            log.info("guided readout: rotation none")
        elif fit.rotated:
            log.info(f"guided readout: rotation {rotation} of the {fit.rotated} directions that carry selected SNPs")
        else:
            log.info(f"guided readout: rotation {rotation} not applied (fewer than 2 directions carry selected SNPs)")
        if fit.n_selected == 0:
            log.warn("no SNP passed the guided threshold: the directions are the leading PCs (raise --guided-p?)")
    return fit


# -- genotypes --------------------------------------------------------------------------------

@dataclass
class GenoPca:
    eigenvectors: np.ndarray  # (n, k)
    eigenvalues: np.ndarray  # (k,)
    snp_index: np.ndarray  # SNPs used
    method: str


def allele_freqs(bf: GenotypeSource, samples, threads: int, chunk: int = 8192) -> np.ndarray:
    """A1 frequency of every SNP over the chosen samples (missing calls ignored)."""
    f = np.empty(bf.n_snps)
    for a, b, g in bf.iter_chunks(chunk, samples=samples, num_threads=threads):
        ok = g != MISSING_INT8
        f[a:b] = np.where(ok, g, 0).sum(0) / np.maximum(2 * ok.sum(0), 1)
    return f


def genotype_pcs(
    bf: GenotypeSource, k: int, samples=None, maf: float = 0.01, prune: bool = True, window: int = 50, step: int = 5,
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
        raise InputError(f"--n-pcs {k}: more PCs than samples ({n})")

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
        raise OptionError(f"--method {method}: expected auto, exact or randomized")
    return GenoPca(vec, val, use, method)


# -- the whole command ---------------------------------------------------------------------------


def _write_explained(out: str, eigenvalues: np.ndarray, explained: np.ndarray, log) -> None:
    from gimtool.io import figures
    from gimtool.io.tables import write_tsv

    df = pl.DataFrame({"PC": [f"PC{i + 1}" for i in range(len(eigenvalues))], "EIGENVALUE": eigenvalues,
                       "EXPLAINED": explained, "CUMULATIVE": np.cumsum(explained)}).select(PCA_EXPLAINED_COLS)
    write_tsv(df, f"{out}.explained.tsv")
    figures.scree(explained, f"{out}.scree.png", title="explained variance")
    log.output("explained variance", f"{out}.explained.tsv")


def _fit(out, tab, feats, x, fit_mask, n_apply: int, n, guided_by, guided_p, log, guided_rotation=GUIDED_ROTATION):
    """Fit the PCA (or the guided readout) on the fit samples; writes the explained variance,
    scree plot and loadings. Returns (mean, components)."""
    from gimtool.io.tables import write_tsv

    nfit = int(fit_mask.sum())
    if n > min(nfit, len(feats)):
        raise InputError(f"--n-pcs {n}: at most min(fit samples {nfit}, columns {len(feats)}) components")
    if guided_by is not None:
        log.input("guided by", guided_by)
        fit = guided_fit(guided_by, tab.filter(pl.Series(fit_mask)).select("FID", "IID"), x[fit_mask], n, guided_p, log,
                         rotation=guided_rotation)
    else:
        fit = pca.fit_pca(x[fit_mask], n)
    log.info(f"PCA fit on {nfit} samples x {len(feats)} columns; applied to {n_apply}")
    _write_explained(out, fit.eigenvalues, fit.explained, log)
    write_tsv(loadings_frame(list(feats), fit), f"{out}.loadings.tsv")
    log.output("loadings", f"{out}.loadings.tsv")
    return fit.mean, fit.components


def run_embeddings(out, pheno, n, pheno_name, fit_keep, apply, keep, remove, guided_by, guided_p, log,
                   guided_rotation: str = GUIDED_ROTATION) -> pl.DataFrame:
    """PCs of an embedding table: fit on --fit-keep (or apply --apply loadings), scores for every
    kept row (NA where a value is missing). Returns the scores frame (FID IID PC1..)."""
    from gimtool.io.phenotypes import read_named_table, split_names
    from gimtool.io.tables import select_samples, write_table

    log.input("embeddings", pheno)
    if apply is not None:
        feats, mean, comps = read_loadings(apply)
        log.input("loadings", apply)
        tab = read_named_table(pheno, feats, "embedding")
    else:
        tab = read_named_table(pheno, split_names(pheno_name), "embedding")
        feats = tab.columns[2:]
    x = tab.select(feats).to_numpy().astype(np.float64)
    complete = np.all(np.isfinite(x), axis=1)
    if (~complete).any():
        log.warn(f"{pheno}: {int((~complete).sum())} of {len(x)} samples have NA values; their PCs are NA")
    mask = select_samples(tab, keep, remove, log)
    use = mask & complete
    if apply is None:
        fit_mask = use.copy()
        if fit_keep is not None:
            fit_mask &= select_samples(tab, fit_keep, None, None)
            log.input("fit samples", fit_keep)
        mean, comps = _fit(out, tab, feats, x, fit_mask, int(use.sum()), n, guided_by, guided_p, log, guided_rotation)
    scores = np.full((len(x), comps.shape[0]), np.nan)
    scores[use] = pca.apply_pca(x[use], mean, comps)
    frame = scores_frame(tab.filter(pl.Series(mask)), scores[mask])
    write_table(frame, f"{out}.pcs.tsv")
    log.output("PCs", f"{out}.pcs.tsv")
    log.summary(f"pcs: wrote {comps.shape[0]} PCs of {int(mask.sum())} people to {out}.pcs.tsv"
                + ("" if apply is not None else " (loadings, explained variance and scree plot beside it)"))
    return frame


def run_genotypes(out, bfile, n, prune, prune_window, prune_step, prune_r2, maf, method, exact_max_n, keep, remove,
                  threads, seed, log, pfile=None) -> GenoPca:
    """Ancestry PCs of a fileset (`bfile` or `pfile`), written as PLINK 2 does (<out>.eigenvec, .eigenval) with
    <out>.prune.in and a scree plot."""
    from gimtool.io import figures
    from gimtool.io.atomic import atomic_write_text
    from gimtool.io.tables import select_samples, write_table, write_tsv

    if prune not in ("pairwise", "none"):
        raise OptionError(f"--prune {prune}: expected pairwise or none")
    bf = open_genotypes(bfile, pfile)
    log.input("bfile" if pfile is None else "pfile", bf.bed_path)
    mask = select_samples(bf.fam.select("FID", "IID"), keep, remove, log)
    samples = None if mask.all() else np.flatnonzero(mask)
    with log.timed("genotype PCA"):
        res = genotype_pcs(bf, n, samples=samples, maf=maf, prune=prune == "pairwise", window=prune_window,
                           step=prune_step, r2=prune_r2, method=method, threads=threads, seed=seed,
                           exact_max_n=exact_max_n, log=log)
    log.info(f"{res.method} PCA of {int(mask.sum())} samples x {len(res.snp_index)} SNPs")
    ids = bf.fam.filter(pl.Series(mask)).select("FID", "IID")
    write_tsv(scores_frame(ids, res.eigenvectors).rename({"FID": "#FID"}), f"{out}.eigenvec")
    # the same PCs as a covariate table without '#': bolt --covarFile rejects '#FID'
    write_table(scores_frame(ids, res.eigenvectors), f"{out}.covar.tsv")
    atomic_write_text(f"{out}.eigenval", "".join(f"{v:.6g}\n" for v in res.eigenvalues))
    atomic_write_text(f"{out}.prune.in", "".join(f"{s}\n" for s in bf.bim["SNP"].to_numpy()[res.snp_index]))
    # the GRM's trace is about N, so eigenvalue / N is the share of genotype variance
    figures.scree(res.eigenvalues / max(float(mask.sum()), 1.0), f"{out}.scree.png",
                  title="genotype PCs (eigenvalue / N)", cumulative=False)
    for suffix in ("eigenvec", "eigenval", "prune.in", "covar.tsv"):
        log.output(suffix, f"{out}.{suffix}")
    log.summary(f"pcs: wrote {res.eigenvectors.shape[1]} ancestry PCs of {int(mask.sum())} people to {out}.eigenvec "
                f"(PLINK 2) and {out}.covar.tsv (FID IID PC1.., for bolt, regenie and plink2 --covar)")
    return res


def run(out: str, n: int = 10, pheno=None, pheno_name=None, fit_keep=None, apply=None, bfile: str | None = None,
        prune: str = "pairwise", prune_window: int = 50, prune_step: int = 5, prune_r2: float = 0.2, maf: float = 0.01,
        method: str = "auto", exact_max_n: int = 5000, guided_by=None, guided_p: float = 1e-5, keep=None, remove=None,
        threads: int = 1, seed: int = 1, pfile: str | None = None, guided_rotation: str = GUIDED_ROTATION):
    """`gimtool pcs`: embedding mode (`pheno`) returns the scores frame, genotype mode (`bfile` or `pfile`)
    the GenoPca; both write their files and <out>.log."""
    from gimtool.devices import set_threads
    from gimtool.runlog import RunLog

    set_threads(threads)
    if (pheno is None) == (bfile is None and pfile is None):
        raise InputError("give exactly one of --pheno (embeddings) or --bfile/--pfile (genotypes)")
    if guided_by is not None and (pheno is None or apply is not None):
        raise InputError("--guided-by fits a readout of embeddings: give it with --pheno, not with --bfile or --apply")
    from gimtool.stats.guided import ROTATIONS

    if guided_rotation not in ROTATIONS:
        raise InputError(f"--guided-rotation {guided_rotation}: expected one of {', '.join(ROTATIONS)}")
    with RunLog(out, "pcs") as log:
        if pheno is not None:
            return run_embeddings(out, pheno, n, pheno_name, fit_keep, apply, keep, remove, guided_by, guided_p, log,
                                  guided_rotation)
        return run_genotypes(out, bfile, n, prune, prune_window, prune_step, prune_r2, maf, method, exact_max_n, keep,
                             remove, threads, seed, log, pfile)
