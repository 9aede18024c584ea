"""`gimtool clump` as a function: LD clumping with PLINK 1.9's semantics (:func:`run`), and the
paper's locus count. The clumping itself is the kernel :func:`gimtool.stats.clump.clump`; here the
sumstats are matched to the reference, genotypes read, and the outputs written. A script calls::

    from gimtool.pipelines import clump
    clump.run("ref", "out/clumps", ["gwas.PC1.sumstats.gz", "gwas.PC2.sumstats.gz"], loci=True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from gimtool.conventions import CLUMP_COLS, CLUMP_MEMBER_COLS, LOCI_COLS, LOCI_UNIQUE_COL
from gimtool.errors import InputError, OptionError
from gimtool.stats import ld
from gimtool.stats.clump import (ReferenceOrderError, position_key, bp_radius, clump, group_entries,
                                 needed_snps)


@dataclass
class ClumpReport:
    """Result of :func:`clump_sumstats`: the .clumped table (CLUMP_COLS), the listed members
    (CLUMP_MEMBER_COLS), and what happened to each file's rows."""

    clumps: list[Clump]
    table: pl.DataFrame
    members: pl.DataFrame
    file_stats: list[dict]
    n_index_eligible: int
    n_loaded: int
    n_pairs: int
    dup_ref_ids: int


