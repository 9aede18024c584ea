"""`gimtool gwas` as a function: :func:`run` loads the phenotypes and covariates in .fam order,
streams the built-in scan over SNP chunks (or runs BOLT-LMM), and writes the sumstats, plots,
summary and log. A script calls it without the CLI::

    from gimtool.pipelines import gwas
    gwas.run("data/test", "pcs.tsv", "out/pcs", covar=["covars.tsv"], threads=8)

Numerics live in :mod:`gimtool.stats.assoc`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from gimtool.conventions import GWAS_SUMMARY_COLS
from gimtool.errors import InputError, OptionError
from gimtool.io.phenotypes import PhenoCovar, load_pheno_covar, split_names  # noqa: F401  (split_names: scripts)
from gimtool.io.genotypes import GenotypeSource, open_genotypes
from gimtool.stats import assoc
from gimtool.stats.phenostats import CHISQ_MEDIAN_1DF, inverse_normal_transform, lambda_gc  # noqa: F401

GWS = 5e-8


GwasInputs = PhenoCovar  # phenotypes and covariates in .fam order


def load_inputs(bf: GenotypeSource, pheno, pheno_names=None, covar=None, covar_names=None, keep=None, remove=None,
                log=None, missing_code: int = -9) -> PhenoCovar:
    """The shared loader (:func:`gimtool.io.phenotypes.load_pheno_covar`) on the .fam, then the
    checks of an association scan: every phenotype has values, and not all the same."""
    inputs = load_pheno_covar(bf.fam, pheno, pheno_names, covar, covar_names, keep, remove, log, missing_code=missing_code)
    for j, name in enumerate(inputs.pheno_names):
        v = inputs.y[:, j][np.isfinite(inputs.y[:, j])]
        if len(v) == 0:
            raise InputError(f"{pheno}: phenotype {name} is NA for every sample in the .fam (leave it out with --pheno-name)")
        if np.ptp(v) == 0:
            raise InputError(f"{pheno}: phenotype {name} is constant ({v[0]:g}) on its {len(v)} samples (leave it out with --pheno-name)")
    return inputs


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
        raise OptionError(f"--chunk {spec}: expected K/N with integers, e.g. 3/10") from None
    if not (n >= 1 and 1 <= k <= n):
        raise OptionError(f"--chunk {spec}: expected 1 <= K <= N")
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


def _default_chunk_size(n_samples: int, gpu: bool, dtype: str) -> int:
    """CPU: ~4 MB of packed rows per chunk (small chunks balance the threads); GPU: ~512 MB of
    decoded genotypes."""
    budget = (2**29 // np.dtype(dtype).itemsize // 4) if gpu else 4_000_000
    return int(np.clip(budget // ((n_samples + 3) // 4), 64, 65536 if gpu else 8192))


def _scanner(prep: assoc.Prepared, n_samples: int, device, dtype: str, kernel: str):
    """The kernel object that turns packed .bed rows into statistics (`device` None: the CPU)."""
    if device is not None:
        return assoc.TorchPackedScan(prep, n_samples, device, dtype=dtype)
    if dtype != "float64" and kernel == "auto" and assoc.has_compiled_kernel():
        dtype = "float64"  # the compiled kernel in double is both faster and exact
    return assoc.PackedScan(prep, n_samples, dtype=dtype, kernel=kernel)


@contextlib.contextmanager
def _pool(workers: int):
    """A thread pool that, when its block fails or is interrupted (SIGINT, SIGTERM), drops the
    tasks not yet started instead of running them all first."""
    pool = cf.ThreadPoolExecutor(max(1, workers))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_chunks(work, starts: list[int], workers: int, blas_threads: int, total: int, progress: bool) -> None:
    """Call `work(start)` for every chunk start on `workers` threads (BLAS limited to
    `blas_threads` meanwhile), at most 2 chunks per thread in flight to bound memory; `work`
    returns the SNPs it did, for the progress bar."""
    from threadpoolctl import threadpool_limits
    from gimtool.progress import bar as progress_bar

    bar = progress_bar(total=total, unit="SNP", unit_scale=True, enabled=progress, desc="gwas")
    with threadpool_limits(blas_threads), _pool(workers) as pool:
        pending: set = set()
        for a in starts:
            pending.add(pool.submit(work, a))
            if len(pending) >= 2 * workers:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    bar.update(f.result())
        for f in cf.as_completed(pending):
            bar.update(f.result())
    bar.close()


def scan(
    bf: GenotypeSource,
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
    if chunk_size is None:
        chunk_size = _default_chunk_size(bf.n_samples, gpu, dtype)
    scanner = _scanner(prep, bf.n_samples, device if gpu else None, dtype, kernel)
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

    def work(a):
        # each worker writes its own rows of the results: the main thread only waits
        b = min(a + chunk_size, stop)
        r = scanner(bf.packed(slice(a, b)))
        sl = slice(a - start, b - start)
        for key in ("beta", "se", "t", "freq", "n", "dof"):
            out[key][:, sl] = getattr(r, key).T
        freq0[sl] = r.freq0
        pval[:, sl] = assoc.t_test_p(r.t, r.dof.astype(np.float64)).T
        return b - a

    # CPU: one chunk per thread. GPU: a few chunks in flight, so that reading rows, popcounts and
    # the per-SNP statistics on the CPU overlap the device's decode and products
    workers = max(1, min(threads, 4 if gpu else threads, len(starts)))
    _run_chunks(work, starts, workers, 1 if workers > 1 else threads, m, progress)
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


# -- the whole command ---------------------------------------------------------------------------

BACKENDS = ("builtin", "bolt")


def _check_choices(backend: str, pheno_transform: str, precision: str) -> None:
    for opt, val, ok in (("--backend", backend, BACKENDS), ("--pheno-transform", pheno_transform, ("none", "int")),
                         ("--precision", precision, ("double", "single"))):
        if val not in ok:
            raise OptionError(f"{opt} {val}: expected {' or '.join(ok)}")


def _builtin(bf: GenotypeSource, inputs: PhenoCovar, pheno, covar: list, chunk, chunk_snps, threads, dev, precision, maf, log):
    """The built-in scan: ({phenotype: sumstats frame}, {phenotype: N})."""
    prep = prepare(inputs, pheno, ", ".join(map(str, covar)))
    n_used = {nm: int(n) for nm, n in zip(inputs.pheno_names, prep.n)}
    for nm, n in n_used.items():
        log.info(f"phenotype {nm}: {n} samples with phenotype and covariates")
    start, stop = parse_chunk(chunk, bf.n_snps)
    if chunk:
        log.info(f"--chunk {chunk}: SNPs {start + 1}-{stop} of {bf.n_snps}")
    with log.timed("association scan"):
        res = scan(bf, prep, start, stop, chunk_size=chunk_snps, threads=threads, device=dev,
                   dtype="float64" if precision == "double" else "float32", maf=maf)
    log.info(f"{len(res.snp_index)} SNPs tested" + (f" (--maf {maf})" if maf else ""))
    return dict(zip(inputs.pheno_names, sumstats_frames(bf.bim, res))), n_used


def _bolt(bf: GenotypeSource, inputs: PhenoCovar, out: str, threads, ld_scores, genetic_map, maf, log):
    """`bolt --lmm` per phenotype on the loaded (aligned, --keep/--remove applied) inputs."""
    import tempfile
    from pathlib import Path

    from gimtool.backends.bolt import LmmOptions, run_bolt_lmm
    from gimtool.io.sumstats import read_sumstats
    from gimtool.io.tables import write_table

    names = inputs.pheno_names
    ok_c = np.ones(bf.n_samples, bool) if inputs.c is None else np.all(np.isfinite(inputs.c), axis=1)
    with tempfile.TemporaryDirectory(dir=Path(out).parent if Path(out).parent.exists() else None) as td:
        pf = Path(td) / "pheno.tsv"
        write_table(inputs.samples.with_columns([pl.Series(nm, inputs.y[:, j]) for j, nm in enumerate(names)]), pf)
        cf_ = None
        if inputs.c is not None:
            cf_ = Path(td) / "covar.tsv"
            write_table(inputs.samples.with_columns([pl.Series(nm, inputs.c[:, j]) for j, nm in enumerate(inputs.covar_names)]), cf_)
        with log.timed("bolt --lmm"):
            opts = LmmOptions(cf_, inputs.covar_names, ld_scores, genetic_map)
            runs = run_bolt_lmm(bf.prefix, pf, names, out, threads, opts)
    frames, n_used = {}, {}
    for r in runs:
        log.output(f"BOLT log ({r.pheno})", r.log)
        n_used[r.pheno] = int((np.isfinite(inputs.y[:, names.index(r.pheno)]) & ok_c).sum())
        df = read_sumstats(r.stats).with_columns(pl.lit(n_used[r.pheno], dtype=pl.Int64).alias("N"))
        if maf:
            f = df["A1FREQ"]
            df = df.filter(pl.min_horizontal(f, 1 - f) >= maf)
        frames[r.pheno] = df
        r.stats.unlink()
    return frames, n_used


def _write_outputs(out: str, frames: dict, n_used: dict, names: list[str], shared_snps: bool, plots: bool,
                   threads: int, log) -> pl.DataFrame:
    """Sumstats (written in parallel threads: formatting and gzip release the GIL) while this
    thread draws the plots; then the summary. Returns the summary frame."""
    from gimtool.io import figures
    from gimtool.io.atomic import atomic_path
    from gimtool.io.sumstats import SharedSnpWriter, write_sumstats

    rows = []
    with log.timed("write outputs"):
        # built-in scan: every phenotype has the same SNPs, their columns are formatted once
        write = SharedSnpWriter(frames[names[0]]).write if shared_snps else write_sumstats
        with _pool(threads) as pool:
            written = [pool.submit(write, frames[nm], f"{out}.{nm}.sumstats.gz") for nm in names]
            # the genome axis of the Manhattan plots, laid out once when the phenotypes share the SNPs
            axis = figures.genome_positions(frames[names[0]]["CHR"].to_numpy(), frames[names[0]]["BP"].to_numpy()) \
                if plots and shared_snps else None
            for nm in names:
                df = frames[nm]
                rows.append(summary_row(nm, df, len(names), n_used.get(nm)))
                if plots:
                    pv = df["P"].to_numpy().astype(float)
                    figures.manhattan(df["CHR"].to_numpy() if axis is None else None, df["BP"].to_numpy() if axis is None else None,
                                      pv, f"{out}.{nm}.manhattan.png", title=nm,
                                      lines=(GWS, GWS / len(names)) if len(names) > 1 else (GWS,), positions=axis)
                    figures.qq(pv, f"{out}.{nm}.qq.png", title=nm, lambda_gc=rows[-1]["LAMBDA_GC"])
            for f in written:
                f.result()
        for nm in names:
            log.output(f"sumstats {nm}", f"{out}.{nm}.sumstats.gz")
        summary = pl.DataFrame(rows).select(GWAS_SUMMARY_COLS)
        with atomic_path(f"{out}.summary.tsv") as tmp:
            summary.write_csv(tmp, separator="\t", null_value="NA")
    log.output("summary", f"{out}.summary.tsv")
    return summary


def run(bfile: str | None, pheno, out: str, pheno_name=None, covar=None, covar_name=None, backend: str = "builtin",
        maf: float = 0.0, chunk: str | None = None, pheno_transform: str = "none", precision: str = "double",
        chunk_snps: int | None = None, ld_scores=None, genetic_map=None, plots: bool = True, keep=None, remove=None,
        device: str = "cpu", threads: int = 1, input_missing_phenotype: int = -9, pfile: str | None = None) -> pl.DataFrame:
    """`gimtool gwas` on exactly one of `bfile` and `pfile` (PLINK 2, hardcalls): writes <out>.<PHENO>.sumstats.gz (and plots) per phenotype, <out>.summary.tsv
    and <out>.log; returns the summary (GWAS_SUMMARY_COLS). `covar`: one file or a list.
    `input_missing_phenotype`: the value read as missing in both (plink2's flag, default -9)."""
    from gimtool.devices import resolve_device, set_threads
    from gimtool.io.phenotypes import as_files
    from gimtool.runlog import RunLog, span

    set_threads(threads)
    _check_choices(backend, pheno_transform, precision)
    parse_chunk(chunk, 0)  # a bad --chunk is a usage error before any input is read
    dev = resolve_device(device, torch_for_cpu=False)  # torch (seconds to import) only for a GPU
    if backend == "bolt" and (chunk or dev.type != "cpu"):
        raise InputError("--chunk and --device cuda apply to the built-in backend only")
    if backend == "bolt" and pfile is not None:
        raise InputError("--backend bolt reads PLINK 1 filesets: give --bfile (plink2 --pfile P --make-bed --out P writes one)")
    covar = as_files(covar)
    with RunLog(out, "gwas") as log:
        bf = open_genotypes(bfile, pfile)
        for label, path in (("bfile" if pfile is None else "pfile", bf.bed_path), ("pheno", pheno), *(("covar", c) for c in covar)):
            log.input(label, path)
        log.info(f"{bf.n_samples} samples, {bf.n_snps} SNPs in {bf.prefix}")
        inputs = load_inputs(bf, pheno, pheno_name, covar, covar_name, keep, remove, log, input_missing_phenotype)
        if pheno_transform == "int":
            inputs.y = inverse_normal_transform(inputs.y, inputs.c)
            log.info("phenotypes rank-inverse-normal transformed after regressing out the covariates")
        log.info(f"phenotypes: {', '.join(inputs.pheno_names)}; covariates: {', '.join(inputs.covar_names) or '(none)'}")
        if backend == "builtin":
            frames, n_used = _builtin(bf, inputs, pheno, covar, chunk, chunk_snps, threads, dev, precision, maf, log)
        else:
            frames, n_used = _bolt(bf, inputs, out, threads, ld_scores, genetic_map, maf, log)
        summary = _write_outputs(out, frames, n_used, inputs.pheno_names, backend == "builtin", plots, threads, log)
        names = inputs.pheno_names
        log.summary(f"gwas: wrote {len(names)} sumstats file{'s' if len(names) > 1 else ''} ({span(names)}), "
                    f"{'their plots, ' if plots else ''}the summary and the log to {out}.*")
        for r in summary.iter_rows(named=True):
            log.info(f"{r['PHENO']}: N={r['N']} SNPs={r['NSNP']} lambdaGC={r['LAMBDA_GC']:.4f} minP={r['MIN_P']} "
                     f"P<5e-8: {r['N_P5E8']}")
    return summary
