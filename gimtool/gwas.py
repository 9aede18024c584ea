"""The association study behind `gimtool gwas`: inputs aligned to the .fam, the streaming
built-in scan over SNP chunks, and its results as sumstats frames and a summary.

Numerics live in :mod:`gimtool.stats.assoc`; files are written by the command.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
from dataclasses import dataclass

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.io.plink import Bfile
from gimtool.conventions import GWAS_SUMMARY_COLS
from gimtool.io.tables import align, read_table, select_samples
from gimtool.stats import assoc

GWS = 5e-8
CHISQ_MEDIAN_1DF = 0.4549364231195724


@dataclass
class GwasInputs:
    """Phenotypes and covariates in .fam order (NaN = missing or not in the file)."""

    samples: pl.DataFrame  # FID IID of the .fam
    y: np.ndarray  # (n_fam, p)
    c: np.ndarray | None  # (n_fam, q)
    pheno_names: list[str]
    covar_names: list[str]


def split_names(names: list[str] | None) -> list[str] | None:
    """`--pheno-name A --pheno-name B` and `--pheno-name A,B` both give [A, B]."""
    if not names:
        return None
    out = [x for n in names for x in n.replace(",", " ").split()]
    return out or None


def _aligned(fam: pl.DataFrame, path, names, what: str, log, kept: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Columns of a table in .fam order (NaN where absent). `kept`: the samples --keep/--remove
    leave, against which 'few in common' is judged."""
    tab = read_table(path, names, what=what)
    cols = tab.columns[2:]
    if not cols:
        raise InputError(f"{path}: no {what} columns after FID IID")
    al = align(fam, tab)
    if al.n_matched == 0:
        raise InputError(
            f"{path}: no sample IDs in common with the .fam (first {what} ID: "
            f"{tab['FID'][0]} {tab['IID'][0]}; first .fam ID: {fam['FID'][0]} {fam['IID'][0]})"
        )
    msg = al.describe(".fam", f"{what} file")
    if log:
        log.info(msg)
    n_kept = al.n_ref if kept is None else int(kept.sum())
    n_matched_kept = al.n_matched if kept is None else int(kept[al.ref_index].sum())
    if (n_matched_kept < 0.5 * n_kept or al.n_matched < 0.5 * al.n_table) and log:
        log.warn(f"{path}: few samples in common: {msg}" + ("" if kept is None else f" ({n_matched_kept} of the {n_kept} kept samples)"))
    arr = np.full((fam.height, len(cols)), np.nan)
    vals = tab.select(cols).to_numpy().astype(np.float64)
    arr[al.ref_index] = vals[al.table_index]
    return arr, list(cols)


def load_inputs(
    bf: Bfile,
    pheno: str | os.PathLike,
    pheno_names: list[str] | None = None,
    covar: str | os.PathLike | None = None,
    covar_names: list[str] | None = None,
    keep=None,
    remove=None,
    log=None,
) -> GwasInputs:
    """Read phenotypes (and covariates) and put them in .fam order; --keep/--remove become NaN."""
    fam = bf.fam.select("FID", "IID")
    mask = select_samples(fam, keep, remove, log)
    y, pnames = _aligned(fam, pheno, pheno_names, "phenotype", log, mask)
    c, cnames = (None, [])
    covar_files = [] if covar is None else ([covar] if isinstance(covar, (str, os.PathLike)) else list(covar))
    if covar_files:
        # several files (e.g. age/sex and ancestry PCs) are joined by FID IID
        def wanted(path):
            if not covar_names:
                return None
            with open(path) as fh:
                header = fh.readline().split()[2:]
            return [n for n in covar_names if n in header] or None

        parts = []
        for path in covar_files:
            names = wanted(path)
            if covar_names and names is None:
                continue  # none of the asked-for covariates is in this file
            parts.append(_aligned(fam, path, names, "covariate", log, mask))
        if not parts:
            raise InputError(f"{', '.join(map(str, covar_files))}: none of the covariates {', '.join(covar_names)} found")
        c = np.concatenate([a for a, _ in parts], axis=1)
        cnames = [n for _, names in parts for n in names]
        dup = sorted({n for n in cnames if cnames.count(n) > 1})
        if dup:
            raise InputError(f"{', '.join(map(str, covar_files))}: covariate name(s) {', '.join(dup)} appear in more than one --covar file")
        if covar_names:
            missing = [n for n in covar_names if n not in cnames]
            if missing:
                raise InputError(
                    f"{', '.join(map(str, covar_files))}: covariate(s) {', '.join(missing)} not found; "
                    f"covariate columns are: {', '.join(cnames)}"
                )
            idx = [cnames.index(n) for n in covar_names]
            c, cnames = c[:, idx], list(covar_names)
    y[~mask] = np.nan
    for j, name in enumerate(pnames):
        v = y[:, j][np.isfinite(y[:, j])]
        if len(v) == 0:
            raise InputError(f"{pheno}: phenotype {name} is NA for every sample in the .fam (leave it out with --pheno-name)")
        if np.ptp(v) == 0:
            raise InputError(f"{pheno}: phenotype {name} is constant ({v[0]:g}) on its {len(v)} samples (leave it out with --pheno-name)")
    return GwasInputs(fam, y, c, pnames, cnames)


