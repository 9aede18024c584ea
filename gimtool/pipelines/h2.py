"""`gimtool h2` as a function: SNP heritability by LD score regression (:func:`run` with
method="ldsc", from sumstats) or GREML (method="greml", from genotypes).

Reads files through gimtool.io, runs the kernels of gimtool.stats.ldscore / ldsc / greml, and
writes <out>.h2.tsv, <out>.h2.summary.tsv and <out>.log. A script calls it without the CLI::

    from gimtool.pipelines import h2
    h2.run("h2g", method="greml", bfile="cohort", pheno="pcs.tsv", covar=["covar.tsv"])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.conventions import H2_GREML_COLS, H2_LDSC_COLS, H2_SUMMARY_COLS, MISSING
from gimtool.errors import InputError, OptionError
from gimtool.io.genotypes import GenotypeFiles
from gimtool.io.grm import load_grm, save_grm  # noqa: F401  (scripts reuse GRMs through here)
from gimtool.io.phenotypes import as_files

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


def compute_ldscores(geno, wind_cm: float | None, wind_kb: float | None, log, threads: int = 1,
                     chunk: int = 50, progress: bool = True, keep=None, remove=None):
    """LD scores of a reference fileset (`geno`: a GenotypeFiles, or a bfile prefix): (table CHR SNP BP L2, M, M_5_50)."""
    from gimtool.io.genotypes import open_genotypes
    from gimtool.progress import bar as progress_bar
    from gimtool.io.tables import select_samples
    from gimtool.stats.ldscore import ld_scores

    bf = open_genotypes(geno) if isinstance(geno, str) else open_genotypes(*geno)
    log.input("reference genotypes", bf.bed_path)
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
    bar = progress_bar(total=bf.n_snps, desc="LD scores", unit="SNP", enabled=progress)
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


def greml_inputs(bf, pheno, pheno_names, covar, covar_names, sample_mask: np.ndarray | None, log,
                 keep=None, remove=None, missing_code: int = -9) -> GremlData:
    """Phenotypes and covariates (the shared loader) aligned to the fileset's people.

    People kept: in the fileset (after --keep/--remove, or `sample_mask`), with every covariate
    present and at least one phenotype present. Each phenotype is later fit on its own
    non-missing people.
    """
    from gimtool.io.phenotypes import load_pheno_covar

    d = load_pheno_covar(bf.fam, pheno, pheno_names, covar, covar_names, keep, remove, log, ref_name=str(bf.fam_path),
                         missing_code=missing_code)
    keep_ = d.mask.copy() if sample_mask is None else sample_mask.copy()
    Xc = np.zeros((d.y.shape[0], 0)) if d.c is None else d.c
    if d.c is not None:
        miss = np.isnan(Xc).any(axis=1)
        log.info(f"{', '.join(map(str, as_files(covar)))}: {len(d.covar_names)} covariates; {int((keep_ & miss).sum())} people without every covariate dropped")
        keep_ &= ~miss
    keep_ &= ~np.isnan(d.y).all(axis=1)
    idx = np.flatnonzero(keep_)
    X = np.column_stack([np.ones(len(idx)), Xc[idx]])
    if len(idx) >= X.shape[1] + 2 and np.linalg.matrix_rank(X) < X.shape[1]:
        const = [c for j, c in enumerate(d.covar_names) if np.ptp(Xc[idx, j]) == 0]
        what = f"constant covariate(s) {', '.join(const)}" if const else "linearly dependent covariates"
        raise InputError(f"{', '.join(map(str, as_files(covar)))}: {what} among the {len(idx)} people analysed; "
                         "drop them (--covar-name)")
    return GremlData(idx, d.samples[idx], d.y[idx], X, d.pheno_names, d.covar_names)


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


def greml_row(name: str, fit) -> dict:
    vals = dict(PHENO=name, H2=fit.h2, H2_SE=fit.h2_se, LOGLIK=fit.loglik, N=fit.n)
    return {c: vals[c] for c in H2_GREML_COLS}


# -- the whole command ---------------------------------------------------------------------------


def sumstats_name(path: str, taken: set[str]) -> str:
    """The phenotype name of a sumstats file: <out>.<PHENO>.sumstats.gz -> PHENO (the longer
    stem when that short name is taken)."""
    import re

    name = re.sub(r"\.gz$", "", Path(path).name)
    name = re.sub(r"\.(sumstats|tsv|txt|stats|glm\.linear|linear)$", "", name)
    short = name.rsplit(".", 1)[-1]
    return short if short not in taken else name


def _write(df: pl.DataFrame, path: str, log, what: str) -> None:
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t", null_value=MISSING, float_precision=6)
    log.output(what, path)


def _report(out: str, log, df: pl.DataFrame, method: str) -> pl.DataFrame:
    from gimtool.runlog import span

    summ = summary_frame(df, method)
    _write(df, f"{out}.h2.tsv", log, "per-phenotype h2")
    _write(summ, f"{out}.h2.summary.tsv", log, "h2 mean and sd over phenotypes")
    r = summ.row(0, named=True)
    sd = "NA" if r["H2_SD"] is None else f"{r['H2_SD']:.4f}"
    mean = "NA" if r["H2_MEAN"] is None else f"{r['H2_MEAN']:.4f}"
    log.info(f"h2 over {r['N_PHENO']} phenotype(s): mean {mean} sd {sd}")
    names = df["PHENO"].to_list()
    log.summary(f"h2: wrote the {method} h2 of {len(names)} phenotype(s) ({span(names)}; mean {mean}) to {out}.h2.tsv "
                f"and {out}.h2.summary.tsv")
    return df


def _reference_ldscores(out, log, geno, ref_ld, wind_cm, wind_kb, threads, keep, remove):
    """LD scores computed from --bfile/--pfile (and written beside <out>) or read from --ref-ld:
    (table, M, M_5_50, prefix)."""
    from gimtool.io.ldscore import read_ldscore, write_ldscore

    if wind_cm is not None and wind_kb is not None:
        raise InputError("give one of --ld-wind-cm and --ld-wind-kb")
    if (geno is None) == (ref_ld is None):
        raise InputError("--method ldsc needs exactly one of --bfile REF or --pfile REF (compute LD scores) and --ref-ld PREFIX (reuse them)")
    if geno is not None:
        with log.timed("LD scores"):
            table, M, M550 = compute_ldscores(geno, 1.0 if wind_cm is None else wind_cm, wind_kb, log, threads,
                                              keep=keep, remove=remove)
        for p in write_ldscore(out, table, M, M550):
            log.output("LD scores", p)
        return table, M, M550, out
    if wind_cm is not None or wind_kb is not None:
        log.warn("--ld-wind-cm/--ld-wind-kb ignored: LD scores are read from --ref-ld")
    ref = read_ldscore(ref_ld)
    for p in ref.paths:
        log.input("LD scores", p)
    return ref.table, ref.M, ref.M_5_50, ref_ld


def _m_used(M, M550, use_all_m: bool, log) -> float:
    if M550 is None:
        log.warn("no .l2.M_5_50 beside the LD scores: h2 uses M (all SNPs) instead of M_5_50")
    m_used = M if use_all_m or M550 is None else M550
    log.info(f"M used for h2: {m_used:g} ({'all SNPs' if m_used == M else 'MAF > 5%'})")
    return m_used


def _ldsc_py_row(path, name, out, ref_prefix, w_prefix, intercept, n_samples, log) -> dict:
    """One phenotype through the user's ldsc.py (--backend ldsc)."""
    from gimtool.backends.ldsc import run_ldsc_h2
    from gimtool.io.sumstats import read_sumstats

    ss = read_sumstats(path)
    if ss["N"].null_count() == ss.height:
        if n_samples is None:
            raise InputError(f"{path}: column N is missing or empty; give the sample size with --n-samples")
        ss = ss.with_columns(pl.lit(n_samples, dtype=pl.Int64).alias("N"))
    with log.timed(f"ldsc.py {name}"):
        r = run_ldsc_h2(ss, ref_prefix, w_prefix, intercept, workdir=str(Path(out).parent), name=name)
    row = dict(PHENO=name, H2=r.h2, H2_SE=r.h2_se, INTERCEPT=r.intercept, INTERCEPT_SE=r.intercept_se,
               MEAN_CHISQ=r.mean_chisq, LAMBDA_GC=r.lambda_gc, RATIO=r.ratio, RATIO_SE=r.ratio_se, N=r.n, NSNP=r.n_snp)
    return {c: row[c] for c in H2_LDSC_COLS}


