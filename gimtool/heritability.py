"""SNP heritability: the library behind `gimtool h2` (LD score regression and GREML).

Reads files through gimtool.io, runs the kernels of gimtool.stats.ldscore / ldsc / greml, and
returns data frames; the command writes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.conventions import H2_GREML_COLS, H2_LDSC_COLS, H2_SUMMARY_COLS

MIN_REGRESSION_SNPS = 200  # below this the 200-block jackknife has blocks of one SNP
LOW_OVERLAP_WARN = 0.5


# --- LD scores ---------------------------------------------------------------------------------


def reference_positions(bim: pl.DataFrame, wind_cm: float | None, wind_kb: float | None, log, where: str):
    """Positions and window width in the units asked for (cM from the bim, Morgans converted)."""
    from gimtool.stats.qc import detect_cm_units

    if wind_kb is not None:
        return bim["BP"].to_numpy().astype(np.float64), float(wind_kb) * 1000.0, f"{wind_kb:g} kb"
    col = bim["CM"].to_numpy().astype(np.float64)
    units = detect_cm_units(bim["CHR"].to_numpy(), bim["BP"].to_numpy(), col)
    if units == "zero":
        raise InputError(
            f"{where}: .bim genetic positions (column 3) are all zero; use --ld-wind-kb, or give the "
            "fileset cM positions (gimtool prep-geno --genetic-map)"
        )
    if units == "morgans":
        log.info(f"{where}: .bim genetic positions look like Morgans: converted to cM (x100)")
        col = col * 100.0
    return col, float(wind_cm), f"{wind_cm:g} cM"


def compute_ldscores(bfile: str, wind_cm: float | None, wind_kb: float | None, log, threads: int = 1,
                     chunk: int = 50, progress: bool = True, keep=None, remove=None):
    """LD scores of a reference fileset: (table CHR SNP BP L2, M, M_5_50)."""
    from tqdm.auto import tqdm

    from gimtool.io.plink import Bfile
    from gimtool.io.tables import select_samples
    from gimtool.stats.ldscore import ld_scores

    bf = Bfile(bfile)
    log.input("reference bed", bf.bed_path)
    samples = np.flatnonzero(select_samples(bf.fam.select("FID", "IID"), keep, remove, log))
    if len(samples) < 3:
        raise InputError(f"{bf.fam_path}: {len(samples)} reference people left after --keep/--remove; LD scores need at least 3")
    pos, width, desc = reference_positions(bf.bim, wind_cm, wind_kb, log, str(bf.bim_path))
    chrom = bf.bim["CHR"].to_numpy()
    # LDSC needs each chromosome's SNPs in position order
    for c in np.unique(chrom):
        p = pos[chrom == c]
        if np.any(np.diff(p) < 0):
            raise InputError(f"{bf.bim_path}: chromosome {c}: SNPs are not sorted by position ({desc.split()[1]})")
    bar = tqdm(total=bf.n_snps, desc="LD scores", unit="SNP", disable=None if progress else True, leave=False)
    sel = None if len(samples) == bf.n_samples else samples
    res = ld_scores(lambda idx: bf.read(snps=idx, samples=sel, num_threads=threads), chrom, pos, len(samples), width,
                    chunk=chunk, progress=bar.update)
    bar.close()
    log.info(f"LD scores: {res.M} SNPs, {len(samples)} people, window {desc} (LDSC chunking {chunk}); "
             f"{res.n_monomorphic} monomorphic SNPs dropped; M = {res.M}, M_5_50 = {res.M_5_50}")
    bim = bf.bim[res.index]
    table = pl.DataFrame({"CHR": bim["CHR"], "SNP": bim["SNP"], "BP": bim["BP"], "L2": res.l2})
    return table, res.M, res.M_5_50


# --- LD score regression -----------------------------------------------------------------------


def ldsc_one(path: str, ld: pl.DataFrame, w_ld: pl.DataFrame, M: float, log, intercept: float | None,
             n_samples: int | None = None, n_blocks: int = 200):
    """LD score regression of one sumstats file against LD scores `ld` (CHR SNP BP L2, genome order)."""
    from gimtool.io.sumstats import read_sumstats
    from gimtool.stats.ldsc import ldsc_h2

    ss = read_sumstats(path)
    n_rows = ss.height
    if ss["N"].null_count() == n_rows:
        if n_samples is None:
            raise InputError(f"{path}: column N is missing or empty (found columns: {', '.join(ss.columns)}); "
                             "give the sample size with --n-samples")
        ss = ss.with_columns(pl.lit(n_samples, dtype=pl.Int64).alias("N"))
    ss = ss.select("SNP", "CHISQ", "N").filter(pl.col("CHISQ").is_not_null() & pl.col("CHISQ").is_finite()
                                                & pl.col("N").is_not_null())
    n_stat = ss.height
    dup = ss["SNP"].is_duplicated()
    n_dup = int(dup.sum())
    if n_dup:
        ss = ss.filter(~dup)
    lw = ld.select("SNP", "L2").join(w_ld.select("SNP", pl.col("L2").alias("W_L2")), on="SNP", how="inner",
                                      maintain_order="left")
    m = lw.join(ss, on="SNP", how="inner", maintain_order="left")
    share = m.height / max(n_rows, 1)
    log.info(f"{path}: {n_rows} SNPs read, {n_rows - n_stat} without a statistic or N, {n_dup} with duplicated "
             f"IDs dropped; {m.height} ({100 * share:.1f}%) merged with the reference LD scores "
             f"({ld.height} SNPs)")
    if m.height < MIN_REGRESSION_SNPS:
        raise InputError(
            f"{path}: only {m.height} of its {n_rows} SNPs are in the reference LD scores (need at least "
            f"{MIN_REGRESSION_SNPS}); do the SNP IDs (column SNP) match the reference .bim?"
        )
    if share < LOW_OVERLAP_WARN:
        log.warn(f"{path}: only {m.height} of {n_rows} SNPs ({100 * share:.1f}%) overlap the reference LD scores")
    r = ldsc_h2(m["CHISQ"].to_numpy(), m["L2"].to_numpy(), m["W_L2"].to_numpy(), m["N"].to_numpy().astype(float),
                M, n_blocks=n_blocks, intercept=intercept)
    if r.n_twostep_dropped:
        log.info(f"{path}: two-step estimator: {r.n_twostep_dropped} SNPs with chi2 >= 30 left out of step 1")
    return r, int(np.median(m["N"].to_numpy()))


def ldsc_row(pheno: str, r, n: int) -> dict:
    vals = dict(PHENO=pheno, H2=r.h2, H2_SE=r.h2_se, INTERCEPT=r.intercept, INTERCEPT_SE=r.intercept_se,
                MEAN_CHISQ=r.mean_chisq, LAMBDA_GC=r.lambda_gc, RATIO=r.ratio, RATIO_SE=r.ratio_se, N=n,
                NSNP=r.n_snp)
    return {c: vals[c] for c in H2_LDSC_COLS}


def rows_frame(rows: list[dict], cols) -> pl.DataFrame:
    schema = {c: (pl.Utf8 if c == "PHENO" else pl.Int64 if c in ("N", "NSNP") else pl.Float64) for c in cols}
    df = pl.DataFrame(rows, schema=schema, orient="row")
    return df.with_columns([pl.col(c).fill_nan(None) for c, t in schema.items() if t == pl.Float64])


def summary_frame(df: pl.DataFrame, method: str) -> pl.DataFrame:
    """Mean and sd over phenotypes (sd with ddof=1; NA for one phenotype)."""
    def ms(col):
        if col not in df.columns:
            return None, None
        v = df[col].drop_nulls().to_numpy()
        return (float(v.mean()) if len(v) else None, float(v.std(ddof=1)) if len(v) > 1 else None)

    h2m, h2s = ms("H2")
    im, isd = ms("INTERCEPT")
    row = dict(METHOD=method, N_PHENO=df.height, H2_MEAN=h2m, H2_SD=h2s, INTERCEPT_MEAN=im, INTERCEPT_SD=isd)
    schema = {c: (pl.Utf8 if c == "METHOD" else pl.Int64 if c == "N_PHENO" else pl.Float64) for c in H2_SUMMARY_COLS}
    return pl.DataFrame([{c: row[c] for c in H2_SUMMARY_COLS}], schema=schema, orient="row")


# --- GREML -------------------------------------------------------------------------------------


@dataclass
class GremlData:
    fam_index: np.ndarray  # rows of the .fam used, in .fam order
    ids: pl.DataFrame  # FID IID of those people
    Y: np.ndarray  # (n, t) NaN = missing
    X: np.ndarray  # (n, p) intercept + covariates
    pheno_names: list[str]
    covar_names: list[str]


def greml_inputs(bf, pheno: str, pheno_names: list[str] | None, covar: str | None, covar_names: list[str] | None,
                 sample_mask: np.ndarray, log) -> GremlData:
    """Phenotypes and covariates aligned to the fileset's people.

    People kept: in the fileset (after --keep/--remove), with every covariate present and at least one
    phenotype present. Each phenotype is later fit on its own non-missing people.
    """
    from gimtool.io.tables import align, read_table

    P = read_table(pheno, pheno_names or None, what="phenotype")
    names = [c for c in P.columns if c not in ("FID", "IID")]
    if not names:
        raise InputError(f"{pheno}: no phenotype columns after FID IID")
    fam = bf.fam.select("FID", "IID")
    n_fam = fam.height
    al = align(fam, P)
    Y = np.full((n_fam, len(names)), np.nan)
    Y[al.ref_index] = P.select(names).to_numpy().astype(np.float64)[al.table_index]
    log.info(al.describe(f"{bf.fam_path}", pheno))
    keep = sample_mask.copy()
    covn: list[str] = []
    Xc = np.zeros((n_fam, 0))
    if covar is not None:
        C = read_table(covar, covar_names or None, what="covariate")
        covn = [c for c in C.columns if c not in ("FID", "IID")]
        alc = align(fam, C)
        Xc = np.full((n_fam, len(covn)), np.nan)
        Xc[alc.ref_index] = C.select(covn).to_numpy().astype(np.float64)[alc.table_index]
        miss = np.isnan(Xc).any(axis=1)
        log.info(f"{covar}: {len(covn)} covariates; {int((keep & miss).sum())} people without every covariate dropped")
        keep &= ~miss
    keep &= ~np.isnan(Y).all(axis=1)
    idx = np.flatnonzero(keep)
    X = np.column_stack([np.ones(len(idx)), Xc[idx]])
    if len(idx) >= X.shape[1] + 2 and np.linalg.matrix_rank(X) < X.shape[1]:
        const = [c for j, c in enumerate(covn) if np.ptp(Xc[idx, j]) == 0]
        what = f"constant covariate(s) {', '.join(const)}" if const else "linearly dependent covariates"
        raise InputError(f"{covar}: {what} among the {len(idx)} people analysed; drop them (--covar-name)")
    return GremlData(idx, fam[idx], Y[idx], X, names, covn)


def check_phenotypes(data: GremlData, pheno_path: str) -> list[int]:
    """Per phenotype: enough people and some variance; returns the number of people of each."""
    p = data.X.shape[1]
    counts = []
    for j, name in enumerate(data.pheno_names):
        y = data.Y[:, j]
        ok = ~np.isnan(y)
        n = int(ok.sum())
        if n < p + 2:
            raise InputError(
                f"{pheno_path}: phenotype {name}: {n} people with a value, but REML needs at least the number "
                f"of covariates + 2 = {p + 2} (covariates include the intercept)"
            )
        if np.ptp(y[ok]) == 0:
            raise InputError(f"{pheno_path}: phenotype {name} has no variance (all {n} values are {y[ok][0]:g})")
        counts.append(n)
    return counts


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


def greml_row(name: str, fit) -> dict:
    vals = dict(PHENO=name, H2=fit.h2, H2_SE=fit.h2_se, LOGLIK=fit.loglik, N=fit.n)
    return {c: vals[c] for c in H2_GREML_COLS}