def inverse_normal_transform(y: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    """Rank-based inverse normal transform of each phenotype after regressing out the covariates
    (and an intercept) on its own samples, as transferGWAS and ContIG do. Blom offsets
    (r − 3/8)/(n + 1/4); ties get their average rank."""
    from scipy.stats import norm, rankdata

    out = np.full_like(y, np.nan)
    n = y.shape[0]
    cc = np.zeros((n, 0)) if c is None else c
    ok_c = np.all(np.isfinite(cc), axis=1)
    for j in range(y.shape[1]):
        m = np.isfinite(y[:, j]) & ok_c
        w = np.column_stack([np.ones(m.sum()), cc[m]])
        coef, *_ = np.linalg.lstsq(w, y[m, j], rcond=None)
        r = y[m, j] - w @ coef
        rk = rankdata(r)
        out[m, j] = norm.ppf((rk - 0.375) / (m.sum() + 0.25))
    return out


def prepare(inputs: GwasInputs, pheno_path, covar_path) -> assoc.Prepared:
    """assoc.prepare with its errors turned into one line naming the file and the columns."""
    try:
        return assoc.prepare(inputs.y, inputs.c)
    except assoc.AssocError as e:
        msg, idx = e.args
        if msg.startswith("collinear"):
            names = ", ".join(inputs.covar_names[i] for i in idx)
            raise InputError(
                f"{covar_path}: covariate(s) {names} are constant or collinear with the other covariates "
                f"(and the intercept) on the samples used; drop them with --covar-name"
            ) from None
        names = ", ".join(inputs.pheno_names[i] for i in idx)
        raise InputError(f"{pheno_path}: phenotype {names}: {msg.split(':', 1)[-1].strip()}") from None


def parse_chunk(spec: str | None, n_snps: int) -> tuple[int, int]:
    """`K/N` (1-based K) -> the SNP index range of the K-th of N near-equal contiguous parts."""
    if not spec:
        return 0, n_snps
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(f"--chunk {spec}: expected K/N with integers, e.g. 3/10") from None
    if not (n >= 1 and 1 <= k <= n):
        raise InputError(f"--chunk {spec}: expected 1 <= K <= N")
    bounds = np.linspace(0, n_snps, n + 1).round().astype(int)
    return int(bounds[k - 1]), int(bounds[k])


@dataclass
class ScanResult:
    snp_index: np.ndarray  # (m,) rows of the .bim tested (after --maf)
    beta: np.ndarray  # (m, p)
    se: np.ndarray
    p: np.ndarray
    t: np.ndarray
    n: np.ndarray
    freq: np.ndarray


def scan(
    bf: Bfile,
    prep: assoc.Prepared,
    start: int = 0,
    stop: int | None = None,
    chunk_size: int | None = None,
    threads: int = 1,
    device=None,
    dtype: str = "float64",
    maf: float = 0.0,
    progress: bool = True,
    kernel: str = "auto",
) -> ScanResult:
    """Stream SNP chunks [start, stop) of `bf` through the association kernel (`kernel`: auto,
    c or numpy on the CPU, see :class:`assoc.PackedScan`).

    The packed .bed rows are the input: on the CPU, `threads` chunks are decoded and multiplied
    in parallel (each with single-threaded BLAS); on a GPU the rows are copied there and decoded
    on the device, with up to 4 chunks in flight. Memory: a chunk of packed rows
    (~4 MB) and a decode block per thread, plus the results (m × p × 6 numbers).
    """
    stop = bf.n_snps if stop is None else stop
    gpu = device is not None and str(device) != "cpu"
    nb = (bf.n_samples + 3) // 4
    if chunk_size is None:
        # CPU: ~4 MB of packed rows per chunk (small chunks balance the threads); GPU: ~512 MB of decoded genotypes
        budget = (2**29 // np.dtype(dtype).itemsize // 4) if gpu else 4_000_000
        chunk_size = int(np.clip(budget // nb, 64, 65536 if gpu else 8192))
    if gpu:
        scanner = assoc.TorchPackedScan(prep, bf.n_samples, device, dtype=dtype)
    else:
        if dtype != "float64" and kernel == "auto" and assoc.has_compiled_kernel():
            dtype = "float64"  # the compiled kernel in double is both faster and exact
        scanner = assoc.PackedScan(prep, bf.n_samples, dtype=dtype, kernel=kernel)
    m = stop - start
    p = prep.n_pheno
    # phenotype-major storage: each phenotype's results are contiguous for the sumstats writers;
    # the ScanResult arrays are (m, p) views of it
    out = {k: np.empty((p, m)) for k in ("beta", "se", "t", "freq")}
    out["n"] = np.empty((p, m), dtype=np.int64)
    out["dof"] = np.empty((p, m), dtype=np.int64)
    freq0 = np.empty(m)
    pval = np.empty((p, m))
    starts = list(range(start, stop, chunk_size))

    def run(a):
        # each worker writes its own rows of the results: the main thread only waits
        b = min(a + chunk_size, stop)
        r = scanner(bf.packed(slice(a, b)))
        sl = slice(a - start, b - start)
        for key in ("beta", "se", "t", "freq", "n", "dof"):
            out[key][:, sl] = getattr(r, key).T
        freq0[sl] = r.freq0
        pval[:, sl] = assoc.t_test_p(r.t, r.dof.astype(np.float64)).T
        return b - a

    from tqdm import tqdm

    bar = tqdm(total=m, unit="SNP", unit_scale=True, disable=not progress or None, file=sys.stderr, desc="gwas")
    from threadpoolctl import threadpool_limits

    # CPU: one chunk per thread. GPU: a few chunks in flight, so that reading rows, popcounts and
    # the per-SNP statistics on the CPU overlap the device's decode and products
    workers = max(1, min(threads, 4 if gpu else threads, len(starts)))
    with threadpool_limits(1 if workers > 1 else threads), cf.ThreadPoolExecutor(workers) as pool:
        # at most 2 chunks per thread in flight keeps memory bounded
        pending: set = set()
        for a in starts:
            pending.add(pool.submit(run, a))
            if len(pending) >= 2 * workers:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    bar.update(f.result())
        for f in cf.as_completed(pending):
            bar.update(f.result())
    bar.close()
    out = {k: v.T for k, v in out.items()}
    pval = pval.T
    idx = np.arange(start, stop)
    if maf > 0:
        mf = np.minimum(freq0, 1 - freq0)
        keep = np.isfinite(mf) & (mf >= maf)
        idx = idx[keep]
        out = {k: v.T[:, keep].T for k, v in out.items()}  # still phenotype-major
        pval = pval.T[:, keep].T
    return ScanResult(idx, out["beta"], out["se"], pval, out["t"], out["n"], out["freq"])


def sumstats_frames(bim: pl.DataFrame, res: ScanResult) -> list[pl.DataFrame]:
    """Each phenotype's results in the sumstats schema (BETA per copy of the bim's A1 = ALLELE1).
    The SNP columns are gathered from the .bim once and shared by every frame."""
    idx = res.snp_index
    contiguous = len(idx) > 0 and idx[-1] - idx[0] + 1 == len(idx)
    b = bim.slice(int(idx[0]), len(idx)) if contiguous else bim[idx]
    snp_cols = b.select(
        "SNP", "CHR", "BP", pl.col("CM").alias("GENPOS"), pl.col("A1").alias("ALLELE1"), pl.col("A2").alias("ALLELE0")
    )
    frames = []
    for j in range(res.beta.shape[1]):
        t = res.t[:, j]
        cols = {"A1FREQ": res.freq[:, j], "N": res.n[:, j], "BETA": res.beta[:, j], "SE": res.se[:, j], "CHISQ": t * t,
                "P": res.p[:, j]}
        stats = pl.DataFrame([pl.Series(k, v, nan_to_null=True) for k, v in cols.items()])  # untested SNPs: null
        frames.append(pl.concat([snp_cols, stats], how="horizontal"))
    return frames


def lambda_gc(p: np.ndarray) -> float:
    """Median 1-df χ² implied by the P values over its expectation under the null."""
    from statistics import NormalDist  # χ²(1) quantile = squared normal quantile; no scipy import

    p = p[np.isfinite(p)]
    if len(p) == 0:
        return float("nan")
    med = float(np.median(p))
    if med <= 0.0:
        return float("inf")
    z = NormalDist().inv_cdf(min(med, 1.0) / 2.0)
    return z * z / CHISQ_MEDIAN_1DF


def summary_row(name: str, df: pl.DataFrame, n_pheno: int, n_samples: int | None = None) -> dict:
    """One row of GWAS_SUMMARY_COLS for a phenotype's sumstats."""
    p = df["P"].drop_nulls().to_numpy()
    n = n_samples if n_samples is not None else (int(df["N"].max()) if df["N"].null_count() < df.height else None)
    row = {
        "PHENO": name,
        "N": n,
        "NSNP": int(len(p)),
        "LAMBDA_GC": lambda_gc(p),
        "MIN_P": float(p.min()) if len(p) else None,
        "N_P5E8": int((p < GWS).sum()),
        "N_P_BONF": int((p < GWS / max(n_pheno, 1)).sum()),
    }
    assert tuple(row) == GWAS_SUMMARY_COLS
    return row