def run_ldsc(out, log, backend, paths, geno, ref_ld, w_ld, wind_cm, wind_kb, intercept, n_samples, use_all_m,
             threads, keep=None, remove=None) -> pl.DataFrame | None:
    """LD score regression of each sumstats file (None when only LD scores were asked for)."""
    from gimtool.io.ldscore import read_ldscore
    from gimtool.io.sumstats import read_sumstats

    if geno is not None:  # every sumstats file readable before the LD scores are written
        for path in paths:
            read_sumstats(path, typed=False)
    table, M, M550, ref_prefix = _reference_ldscores(out, log, geno, ref_ld, wind_cm, wind_kb, threads, keep, remove)
    if not paths:
        log.info("no --sumstats given: LD scores only")
        log.summary(f"h2: wrote the LD scores of {table.height:,} SNPs to {out}.l2.ldscore.gz, .l2.M and .l2.M_5_50"
                    if geno is not None else f"h2: no --sumstats given; wrote {out}.log only")
        return None
    m_used = _m_used(M, M550, use_all_m, log)
    w_table = table if w_ld is None else read_ldscore(w_ld).table
    rows, taken = [], set()
    for path in paths:
        name = sumstats_name(path, taken)
        taken.add(name)
        if backend == "ldsc":
            rows.append(_ldsc_py_row(path, name, out, ref_prefix, w_ld or ref_prefix, intercept, n_samples, log))
        else:
            log.input(f"sumstats {name}", path)
            r, n = ldsc_one(path, table, w_table, m_used, log, intercept, n_samples)
            rows.append(ldsc_row(name, r, n))
        last = rows[-1]
        log.info(f"{name}: h2 {last['H2']:.4f} ({last['H2_SE']:.4f}), intercept {last['INTERCEPT']:.4f}, "
                 f"mean chi2 {last['MEAN_CHISQ']:.4f}")
    return _report(out, log, rows_frame(rows, H2_LDSC_COLS), "ldsc" if backend == "builtin" else "ldsc.py")


