"""LD clumping (PLINK 1.9 --clump semantics) and the paper's locus count.

Clumps the SNPs of one or more sumstats files (gimtool, BOLT-LMM --statsFile or PLINK 2
.glm.linear, recognized by their header) with LD from a reference fileset, exactly as
`plink --clump` does: index SNPs in order of P (P <= --p1) absorb the SNPs not yet clumped that
lie within --kb and have r² > --r2; members with P < --p2 are listed. r² is PLINK 1.9's two-locus
haplotype (EM) r² by default, or the squared genotype correlation with --r2-method corr.

Writes <out>.clumped (tab-separated: CHR F SNP BP P TOTAL NSIG S05 S01 S001 S0001 SP2; F is the
1-based position of the sumstats file in --sumstats), <out>.clumped.members.tsv (each listed
member with its r², like --clump-verbose) and <out>.log. With --loci also <out>.loci.tsv:
SNPs with P < --loci-p and MAF >= --maf merged into loci within --loci-kb, pooled over all files;
--compare OTHER.loci.tsv ... adds a UNIQUE column marking the loci that none of the other sets
has within --loci-kb.

Sumstats files may be given as `--sumstats A --sumstats B`, `--sumstats A,B` or as trailing
arguments (so a shell glob works): gimtool clump --bfile REF --out X gwas.*.sumstats.gz
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from gimtool.commands import _options as options


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x for x in str(v).split(",") if x)
    return out


def _pheno_name(path: str) -> str:
    name = Path(path).name
    name = re.sub(r"\.gz$", "", name)
    name = re.sub(r"\.(sumstats|tsv|txt|stats|glm\.linear|linear|assoc)$", "", name)
    return name


def _write_tsv(df, path: str) -> None:
    from gimtool.conventions import MISSING
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t", null_value=MISSING)


def _read_loci(path: str):
    """A loci table written by `gimtool clump --loci` (needs CHR, START, END)."""
    import polars as pl

    from gimtool.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: loci file (--compare) not found")
    try:
        df = pl.read_csv(p, separator="\t", infer_schema=False)
    except pl.exceptions.PolarsError as e:
        raise InputError(f"{p}: not a tab-separated loci table ({str(e).splitlines()[0]})") from None
    need = ("CHR", "START", "END")
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise InputError(f"{p}: loci table lacks column(s) {', '.join(miss)}; expected {' '.join(need)}, found {' '.join(df.columns)}")
    try:
        return df.with_columns(pl.col("START").cast(pl.Int64), pl.col("END").cast(pl.Int64))
    except pl.exceptions.PolarsError:
        raise InputError(f"{p}: START and END must be integers") from None


def command(
    bfile: options.Bfile,
    out: options.Out,
    sumstats: Annotated[Optional[List[str]], typer.Option("--sumstats", help="Sumstats file(s): repeat the option, separate with commas, or list them as trailing arguments.")] = None,
    files: Annotated[Optional[List[str]], typer.Argument(help="More sumstats files (e.g. a shell glob).", show_default=False)] = None,
    p1: Annotated[float, typer.Option("--p1", help="Index SNPs: P <= p1.")] = 5e-8,
    p2: Annotated[float, typer.Option("--p2", help="Members listed in SP2: P < p2.")] = 1e-2,
    r2: Annotated[float, typer.Option("--r2", help="Members: r² with the index SNP > r2.")] = 0.1,
    kb: Annotated[float, typer.Option("--kb", help="Members: within kb of the index SNP.")] = 250.0,
    r2_method: Annotated[str, typer.Option("--r2-method", help="em: PLINK 1.9's haplotype (EM) r²; corr: squared genotype correlation.")] = "em",
    loci: Annotated[bool, typer.Option("--loci", help="Also count loci (the paper's definition) into <out>.loci.tsv.")] = False,
    loci_p: Annotated[float, typer.Option("--loci-p", help="Loci: significance threshold (P < loci-p).")] = 5e-9,
    loci_kb: Annotated[float, typer.Option("--loci-kb", help="Loci: SNPs closer than this (kb) share a locus.")] = 250.0,
    maf: Annotated[float, typer.Option("--maf", help="Loci: minimum minor allele frequency.")] = 0.01,
    compare: Annotated[Optional[List[str]], typer.Option("--compare", help="Loci tables of other methods; marks this set's unique loci (implies --loci).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Accepted for PLINK-style scripts; clumping runs on one thread.")] = 1,
) -> None:
    from gimtool.errors import InputError
    from gimtool.runlog import RunLog

    paths = _split(sumstats) + _split(files)
    others = _split(compare)
    if not paths:
        raise InputError("clump: no sumstats given; use --sumstats FILE (or list files as arguments)")
    if not (0 < p1 <= 1):
        raise InputError(f"--p1 {p1}: expected 0 < p1 <= 1")
    if not (p1 <= p2 <= 1):
        raise InputError(f"--p2 {p2}: expected p1 ({p1}) <= p2 <= 1")
    if not (0 <= r2 < 1):
        raise InputError(f"--r2 {r2}: expected 0 <= r2 < 1")
    if kb < 0.001:
        raise InputError(f"--kb {kb}: expected at least 0.001")
    if r2_method not in ("em", "corr"):
        raise InputError(f"--r2-method {r2_method}: expected em or corr")
    if not (0 <= maf <= 0.5):
        raise InputError(f"--maf {maf}: expected 0 <= maf <= 0.5")
    loci = loci or bool(others)

    # clumping is single-threaded numpy (bit operations, no BLAS); options.set_threads would
    # import torch, which costs more than the whole clumping
    del threads
    import numpy as np
    import polars as pl

    from gimtool.io.plink import Bfile
    from gimtool.conventions import CLUMP_COLS, CLUMP_MEMBER_COLS, LOCI_COLS, LOCI_UNIQUE_COL
    from gimtool.io.sumstats import read_sumstats
    from gimtool.stats import clump as clumping

    with RunLog(out, "clump") as log:
        ref = Bfile(bfile)
        log.input("bfile", ref.bed_path)
        founders = ((ref.fam["FATHER"] == "0") & (ref.fam["MOTHER"] == "0")).to_numpy()
        log.info(f"reference: {ref.n_snps:,} SNPs, {ref.n_samples:,} samples, {int(founders.sum()):,} founders (LD from founders, as PLINK)")
        if not founders.any():
            raise InputError(f"{ref.fam_path}: no founders (samples with both parent IDs 0) to compute LD from")
        bed = np.memmap(ref.bed_path, dtype=np.uint8, mode="r", offset=3, shape=(ref.n_snps, (ref.n_samples + 3) // 4))

        def read_packed(rows):
            return np.asarray(bed[np.asarray(rows, dtype=np.int64)])

        frames = []
        with log.timed("read sumstats"):
            for k, path in enumerate(paths, 1):
                log.input(f"sumstats F={k}", path)
                frames.append(read_sumstats(path))
        names = [_pheno_name(p) for p in paths]
        for i, nm in enumerate(names):
            if names.count(nm) > 1:
                names[i] = f"{nm}#{i + 1}"

        with log.timed("clump"):
            try:
                rep = clumping.clump_sumstats(ref.bim, frames, read_packed, ref.n_samples, founders,
                                              p1=p1, p2=p2, r2=r2, kb=kb, r2_method=r2_method)
            except clumping.ReferenceOrderError as e:
                raise InputError(f"{ref.bim_path}: {e}") from None
        for k, st in enumerate(rep.file_stats, 1):
            log.info(f"F={k} {paths[k - 1]}: {st['rows']:,} rows, {st['no_p']:,} without a P, "
                     f"{st['found']:,} in the reference, {st['missing']:,} not in it "
                     f"({st['missing_top']:,} of them with P <= p1)")
            if st["rows"] and st["found"] < 0.5 * st["rows"]:
                log.warn(f"{paths[k - 1]}: only {st['found']:,} of {st['rows']:,} SNPs are in the reference {bfile}")
            if st["missing_top"]:
                log.warn(f"{paths[k - 1]}: {st['missing_top']:,} SNP(s) with P <= p1 missing from the reference "
                         f"and skipped, e.g. {', '.join(st['missing_top_ids'])}")
            if st["dup"]:
                log.warn(f"{paths[k - 1]}: {st['dup']:,} SNP ID(s) appear more than once; all their rows are used")
        log.info(f"clumping: p1 {p1:g}, p2 {p2:g}, r2 > {r2:g} ({r2_method}), kb {kb:g} "
                 f"(|dBP| <= {clumping.bp_radius(kb):,}); {rep.n_index_eligible:,} index-eligible SNPs, "
                 f"{rep.n_loaded:,} SNPs' genotypes read, {rep.n_pairs:,} r² computed")
        if rep.dup_ref_ids:
            log.warn(f"{ref.bim_path}: {rep.dup_ref_ids:,} SNP ID(s) of the sumstats occur more than once; the first is used")
        if not rep.table.height:
            log.warn("no SNP with P <= p1: no clumps")
        log.info(f"clumps: {rep.table.height:,}")
        _write_tsv(rep.table.select(CLUMP_COLS), out + ".clumped")
        log.output("clumps", out + ".clumped")
        _write_tsv(rep.members.select(CLUMP_MEMBER_COLS), out + ".clumped.members.tsv")
        log.output("clump members", out + ".clumped.members.tsv")

        if loci:
            from gimtool.stats import loci as locus_count
            from gimtool.stats.ld import planes_from_bed

            def ref_a1_freq(rows):
                return planes_from_bed(read_packed(rows), ref.n_samples, founders).a1_freq()

            with log.timed("loci"):
                table, lstats = locus_count.loci_from_sumstats(frames, names, ref.bim, ref_a1_freq, p=loci_p, kb=loci_kb, maf_min=maf)
            log.info(f"loci: P < {loci_p:g}, MAF >= {maf:g}, merged within {loci_kb:g} kb, pooled over {len(paths)} file(s): "
                     f"{lstats['n_sig']:,} significant (SNP, file) pairs, {lstats['maf_from_ref']:,} MAFs taken from the reference")
            if lstats["no_maf"]:
                log.warn(f"{lstats['no_maf']:,} significant SNP(s) have no A1FREQ and are not in the reference: dropped from the loci")
            log.info(f"loci count: {table.height}")
            cols = list(LOCI_COLS)
            if others:
                other_frames = []
                for o in others:
                    log.input("compare", o)
                    other_frames.append(_read_loci(o))
                uniq = locus_count.unique_loci(table, other_frames, kb=loci_kb)
                table = table.with_columns(pl.Series(LOCI_UNIQUE_COL, uniq.astype(np.int64)))
                cols.append(LOCI_UNIQUE_COL)
                log.info(f"unique loci (none of {len(others)} other set(s) within {loci_kb:g} kb): {int(uniq.sum())}")
            _write_tsv(table.select(cols), out + ".loci.tsv")
            log.output("loci", out + ".loci.tsv")
            print(f"{table.height} loci" + (f", {int(table[LOCI_UNIQUE_COL].sum())} unique" if others else ""))
        print(f"{rep.table.height} clumps written to {out}.clumped")