def _file_entries(df: pl.DataFrame, label: str, k: int, bim: pl.DataFrame, ref: pl.DataFrame, same_order: bool,
                  p1: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(reference rows, P values, stats) of the rows of sumstats file F=`k` that have a P and
    are in the reference (`ref`: SNP -> ROW, first of duplicated IDs)."""
    d = df.select(pl.col("SNP").cast(pl.Utf8), pl.col("P").cast(pl.Float64))
    has_p = d["P"].is_not_null() & d["P"].is_not_nan()
    bad = d.filter(has_p & ((pl.col("P") < 0) | (pl.col("P") > 1)))
    if bad.height:
        raise InputError(f"{label}: column P: expected values in [0, 1], found {bad['P'][0]} (SNP {bad['SNP'][0]})")
    m = bim.height
    if same_order and d.height == m and d["SNP"].equals(bim["SNP"]):
        # the reference's SNPs in its order (what `gimtool gwas` writes): row k is reference
        # row k; the join below would give the same rows, found in this order
        ok = has_p.fill_null(False).to_numpy()
        stats = {"rows": df.height, "no_p": int(m - ok.sum()), "found": int(ok.sum()), "missing": 0,
                 "missing_top": 0, "missing_top_ids": [], "dup": 0}
        return np.flatnonzero(ok).astype(np.int64), d["P"].to_numpy()[ok].astype(np.float64), stats
    d = d.filter(has_p)
    j = d.join(ref, on="SNP", how="left", maintain_order="left")
    found = j.filter(pl.col("ROW").is_not_null())
    missing = j.filter(pl.col("ROW").is_null())
    top = missing.filter(pl.col("P") <= p1)
    stats = {"rows": df.height, "no_p": df.height - d.height, "found": found.height, "missing": missing.height,
             "missing_top": top.height, "missing_top_ids": top["SNP"].head(5).to_list(),
             "dup": int(d["SNP"].is_duplicated().sum())}
    return found["ROW"].to_numpy().astype(np.int64), found["P"].to_numpy().astype(np.float64), stats


def _reference_blocks(bim: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(chromosome block id, bp) of the reference rows; ReferenceOrderError unless chromosomes
    are contiguous and positions sorted within each."""
    chrom = bim["CHR"].rle_id().to_numpy().astype(np.int64)  # runs of equal CHR
    if bim.height and bim["CHR"].n_unique() != int(chrom[-1]) + 1:
        raise ReferenceOrderError("reference chromosomes are not contiguous blocks")
    bp = bim["BP"].to_numpy().astype(np.int64)
    try:
        position_key(chrom, bp)
    except ValueError as e:
        raise ReferenceOrderError(str(e)) from None
    return chrom, bp


def _tables(bim: pl.DataFrame, bp: np.ndarray, clumps: list) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The .clumped table (CLUMP_COLS) and the listed members (CLUMP_MEMBER_COLS)."""
    # names of the reference rows the output mentions only (not all m)
    shown = (np.unique(np.concatenate([[c.index for c in clumps]] + [c.member_snp for c in clumps])).astype(np.int64)
             if clumps else np.zeros(0, np.int64))
    names = dict(zip(shown.tolist(), bim["SNP"].gather(shown).to_list()))
    chr_str = dict(zip(shown.tolist(), bim["CHR"].gather(shown).to_list()))
    rows = []
    mem = {"INDEX": [], "SNP": [], "F": [], "KB": [], "R2": [], "P": []}
    for c in clumps:
        ms, mf = c.member_snp.tolist(), c.member_file.tolist()
        sp2 = ",".join(f"{names[s]}({f})" for s, f in zip(ms, mf)) or "NONE"
        rows.append((chr_str[c.index], c.file, names[c.index], int(bp[c.index]), c.p, c.total, *map(int, c.histo), sp2))
        mem["INDEX"].extend([names[c.index]] * len(ms))
        mem["SNP"].extend(names[s] for s in ms)
        mem["F"].extend(mf)
        mem["KB"].extend(((bp[c.member_snp] - bp[c.index]) / 1000).tolist())
        mem["R2"].extend(np.abs(c.member_r2).tolist())
        mem["P"].extend(c.member_p.tolist())
    dtypes = (pl.Utf8, pl.Int64, pl.Utf8, pl.Int64, pl.Float64) + (pl.Int64,) * 6 + (pl.Utf8,)
    table = pl.DataFrame(rows, schema=dict(zip(CLUMP_COLS, dtypes)), orient="row")
    member_types = (pl.Utf8, pl.Utf8, pl.Int64, pl.Float64, pl.Float64, pl.Float64)
    return table, pl.DataFrame(mem, schema=dict(zip(CLUMP_MEMBER_COLS, member_types)))


def clump_sumstats(
    bim: pl.DataFrame,
    frames: list[pl.DataFrame],
    read_packed: Callable[[np.ndarray], np.ndarray],
    n_samples: int,
    keep: np.ndarray | None = None,
    p1: float = 5e-8,
    p2: float = 1e-2,
    r2: float = 0.1,
    kb: float = 250.0,
    r2_method: str = "em",
    labels: list[str] | None = None,
    max_block: int = 256,
) -> ClumpReport:
    """Clump sumstats frames (columns SNP and P at least; file F = position in `frames`, from 1)
    against a reference: `bim` (CHR SNP BP ...), `read_packed(rows)` returning the .bed rows of
    those reference rows (uint8, shape (len(rows), ceil(n_samples/4))), `keep` the samples LD is
    computed from (PLINK: founders). Rows whose P is missing are skipped, as PLINK does."""
    labels = labels or [f"sumstats {k}" for k in range(1, len(frames) + 1)]
    m = bim.height
    ref = pl.DataFrame({"SNP": bim["SNP"], "ROW": np.arange(m, dtype=np.int64)})
    n_dup_ref = 0
    if bim["SNP"].n_unique() != m:
        n_dup_ref = int(ref["SNP"].is_duplicated().sum())
        ref = ref.unique("SNP", keep="first", maintain_order=True)
    parts = [_file_entries(df, label, k, bim, ref, not n_dup_ref, p1) for k, (df, label) in enumerate(zip(frames, labels), 1)]
    entries = group_entries(m, np.concatenate([r for r, _, _ in parts]),
                            np.concatenate([np.full(len(r), k, dtype=np.int64) for k, (r, _, _) in enumerate(parts, 1)]),
                            np.concatenate([p for _, p, _ in parts]))
    chrom, bp = _reference_blocks(bim)
    need = needed_snps(chrom, bp, entries, p1, kb)
    planes = ld.planes_from_reader(read_packed, need, n_samples, keep) if need.size else None
    lut = np.full(m, -1, dtype=np.int64)
    lut[need] = np.arange(need.size)
    n_pairs = 0

    def r2_fn(i, j):
        nonlocal n_pairs
        n_pairs += i.shape[0]
        return ld.r2_pairs(planes, lut[i], lut[j], r2_method)

    clumps = clump(chrom, bp, entries, r2_fn, p1=p1, p2=p2, r2=r2, kb=kb, max_block=max_block) if need.size else []
    table, members = _tables(bim, bp, clumps)
    return ClumpReport(clumps, table, members, [st for _, _, st in parts], int(np.sum(entries.min_p <= p1)),
                       int(need.size), n_pairs, n_dup_ref)


# -- the whole command ---------------------------------------------------------------------------


def sumstats_label(path: str) -> str:
    """A file's phenotype name for the loci's PHENOS column: its name without the sumstats suffix."""
    name = re.sub(r"\.gz$", "", Path(path).name)
    return re.sub(r"\.(sumstats|tsv|txt|stats|glm\.linear|linear|assoc)$", "", name)


def check_thresholds(p1: float, p2: float, r2: float, kb: float, r2_method: str, maf: float, loci_p: float = 5e-9) -> None:
    """The options' ranges (usage errors, exit 2, as the CLI's own range checks)."""
    if not (0 < p1 <= 1):
        raise OptionError(f"--p1 {p1}: expected 0 < p1 <= 1")
    if not (p1 <= p2 <= 1):
        raise OptionError(f"--p2 {p2}: expected p1 ({p1}) <= p2 <= 1")
    if not (0 <= r2 < 1):
        raise OptionError(f"--r2 {r2}: expected 0 <= r2 < 1")
    if kb < 0.001:
        raise OptionError(f"--kb {kb}: expected at least 0.001")
    if r2_method not in ("em", "corr"):
        raise OptionError(f"--r2-method {r2_method}: expected em or corr")
    if not (0 <= maf <= 0.5):
        raise OptionError(f"--maf {maf}: expected 0 <= maf <= 0.5")
    if not (0 < loci_p <= 1):
        raise OptionError(f"--loci-p {loci_p}: expected 0 < loci-p <= 1")


def _log_report(rep: ClumpReport, paths: list[str], ref, bfile: str, log) -> None:
    for k, st in enumerate(rep.file_stats, 1):
        path = paths[k - 1]
        log.info(f"F={k} {path}: {st['rows']:,} rows, {st['no_p']:,} without a P, "
                 f"{st['found']:,} in the reference, {st['missing']:,} not in it "
                 f"({st['missing_top']:,} of them with P <= p1)")
        if st["rows"] and st["found"] < 0.5 * st["rows"]:
            log.warn(f"{path}: only {st['found']:,} of {st['rows']:,} SNPs are in the reference {bfile}")
        if st["missing_top"]:
            log.warn(f"{path}: {st['missing_top']:,} SNP(s) with P <= p1 missing from the reference "
                     f"and skipped, e.g. {', '.join(st['missing_top_ids'])}")
        if st["dup"]:
            log.warn(f"{path}: {st['dup']:,} SNP ID(s) appear more than once; all their rows are used")
    if rep.dup_ref_ids:
        log.warn(f"{ref.bim_path}: {rep.dup_ref_ids:,} SNP ID(s) of the sumstats occur more than once; the first is used")
    if not rep.table.height:
        log.warn("no SNP with P <= p1: no clumps")
    log.info(f"clumps: {rep.table.height:,}")


def _loci(out, frames, paths, ref, read_packed, founders, loci_p, loci_kb, maf, others, log) -> pl.DataFrame:
    """The paper's loci of all files pooled, with UNIQUE against the --compare tables (`others`:
    {path: table}, read before any output is written); written to <out>.loci.tsv."""
    from gimtool.io.tables import write_tsv
    from gimtool.stats import loci as locus_count

    names = [sumstats_label(p) for p in paths]
    for i, nm in enumerate(names):
        if names.count(nm) > 1:
            names[i] = f"{nm}#{i + 1}"

    def ref_a1_freq(rows):
        return ld.planes_from_bed(read_packed(rows), ref.n_samples, founders).a1_freq()

    with log.timed("loci"):
        table, st = locus_count.loci_from_sumstats(frames, names, ref.bim, ref_a1_freq, p=loci_p, kb=loci_kb, maf_min=maf)
    log.info(f"loci: P < {loci_p:g}, MAF >= {maf:g}, merged within {loci_kb:g} kb, pooled over {len(paths)} file(s): "
             f"{st['n_sig']:,} significant (SNP, file) pairs, {st['maf_from_ref']:,} MAFs taken from the reference")
    if st["no_maf"]:
        log.warn(f"{st['no_maf']:,} significant SNP(s) have no A1FREQ and are not in the reference: dropped from the loci")
    log.info(f"loci count: {table.height}")
    cols = list(LOCI_COLS)
    if others:
        for o in others:
            log.input("compare", o)
        uniq = locus_count.unique_loci(table, list(others.values()), kb=loci_kb)
        table = table.with_columns(pl.Series(LOCI_UNIQUE_COL, uniq.astype(np.int64)))
        cols.append(LOCI_UNIQUE_COL)
        log.info(f"unique loci (none of {len(others)} other set(s) within {loci_kb:g} kb): {int(uniq.sum())}")
    write_tsv(table.select(cols), out + ".loci.tsv")
    log.output("loci", out + ".loci.tsv")
    return table


def run(bfile: str | None, out: str, sumstats: list[str], p1: float = 5e-8, p2: float = 1e-2, r2: float = 0.1,
        kb: float = 250.0, r2_method: str = "em", loci: bool = False, loci_p: float = 5e-9, loci_kb: float = 250.0,
        maf: float = 0.01, compare: list[str] | None = None, pfile: str | None = None) -> tuple[ClumpReport, pl.DataFrame | None]:
    """`gimtool clump` with LD from `bfile` or `pfile`: writes <out>.clumped, <out>.clumped.members.tsv (with `loci` or `compare`
    also <out>.loci.tsv) and <out>.log; returns the report and the loci table (or None).
    Single-threaded numpy (bit operations, no BLAS)."""
    from gimtool.io.genotypes import open_genotypes
    from gimtool.io.loci import read_loci
    from gimtool.io.sumstats import read_sumstats
    from gimtool.io.tables import write_tsv
    from gimtool.runlog import RunLog

    if not sumstats:
        raise InputError("clump: no sumstats given; use --sumstats FILE (or list files as arguments)")
    check_thresholds(p1, p2, r2, kb, r2_method, maf, loci_p)
    with RunLog(out, "clump") as log:
        ref = open_genotypes(bfile, pfile)
        log.input("bfile" if pfile is None else "pfile", ref.bed_path)
        founders = ((ref.fam["FATHER"] == "0") & (ref.fam["MOTHER"] == "0")).to_numpy()
        log.info(f"reference: {ref.n_snps:,} SNPs, {ref.n_samples:,} samples, {int(founders.sum()):,} founders (LD from founders, as PLINK)")
        if not founders.any():
            raise InputError(f"{ref.fam_path}: no founders (samples with both parent IDs 0) to compute LD from")

        def read_packed(rows):
            return ref.packed(np.asarray(rows, dtype=np.int64))

        frames = []
        with log.timed("read sumstats"):
            for k, path in enumerate(sumstats, 1):
                log.input(f"sumstats F={k}", path)
                frames.append(read_sumstats(path))
        others = {o: read_loci(o) for o in compare or []}  # a bad --compare table fails before any output
        with log.timed("clump"):
            try:
                rep = clump_sumstats(ref.bim, frames, read_packed, ref.n_samples, founders, p1=p1, p2=p2, r2=r2, kb=kb,
                                     r2_method=r2_method)
            except ReferenceOrderError as e:
                raise InputError(f"{ref.bim_path}: {e}") from None
        log.info(f"clumping: p1 {p1:g}, p2 {p2:g}, r2 > {r2:g} ({r2_method}), kb {kb:g} "
                 f"(|dBP| <= {bp_radius(kb):,}); {rep.n_index_eligible:,} index-eligible SNPs, "
                 f"{rep.n_loaded:,} SNPs' genotypes read, {rep.n_pairs:,} r² computed")
        _log_report(rep, sumstats, ref, ref.prefix, log)
        for table, suffix, what in ((rep.table.select(CLUMP_COLS), ".clumped", "clumps"),
                                    (rep.members.select(CLUMP_MEMBER_COLS), ".clumped.members.tsv", "clump members")):
            write_tsv(table, out + suffix)
            log.output(what, out + suffix)
        table = None
        if loci or compare:
            table = _loci(out, frames, sumstats, ref, read_packed, founders, loci_p, loci_kb, maf, others, log)
        loci_note = "" if table is None else f" and {table.height} loci" + (
            f" ({int(table[LOCI_UNIQUE_COL].sum())} unique)" if others else "") + f" to {out}.loci.tsv"
        log.summary(f"clump: wrote {rep.table.height} clumps to {out}.clumped (members in {out}.clumped.members.tsv)"
                    + loci_note)
    return rep, table
