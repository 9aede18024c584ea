"""SNP heritability by LD score regression (from sumstats) or GREML (from genotypes).

--method ldsc (default): LD score regression as LDSC v1 computes it, on each --sumstats file.
LD scores come from a reference fileset (--bfile REF; written to <out>.l2.ldscore.gz, .l2.M,
.l2.M_5_50 in LDSC's format) or are reused (--ref-ld PREFIX). --backend ldsc runs the user's
ldsc.py/munge_sumstats.py instead of the built-in regression.

--method greml: REML heritability of every --pheno column from the genotypes of --bfile, with one
GRM and one eigendecomposition for all phenotypes (--grm-out / --grm save and reuse them).
--backend bolt-reml runs `bolt --reml` per phenotype instead.

Writes <out>.h2.tsv (one row per phenotype), <out>.h2.summary.tsv (mean and sd over phenotypes)
and <out>.log.

  gimtool h2 --bfile REF --sumstats gwas.PC1.sumstats.gz,gwas.PC2.sumstats.gz --out h2
  gimtool h2 --method greml --bfile COHORT --pheno pcs.tsv --covar covar.tsv --out h2g
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from gimtool.commands import _options as options


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x for x in str(v).split(",") if x)
    return out


def _pheno_name(path: str, taken: set[str]) -> str:
    import re

    name = re.sub(r"\.gz$", "", Path(path).name)
    name = re.sub(r"\.(sumstats|tsv|txt|stats|glm\.linear|linear)$", "", name)
    short = name.rsplit(".", 1)[-1]  # <out>.<PHENO>.sumstats.gz -> PHENO
    return short if short not in taken else name


def _intercept(value: str) -> float | None:
    from gimtool.errors import InputError

    if value == "free":
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--intercept {value}: expected 'free' or a number (usually 1)") from None


def command(
    out: options.Out,
    method: Annotated[str, typer.Option("--method", help="ldsc (LD score regression on sumstats) or greml (REML on genotypes).")] = "ldsc",
    backend: Annotated[str, typer.Option("--backend", help="builtin, ldsc (ldsc.py on PATH; --method ldsc) or bolt-reml (bolt --reml; --method greml).")] = "builtin",
    sumstats: Annotated[Optional[List[str]], typer.Option("--sumstats", help="Sumstats file(s) (gimtool, BOLT-LMM or PLINK 2): repeat, separate with commas, or list as arguments.")] = None,
    files: Annotated[Optional[List[str]], typer.Argument(help="More sumstats files (e.g. a shell glob).", show_default=False)] = None,
    bfile: Annotated[Optional[str], typer.Option("--bfile", help="ldsc: reference fileset for LD scores; greml: the cohort's genotypes.")] = None,
    ref_ld: Annotated[Optional[str], typer.Option("--ref-ld", help="Reuse LD scores: prefix of <prefix>.l2.ldscore.gz (or LDSC's per-chromosome files).")] = None,
    w_ld: Annotated[Optional[str], typer.Option("--w-ld", help="Regression-weight LD scores (default: the reference LD scores).")] = None,
    ld_wind_cm: Annotated[Optional[float], typer.Option("--ld-wind-cm", help="LD window in cM (default 1).")] = None,
    ld_wind_kb: Annotated[Optional[float], typer.Option("--ld-wind-kb", help="LD window in kb instead of cM.")] = None,
    intercept: Annotated[str, typer.Option("--intercept", help="free (two-step estimator, as LDSC) or a fixed value such as 1.")] = "free",
    n_samples: Annotated[Optional[int], typer.Option("--n-samples", help="Sample size for sumstats without an N column (BOLT-LMM).")] = None,
    use_m: Annotated[bool, typer.Option("--use-all-m/--use-m-5-50", help="M for h2: all SNPs, or (LDSC's default) those with MAF > 5%.")] = False,
    pheno: Annotated[Optional[str], typer.Option("--pheno", help="greml: phenotype table (FID IID name...).")] = None,
    pheno_name: Annotated[Optional[List[str]], typer.Option("--pheno-name", help="greml: phenotype column(s) (default all).")] = None,
    covar: Annotated[Optional[str], typer.Option("--covar", help="greml: covariate table (FID IID name...); an intercept is always added.")] = None,
    covar_name: Annotated[Optional[List[str]], typer.Option("--covar-name", help="greml: covariate column(s) (default all).")] = None,
    grm_out: Annotated[Optional[str], typer.Option("--grm-out", help="greml: save the GRM and its eigendecomposition to this .npz.")] = None,
    grm: Annotated[Optional[str], typer.Option("--grm", help="greml: reuse a GRM saved with --grm-out instead of reading genotypes.")] = None,
    max_n: Annotated[int, typer.Option("--max-n", help="greml: refuse more people than this (the GRM and its eigenvectors are 16 N^2 bytes).")] = 20_000,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="SNPs per chunk when streaming genotypes.")] = 2000,
    keep: options.Keep = None,
    remove: options.Remove = None,
    threads: options.Threads = 1,
    device: options.Device = "cpu",
) -> None:
    from gimtool.errors import InputError
    from gimtool.runlog import RunLog

    options.set_threads(threads)
    if method not in ("ldsc", "greml"):
        raise InputError(f"--method {method}: expected ldsc or greml")
    if backend not in ("builtin", "ldsc", "bolt-reml"):
        raise InputError(f"--backend {backend}: expected builtin, ldsc or bolt-reml")
    if backend == "bolt-reml":
        method = "greml"
    if backend == "ldsc" and method != "ldsc":
        raise InputError("--backend ldsc goes with --method ldsc")
    with RunLog(out, "h2") as log:
        log.info(f"method {method}, backend {backend}")
        if method == "ldsc":
            _run_ldsc(out, log, backend, _split(sumstats) + _split(files), bfile, ref_ld, w_ld, ld_wind_cm, ld_wind_kb,
                      _intercept(intercept), n_samples, use_m, threads, keep, remove)
        else:
            if sumstats or files:
                raise InputError("--sumstats is for --method ldsc; GREML reads --bfile and --pheno")
            _run_greml(out, log, backend, bfile, pheno, _split(pheno_name), covar, _split(covar_name), grm_out, grm,
                       max_n, chunk_size, keep, remove, threads, device)


def _write(df, path, log, what):
    from gimtool.conventions import MISSING
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t", null_value=MISSING, float_precision=6)
    log.output(what, path)


def _report(out, log, df, method):
    from gimtool import heritability as H

    summ = H.summary_frame(df, method)
    _write(df, f"{out}.h2.tsv", log, "per-phenotype h2")
    _write(summ, f"{out}.h2.summary.tsv", log, "h2 mean and sd over phenotypes")
    r = summ.row(0, named=True)
    sd = "NA" if r["H2_SD"] is None else f"{r['H2_SD']:.4f}"
    mean = "NA" if r["H2_MEAN"] is None else f"{r['H2_MEAN']:.4f}"
    log.info(f"h2 over {r['N_PHENO']} phenotype(s): mean {mean} sd {sd}")


def _run_ldsc(out, log, backend, paths, bfile, ref_ld, w_ld, wind_cm, wind_kb, intercept, n_samples, use_all_m, threads,
              keep=None, remove=None):
    from gimtool import heritability as H
    from gimtool.errors import InputError
    from gimtool.io.ldscore import read_ldscore, write_ldscore
    from gimtool.conventions import H2_LDSC_COLS

    if wind_cm is not None and wind_kb is not None:
        raise InputError("give one of --ld-wind-cm and --ld-wind-kb")
    if (bfile is None) == (ref_ld is None):
        raise InputError("--method ldsc needs exactly one of --bfile REF (compute LD scores) and --ref-ld PREFIX (reuse them)")
    if bfile is not None:
        with log.timed("LD scores"):
            table, M, M550 = H.compute_ldscores(bfile, 1.0 if wind_cm is None else wind_cm, wind_kb, log, threads,
                                                keep=keep, remove=remove)
        for p in write_ldscore(out, table, M, M550):
            log.output("LD scores", p)
        ref_prefix = out
    else:
        if wind_cm is not None or wind_kb is not None:
            log.warn("--ld-wind-cm/--ld-wind-kb ignored: LD scores are read from --ref-ld")
        ref = read_ldscore(ref_ld)
        for p in ref.paths:
            log.input("LD scores", p)
        table, M, M550 = ref.table, ref.M, ref.M_5_50
        ref_prefix = ref_ld
    if not paths:
        log.info("no --sumstats given: LD scores only")
        return
    if use_all_m or M550 is None:
        if M550 is None:
            log.warn("no .l2.M_5_50 beside the LD scores: h2 uses M (all SNPs) instead of M_5_50")
        m_used = M
    else:
        m_used = M550
    log.info(f"M used for h2: {m_used:g} ({'all SNPs' if m_used == M else 'MAF > 5%'})")
    w_table = table
    if w_ld is not None:
        w_table = read_ldscore(w_ld).table
    w_prefix = w_ld or ref_prefix
    rows, taken = [], set()
    for path in paths:
        name = _pheno_name(path, taken)
        taken.add(name)
        if backend == "ldsc":
            from gimtool.backends.ldsc import run_ldsc_h2
            from gimtool.io.sumstats import read_sumstats

            ss = read_sumstats(path)
            if ss["N"].null_count() == ss.height:
                if n_samples is None:
                    raise InputError(f"{path}: column N is missing or empty; give the sample size with --n-samples")
                import polars as pl

                ss = ss.with_columns(pl.lit(n_samples, dtype=pl.Int64).alias("N"))
            with log.timed(f"ldsc.py {name}"):
                r = run_ldsc_h2(ss, ref_prefix, w_prefix, intercept, workdir=str(Path(out).parent), name=name)
            row = dict(PHENO=name, H2=r.h2, H2_SE=r.h2_se, INTERCEPT=r.intercept, INTERCEPT_SE=r.intercept_se,
                       MEAN_CHISQ=r.mean_chisq, LAMBDA_GC=r.lambda_gc, RATIO=r.ratio, RATIO_SE=r.ratio_se,
                       N=r.n, NSNP=r.n_snp)
            rows.append({c: row[c] for c in H2_LDSC_COLS})
        else:
            log.input(f"sumstats {name}", path)
            r, n = H.ldsc_one(path, table, w_table, m_used, log, intercept, n_samples)
            rows.append(H.ldsc_row(name, r, n))
        last = rows[-1]
        log.info(f"{name}: h2 {last['H2']:.4f} ({last['H2_SE']:.4f}), intercept {last['INTERCEPT']:.4f}, "
                 f"mean chi2 {last['MEAN_CHISQ']:.4f}")
    _report(out, log, H.rows_frame(rows, H2_LDSC_COLS), "ldsc" if backend == "builtin" else "ldsc.py")


def _run_greml(out, log, backend, bfile, pheno, pheno_names, covar, covar_names, grm_out, grm, max_n, chunk_size,
               keep, remove, threads, device):
    import numpy as np

    from gimtool import heritability as H
    from gimtool.errors import InputError
    from gimtool.io.plink import Bfile
    from gimtool.conventions import H2_GREML_COLS
    from gimtool.io.tables import align, select_samples
    from gimtool.stats import greml

    if bfile is None and grm is None:
        raise InputError("--method greml needs --bfile (or --grm with --bfile for the sample list)")
    if pheno is None:
        raise InputError("--method greml needs --pheno FILE")
    if bfile is None:
        raise InputError("--method greml needs --bfile (its .fam gives the people; with --grm the genotypes are not read)")
    bf = Bfile(bfile)
    log.input("bed", bf.bed_path)
    log.input("phenotypes", pheno)
    if covar:
        log.input("covariates", covar)
    mask = select_samples(bf.fam.select("FID", "IID"), keep, remove, log)
    data = H.greml_inputs(bf, pheno, pheno_names, covar, covar_names, mask, log)
    n = len(data.fam_index)
    log.info(f"{n} people with genotypes, covariates and at least one phenotype; "
             f"{len(data.pheno_names)} phenotype(s), {data.X.shape[1] - 1} covariate(s) + intercept")
    if backend == "builtin" and n > max_n:
        raise InputError(
            f"{pheno}: {n} people exceed the GREML limit --max-n {max_n} (the GRM and its eigenvectors take "
            f"{greml.grm_bytes(n) / 1e9:.1f} GB); use --method ldsc for cohorts this large, or raise --max-n if "
            "the memory is there"
        )
    counts = H.check_phenotypes(data, pheno)
    if backend == "bolt-reml":
        _run_bolt(out, log, bf, data, pheno, covar, threads)
        return
    dev = options.resolve_device(device)
    if grm is not None:
        K, lam, U, gids, n_snps = H.load_grm(grm)
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
    else:
        from tqdm.auto import tqdm

        acc = greml.GRMAccumulator(n, device=dev)
        with log.timed("GRM"):
            for _, _, G in tqdm(bf.iter_chunks(chunk_size, samples=data.fam_index, num_threads=threads),
                                total=-(-bf.n_snps // chunk_size), desc="GRM", unit="chunk", leave=False, disable=None):
                acc.add(G)
            K = acc.result()
        n_snps = acc.m
        log.info(f"GRM: {n_snps} SNPs used ({bf.n_snps - n_snps} monomorphic among these people skipped), {n} people")
        with log.timed("eigendecomposition"):
            lam, U = greml.eigh(K, device=dev)
    if grm_out is not None:
        H.save_grm(grm_out, K, lam, U, data.ids, n_snps, str(bf.bed_path))
        log.output("GRM and eigendecomposition", grm_out)
    with log.timed("REML fits"):
        fits = greml.greml_many(data.Y, data.X, lam, U, K=K, device=dev,
                                on_new_decomposition=lambda m: log.info(f"missingness pattern of {m} people: GRM decomposed for them"))
    rows = []
    for name, fit, cnt in zip(data.pheno_names, fits, counts):
        assert fit.n == cnt
        rows.append(H.greml_row(name, fit))
        log.info(f"{name}: h2 {fit.h2:.4f} ({fit.h2_se:.4f}), REML log-likelihood {fit.loglik:.4f}, N {fit.n}")
    _report(out, log, H.rows_frame(rows, H2_GREML_COLS), "greml")


def _run_bolt(out, log, bf, data, pheno, covar, threads):
    import numpy as np

    from gimtool import heritability as H
    from gimtool.backends.bolt_reml import run_bolt_reml
    from gimtool.conventions import H2_GREML_COLS
    from gimtool.io.tables import write_ids

    # people outside the analysis set go to BOLT as --remove
    drop = np.ones(bf.n_samples, dtype=bool)
    drop[data.fam_index] = False
    remove_file = None
    if drop.any():
        remove_file = f"{out}.bolt.remove"
        write_ids(bf.fam.select("FID", "IID").filter(drop), remove_file)
    rows = []
    for name in data.pheno_names:
        with log.timed(f"bolt --reml {name}"):
            r = run_bolt_reml(bf.prefix, pheno, name, covar, data.covar_names, remove_file, threads,
                              log_path=f"{out}.bolt.{name}.out")
        log.info(f"{name}: BOLT-REML h2 {r.h2:.4f} ({r.h2_se:.4f}), N {r.n} (BOLT output in {out}.bolt.{name}.out)")
        rows.append({c: v for c, v in zip(H2_GREML_COLS, (name, r.h2, r.h2_se, float("nan"), r.n))})
    if remove_file:
        Path(remove_file).unlink(missing_ok=True)
    _report(out, log, H.rows_frame(rows, H2_GREML_COLS), "bolt-reml")
