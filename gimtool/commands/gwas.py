"""Association scan of many phenotypes at once (linear model of plink2 --glm), or BOLT-LMM.

Built-in (default): for every SNP and phenotype, y = intercept + covariates + beta*g, each
phenotype on its own non-missing samples and each SNP without the samples missing its call,
exactly as `plink2 --glm hide-covar`. Streams SNP chunks in bounded memory; --device cuda
runs the products on a GPU; --chunk K/N runs the K-th of N parts of the genome.
--backend bolt runs `bolt --lmm` once per phenotype instead.

Outputs: <out>.<PHENO>.sumstats.gz (SNP CHR BP GENPOS ALLELE1 ALLELE0 A1FREQ N BETA SE CHISQ P;
BETA per copy of ALLELE1 = the bim's 5th column), <out>.<PHENO>.manhattan.png and .qq.png,
<out>.summary.tsv (N, SNPs, lambda GC, min P, SNPs below 5e-8 and 5e-8/#phenotypes), <out>.log.

Example:
  gimtool gwas --bfile data/test --pheno pcs.tsv --covar covars.tsv --out gwas/pcs --threads 8
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options

Backend = Annotated[str, typer.Option("--backend", help="builtin (linear regression, plink2 --glm model) or bolt (BOLT-LMM --lmm).")]


def command(
    bfile: options.Bfile,
    pheno: Annotated[Path, typer.Option("--pheno", help="Phenotype table: FID IID name... (tab/space separated, NA missing).")],
    out: options.Out,
    pheno_name: Annotated[Optional[list[str]], typer.Option("--pheno-name", help="Phenotype columns to test (repeat or comma-separate); default all.")] = None,
    covar: Annotated[Optional[list[Path]], typer.Option("--covar", help="Covariate table: FID IID name... (repeat to join several files by FID IID, e.g. age/sex and ancestry PCs).")] = None,
    covar_name: Annotated[Optional[list[str]], typer.Option("--covar-name", help="Covariate columns to use (repeat or comma-separate); default all.")] = None,
    backend: Backend = "builtin",
    maf: Annotated[float, typer.Option("--maf", min=0.0, max=0.5, help="Skip SNPs with minor allele frequency below this (over the samples used).")] = 0.0,
    chunk: Annotated[Optional[str], typer.Option("--chunk", help="K/N: test only the K-th of N contiguous parts of the SNPs (outputs concatenate to the whole).")] = None,
    pheno_transform: Annotated[str, typer.Option("--pheno-transform", help="none, or int: rank-based inverse normal transform after regressing out the covariates.")] = "none",
    precision: Annotated[str, typer.Option("--precision", help="double (exact to plink2's printed digits) or single (float32 products, ~1e-5 relative: faster on a GPU; on the CPU the compiled kernel computes in double either way).")] = "double",
    chunk_snps: Annotated[Optional[int], typer.Option("--chunk-snps", min=1, help="SNPs per streamed chunk (default: ~4 MB of packed .bed rows on the CPU).")] = None,
    ld_scores: Annotated[Optional[Path], typer.Option("--ld-scores", help="bolt: LD score table (--LDscoresFile); default --LDscoresUseChip.")] = None,
    genetic_map: Annotated[Optional[Path], typer.Option("--genetic-map", help="bolt: --geneticMapFile.")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Do not draw Manhattan and QQ plots.")] = False,
    keep: options.Keep = None,
    remove: options.Remove = None,
    device: options.Device = "cpu",
    threads: options.Threads = 1,
) -> None:
    options.set_threads(threads)  # before numpy loads its BLAS
    import numpy as np
    import polars as pl

    from gimtool import gwas
    from gimtool.errors import InputError
    from gimtool.io.plink import Bfile
    from gimtool.conventions import GWAS_SUMMARY_COLS
    from gimtool.io.sumstats import SharedSnpWriter, read_sumstats, write_sumstats
    from gimtool.runlog import RunLog
    from gimtool.io.atomic import atomic_path

    if backend not in ("builtin", "bolt"):
        raise InputError(f"--backend {backend}: expected builtin or bolt")
    if pheno_transform not in ("none", "int"):
        raise InputError(f"--pheno-transform {pheno_transform}: expected none or int")
    if precision not in ("double", "single"):
        raise InputError(f"--precision {precision}: expected double or single")
    # torch (seconds to import) is loaded only when a GPU is asked for
    dev = options.resolve_device(device, torch_for_cpu=False)
    if backend == "bolt" and (chunk or dev.type != "cpu"):
        raise InputError("--chunk and --device cuda apply to the built-in backend only")

    with RunLog(out, "gwas") as log:
        for label, path in (("bfile", bfile + ".bed"), ("pheno", pheno), *(("covar", c) for c in covar or [])):
            log.input(label, path)
        bf = Bfile(bfile)
        log.info(f"{bf.n_samples} samples, {bf.n_snps} SNPs in {bfile}")
        inputs = gwas.load_inputs(bf, pheno, gwas.split_names(pheno_name), covar, gwas.split_names(covar_name),
                                  keep, remove, log)
        if pheno_transform == "int":
            inputs.y = gwas.inverse_normal_transform(inputs.y, inputs.c)
            log.info("phenotypes rank-inverse-normal transformed after regressing out the covariates")
        names = inputs.pheno_names
        log.info(f"phenotypes: {', '.join(names)}; covariates: {', '.join(inputs.covar_names) or '(none)'}")
        frames: dict[str, pl.DataFrame] = {}
        n_used: dict[str, int] = {}

        if backend == "builtin":
            prep = gwas.prepare(inputs, pheno, ", ".join(map(str, covar or [])))
            for nm, n in zip(names, prep.n):
                n_used[nm] = int(n)
                log.info(f"phenotype {nm}: {n} samples with phenotype and covariates")
            start, stop = gwas.parse_chunk(chunk, bf.n_snps)
            if chunk:
                log.info(f"--chunk {chunk}: SNPs {start + 1}-{stop} of {bf.n_snps}")
            with log.timed("association scan"):
                res = gwas.scan(bf, prep, start, stop, chunk_size=chunk_snps, threads=threads, device=dev,
                                dtype="float64" if precision == "double" else "float32", maf=maf)
            log.info(f"{len(res.snp_index)} SNPs tested" + (f" (--maf {maf})" if maf else ""))
            frames.update(zip(names, gwas.sumstats_frames(bf.bim, res)))
        else:
            from gimtool.backends.bolt import run_bolt_lmm
            from gimtool.io.tables import write_table

            ok_c = np.ones(bf.n_samples, bool) if inputs.c is None else np.all(np.isfinite(inputs.c), axis=1)
            with tempfile.TemporaryDirectory(dir=Path(out).parent if Path(out).parent.exists() else None) as td:
                pf = Path(td) / "pheno.tsv"
                write_table(inputs.samples.with_columns([pl.Series(nm, inputs.y[:, j]) for j, nm in enumerate(names)]), pf)
                cf = None
                if inputs.c is not None:
                    cf = Path(td) / "covar.tsv"
                    write_table(inputs.samples.with_columns([pl.Series(nm, inputs.c[:, j]) for j, nm in enumerate(inputs.covar_names)]), cf)
                with log.timed("bolt --lmm"):
                    runs = run_bolt_lmm(bf.prefix, pf, names, out, cf, inputs.covar_names, threads, ld_scores, genetic_map)
            for r in runs:
                log.output(f"BOLT log ({r.pheno})", r.log)
                df = read_sumstats(r.stats)
                n = int((np.isfinite(inputs.y[:, names.index(r.pheno)]) & ok_c).sum())
                n_used[r.pheno] = n
                frames[r.pheno] = df.with_columns(pl.lit(n, dtype=pl.Int64).alias("N"))
                if maf:
                    f = frames[r.pheno]["A1FREQ"]
                    frames[r.pheno] = frames[r.pheno].filter(pl.min_horizontal(f, 1 - f) >= maf)
                r.stats.unlink()

        rows = []
        from gimtool.io import figures as plots

        with log.timed("write outputs"):
            import concurrent.futures as cf

            write = write_sumstats
            if backend == "builtin":  # every phenotype has the same SNPs: their columns are formatted once
                write = SharedSnpWriter(frames[names[0]]).write
            # formatting and gzip release the GIL: phenotypes are written in parallel threads, while
            # this thread draws the plots
            with cf.ThreadPoolExecutor(max(1, threads)) as pool:
                written = [pool.submit(write, frames[nm], f"{out}.{nm}.sumstats.gz") for nm in names]
                for nm in names:
                    df = frames[nm]
                    row = gwas.summary_row(nm, df, len(names), n_used.get(nm))
                    rows.append(row)
                    if not no_plots:
                        pv = df["P"].to_numpy().astype(float)
                        plots.manhattan(df["CHR"].to_numpy(), df["BP"].to_numpy(), pv, f"{out}.{nm}.manhattan.png",
                                        title=nm, lines=(5e-8, 5e-8 / len(names)) if len(names) > 1 else (5e-8,))
                        plots.qq(pv, f"{out}.{nm}.qq.png", title=nm, lambda_gc=row["LAMBDA_GC"])
                for f in written:
                    f.result()
            for nm in names:
                log.output(f"sumstats {nm}", f"{out}.{nm}.sumstats.gz")
            summary = pl.DataFrame(rows).select(GWAS_SUMMARY_COLS)
            with atomic_path(f"{out}.summary.tsv") as tmp:
                summary.write_csv(tmp, separator="\t", null_value="NA")
        log.output("summary", f"{out}.summary.tsv")
        for r in rows:
            log.info(f"{r['PHENO']}: N={r['N']} SNPs={r['NSNP']} lambdaGC={r['LAMBDA_GC']:.4f} minP={r['MIN_P']} "
                     f"P<5e-8: {r['N_P5E8']}")