def _grm(bf, data: GremlData, grm, chunk_size: int, threads: int, dev, log):
    """The GRM of the people analysed and its eigendecomposition: (K, lam, U, n_snps), read from
    --grm (restricted and decomposed again when it holds other people) or built from genotypes."""
    from gimtool.io.tables import align
    from gimtool.stats import greml

    n = len(data.fam_index)
    if grm is not None:
        K, lam, U, gids, n_snps = load_grm(grm)
        log.input("GRM", grm)
        al = align(gids, data.ids)
        if al.n_matched < n:
            raise InputError(f"{grm}: GRM lacks {n - al.n_matched} of the {n} people analysed; rebuild it (--grm-out)")
        order = al.ref_index[np.argsort(al.table_index)]  # GRM rows in the order of data.ids
        if len(order) != len(gids) or np.any(order != np.arange(len(gids))):
            log.info(f"GRM of {len(gids)} people restricted to the {n} analysed: decomposed again")
            K = K[np.ix_(order, order)]
            with log.timed("eigendecomposition"):
                lam, U = greml.eigh(K, device=dev)
        log.info(f"GRM from {n_snps} SNPs (reused)")
        return K, lam, U, n_snps
    from gimtool import progress

    acc = greml.GRMAccumulator(n, device=dev)
    with log.timed("GRM"):
        chunks = bf.iter_chunks(chunk_size, samples=data.fam_index, num_threads=threads)
        for _, _, G in progress.track(chunks, total=-(-bf.n_snps // chunk_size), desc="GRM", unit="chunk"):
            acc.add(G)
        K = acc.result()
    log.info(f"GRM: {acc.m} SNPs used ({bf.n_snps - acc.m} monomorphic among these people skipped), {n} people")
    with log.timed("eigendecomposition"):
        lam, U = greml.eigh(K, device=dev)
    return K, lam, U, acc.m


def run_greml(out, log, backend, geno, pheno, pheno_names, covar, covar_names, grm_out, grm, max_n, chunk_size,
              keep, remove, threads, device, missing_code: int = -9) -> pl.DataFrame:
    """REML heritability of every phenotype with one GRM and one eigendecomposition."""
    from gimtool.devices import resolve_device
    from gimtool.io.genotypes import open_genotypes
    from gimtool.stats import greml

    if geno is None and grm is None:
        raise InputError("--method greml needs --bfile or --pfile (or --grm with one of them for the sample list)")
    if pheno is None:
        raise InputError("--method greml needs --pheno FILE")
    if geno is None:
        raise InputError("--method greml needs --bfile or --pfile (its .fam/.psam gives the people; with --grm the genotypes are not read)")
    if backend == "bolt-reml" and geno.pfile is not None:
        raise InputError("--backend bolt-reml reads PLINK 1 filesets: give --bfile (plink2 --pfile P --make-bed --out P writes one)")
    bf = open_genotypes(*geno)
    log.input("genotypes", bf.bed_path)
    log.input("phenotypes", pheno)
    for c in as_files(covar):
        log.input("covariates", c)
    if backend == "bolt-reml" and missing_code != -9:
        raise InputError(f"--input-missing-phenotype {missing_code}: BOLT-REML reads only NA and -9 as missing; "
                         "use the built-in backend or recode the file")
    data = greml_inputs(bf, pheno, pheno_names, covar, covar_names, None, log, keep, remove, missing_code)
    n = len(data.fam_index)
    log.info(f"{n} people with genotypes, covariates and at least one phenotype; "
             f"{len(data.pheno_names)} phenotype(s), {data.X.shape[1] - 1} covariate(s) + intercept")
    if backend == "builtin" and n > max_n:
        raise InputError(
            f"{pheno}: {n} people exceed the GREML limit --max-n {max_n} (the GRM and its eigenvectors take "
            f"{greml.grm_bytes(n) / 1e9:.1f} GB); use --method ldsc for cohorts this large, or raise --max-n if "
            "the memory is there"
        )
    counts = check_phenotypes(data, pheno)
    if backend == "bolt-reml":
        return run_bolt(out, log, bf, data, pheno, covar, threads)
    dev = resolve_device(device)
    K, lam, U, n_snps = _grm(bf, data, grm, chunk_size, threads, dev, log)
    if grm_out is not None:
        save_grm(grm_out, K, lam, U, data.ids, n_snps, str(bf.bed_path))
        log.output("GRM and eigendecomposition", grm_out)
    with log.timed("REML fits"):
        fits = greml.greml_many(data.Y, data.X, lam, U, K=K, device=dev,
                                on_new_decomposition=lambda m: log.info(f"missingness pattern of {m} people: GRM decomposed for them"))
    rows = []
    for name, fit, cnt in zip(data.pheno_names, fits, counts):
        assert fit.n == cnt
        rows.append(greml_row(name, fit))
        log.info(f"{name}: h2 {fit.h2:.4f} ({fit.h2_se:.4f}), REML log-likelihood {fit.loglik:.4f}, N {fit.n}")
    return _report(out, log, rows_frame(rows, H2_GREML_COLS), "greml")


def _bolt_covar_file(out: str, data: GremlData, covar) -> tuple[str | None, bool]:
    """The one covariate file BOLT reads: the user's, or (several --covar) the joined columns
    written beside <out>. Returns (path, written here)."""
    files = as_files(covar)
    from gimtool.io.phenotypes import header_names

    if len(files) <= 1 and set(data.covar_names) <= header_names(files):  # no categorical split
        return (str(files[0]) if files else None), False
    from gimtool.io.tables import write_table

    path = f"{out}.bolt.covar.tsv"
    write_table(data.ids.with_columns([pl.Series(c, data.X[:, j + 1]) for j, c in enumerate(data.covar_names)]), path)
    return path, True


def run_bolt(out, log, bf, data: GremlData, pheno, covar, threads) -> pl.DataFrame:
    """`bolt --reml` per phenotype on the people of the analysis."""
    from gimtool.backends.bolt_reml import run_bolt_reml
    from gimtool.io.tables import write_ids

    # people outside the analysis set go to BOLT as --remove
    drop = np.ones(bf.n_samples, dtype=bool)
    drop[data.fam_index] = False
    remove_file = None
    if drop.any():
        remove_file = f"{out}.bolt.remove"
        write_ids(bf.fam.select("FID", "IID").filter(drop), remove_file)
    covar_file, joined = _bolt_covar_file(out, data, covar)
    rows = []
    for name in data.pheno_names:
        with log.timed(f"bolt --reml {name}"):
            r = run_bolt_reml(bf.prefix, pheno, name, covar_file, data.covar_names, remove_file, threads,
                              log_path=f"{out}.bolt.{name}.out")
        log.info(f"{name}: BOLT-REML h2 {r.h2:.4f} ({r.h2_se:.4f}), N {r.n} (BOLT output in {out}.bolt.{name}.out)")
        rows.append({c: v for c, v in zip(H2_GREML_COLS, (name, r.h2, r.h2_se, float("nan"), r.n))})
    for f in (remove_file, covar_file if joined else None):
        if f:
            Path(f).unlink(missing_ok=True)
    return _report(out, log, rows_frame(rows, H2_GREML_COLS), "bolt-reml")


def run(out: str, method: str = "ldsc", backend: str = "builtin", sumstats: list[str] | None = None,
        bfile: str | None = None, ref_ld: str | None = None, w_ld: str | None = None, ld_wind_cm: float | None = None,
        ld_wind_kb: float | None = None, intercept: float | None = None, n_samples: int | None = None,
        use_all_m: bool = False, pheno=None, pheno_name=None, covar=None, covar_name=None, grm_out=None, grm=None,
        max_n: int = 20_000, chunk_size: int = 2000, keep=None, remove=None, threads: int = 1,
        device: str = "cpu", input_missing_phenotype: int = -9, pfile: str | None = None) -> pl.DataFrame | None:
    """`gimtool h2` (genotypes from `bfile` or `pfile`): writes <out>.h2.tsv and <out>.h2.summary.tsv (and LD scores when computed)
    and <out>.log; returns the per-phenotype frame (None for LD scores only). `intercept`: None
    for a free intercept, or the fixed value."""
    from gimtool.devices import set_threads
    from gimtool.runlog import RunLog

    set_threads(threads)
    if method not in ("ldsc", "greml"):
        raise OptionError(f"--method {method}: expected ldsc or greml")
    if backend not in ("builtin", "ldsc", "bolt-reml"):
        raise OptionError(f"--backend {backend}: expected builtin, ldsc or bolt-reml")
    if backend == "bolt-reml":
        method = "greml"
    if backend == "ldsc" and method != "ldsc":
        raise InputError("--backend ldsc goes with --method ldsc")
    with RunLog(out, "h2") as log:
        log.info(f"method {method}, backend {backend}")
        geno = GenotypeFiles.given(bfile, pfile)
        if method == "ldsc":
            return run_ldsc(out, log, backend, sumstats or [], geno, ref_ld, w_ld, ld_wind_cm, ld_wind_kb, intercept,
                            n_samples, use_all_m, threads, keep, remove)
        if sumstats:
            raise InputError("--sumstats is for --method ldsc; GREML reads --bfile and --pheno")
        return run_greml(out, log, backend, geno, pheno, pheno_name, covar, covar_name, grm_out, grm, max_n,
                         chunk_size, keep, remove, threads, device, input_missing_phenotype)
