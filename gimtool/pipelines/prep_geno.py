"""Genotype QC and preparation (the library behind `gimtool prep-geno`).

Order of operations, as PLINK 2 applies them: --keep/--remove, --chr/--extract/--exclude,
then --mind (sample call rate over the remaining SNPs), then the SNP filters --geno, --hwe and
--maf, all computed on the remaining samples (allele frequencies and HWE on founders only, as
PLINK does). The bed is read in SNP chunks, so memory stays bounded for any cohort size; the
SNP statistics are counted from the packed 2-bit rows without decoding them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from gimtool.errors import InputError
from gimtool.conventions import chrom_to_int
from gimtool.io.genmap import parse_chr_spec, read_genetic_map
from gimtool.io.genotypes import GenotypeSource, open_genotypes
from gimtool.io.tables import read_snp_list, select_samples
from gimtool.progress import track
from gimtool.stats import qc


@dataclass
class QCFilters:
    maf: float | None = 0.01
    geno: float | None = 0.1
    mind: float | None = None
    hwe: float | None = None
    chr: str = "1-22"
    keep: str | None = None
    remove: str | None = None
    extract: str | None = None
    exclude: str | None = None
    genetic_map: str | None = None
    cm_per_mb: float = 1.0


@dataclass
class QCResult:
    sample_mask: np.ndarray  # (n_samples,) bool over the fam
    snp_mask: np.ndarray  # (n_snps,) bool over the bim
    cm: np.ndarray  # (n_snps,) genetic positions in cM for every bim SNP
    chrom: np.ndarray  # (n_snps,) PLINK chromosome numbers (-1 unknown)
    counts: dict[str, int] = field(default_factory=dict)


def packed_chunk_size(n_samples: int, budget_bytes: int = 32 * 2**20) -> int:
    """SNPs per chunk of packed .bed rows (~32 MB)."""
    return int(max(64, min(200_000, budget_bytes // max(1, (n_samples + 3) // 4))))


def chrom_codes(chr_col: pl.Series) -> np.ndarray:
    """PLINK chromosome numbers of a bim's CHR column (-1 where unknown), looked up once per distinct code."""
    col = chr_col.cast(pl.Utf8)
    uniq = col.unique().to_list()
    codes = [(-1 if (c := chrom_to_int(x)) is None else c) for x in uniq]
    return col.replace_strict(uniq, codes, return_dtype=pl.Int64).to_numpy()


def _founders(fam: pl.DataFrame, mask: np.ndarray) -> np.ndarray:
    """Founders among the kept samples: neither parent is a kept sample of the same family."""
    ids = {(f, i) for f, i, k in zip(fam["FID"], fam["IID"], mask) if k}
    father = np.array([(f, p) in ids for f, p in zip(fam["FID"], fam["FATHER"])])
    mother = np.array([(f, p) in ids for f, p in zip(fam["FID"], fam["MOTHER"])])
    return mask & ~father & ~mother


def genetic_positions(bf: GenotypeSource, chrom: np.ndarray, f: QCFilters, log) -> np.ndarray:
    """cM position of every bim SNP: from --genetic-map, else the bim column (Morgans -> cM), else
    --cm-per-mb times the physical position."""
    bp = bf.bim["BP"].to_numpy()
    col = bf.bim["CM"].to_numpy().astype(np.float64)
    if f.genetic_map:
        gmap = read_genetic_map(f.genetic_map)
        cm = np.zeros(len(bp))
        for c in np.unique(chrom[chrom >= 0]):
            if int(c) not in gmap:
                raise InputError(
                    f"{f.genetic_map}: genetic map has no chromosome {int(c)}, which the data needs "
                    f"(map chromosomes: {', '.join(map(str, sorted(gmap)))})"
                )
            sel = chrom == c
            cm[sel] = qc.interpolate_cm(bp[sel], *gmap[int(c)])
        log.info(f"genetic positions interpolated from {f.genetic_map}")
        return cm
    units = qc.detect_cm_units(chrom, bp, col)
    if units == "morgans":
        log.info("bim genetic positions are in Morgans: converted to cM (x100)")
        return col * 100.0
    if units == "zero":
        log.warn(
            f"bim genetic positions are all zero and no --genetic-map was given: "
            f"filled at {f.cm_per_mb} cM/Mb from the physical positions"
        )
        return bp / 1e6 * f.cm_per_mb
    log.info("bim genetic positions are in cM")
    return col


def _candidate_snps(bf: GenotypeSource, f: QCFilters, log, counts: dict) -> tuple[np.ndarray, np.ndarray]:
    """PLINK chromosome numbers of every bim SNP and the mask of those --chr/--extract/--exclude keep."""
    chrom = chrom_codes(bf.bim["CHR"])
    vmask = np.isin(chrom, list(parse_chr_spec(f.chr)))
    dropped_chr = int((~vmask).sum())
    if dropped_chr:
        codes = sorted(set(np.asarray(bf.bim["CHR"].to_list())[~vmask].tolist()))
        log.info(f"--chr {f.chr}: {dropped_chr} SNPs on other chromosomes dropped (codes: {', '.join(codes[:10])})")
    counts["snps_dropped_chr"] = dropped_chr
    for path, is_extract in ((f.extract, True), (f.exclude, False)):
        if path is None:
            continue
        lst = read_snp_list(path)
        hit = bf.bim["SNP"].is_in(pl.Series(list(lst), dtype=pl.Utf8)).to_numpy()
        before = int(vmask.sum())
        vmask &= hit if is_extract else ~hit
        log.info(f"--{'extract' if is_extract else 'exclude'} {path}: {len(set(lst))} IDs, {before - int(vmask.sum())} SNPs dropped")
    if not vmask.any():
        raise InputError("no SNPs left after --chr/--extract/--exclude")
    return chrom, vmask


def _packed_chunks(bf: GenotypeSource, cand: np.ndarray):
    """(offset into cand, packed .bed rows) over chunks of the candidate SNPs; contiguous SNPs are
    read as one slice of the .bed (no index gather)."""
    pchunk = packed_chunk_size(bf.n_samples)
    contiguous = bool(len(cand)) and cand[-1] - cand[0] + 1 == len(cand)
    for a in range(0, len(cand), pchunk):
        sel = slice(int(cand[a]), int(cand[min(a + pchunk, len(cand)) - 1]) + 1) if contiguous else cand[a : a + pchunk]
        yield a, bf.packed(sel)


def _apply_mind(bf: GenotypeSource, cand: np.ndarray, smask: np.ndarray, mind: float, log, counts: dict) -> None:
    """--mind: drop (in smask) the samples missing more than `mind` of the candidate SNPs, counted
    from the missing codes of the packed rows."""
    sidx = np.flatnonzero(smask)
    miss = np.zeros(4 * ((bf.n_samples + 3) // 4), dtype=np.int64)
    for _, rows in _packed_chunks(bf, cand):
        qc.packed_missing_per_sample(rows, miss)
    bad = miss[sidx] / len(cand) > mind
    if bad.any():
        shown = ", ".join(f"{bf.fam['FID'][i]} {bf.fam['IID'][i]}" for i in sidx[bad][:5].tolist())
        log.info(f"--mind {mind}: {int(bad.sum())} samples removed (e.g. {shown})")
    smask[sidx[bad]] = False
    counts["samples_dropped_mind"] = int(bad.sum())
    if not smask.any():
        raise InputError(f"--mind {mind}: every sample was removed")


def _snp_filters(stats_all: np.ndarray, stats_f: np.ndarray, n_samples: int, f: QCFilters, log, counts: dict) -> np.ndarray:
    """The candidate SNPs that pass --geno (over all kept samples), --hwe and --maf (founders)."""
    keep = np.ones(len(stats_all), dtype=bool)
    tests = []
    if f.geno is not None:
        tests.append(("geno", f.geno, stats_all[:, 3] / n_samples > f.geno))
    if f.hwe is not None:
        tests.append(("hwe", f.hwe, ~(qc.hwe_exact_p(stats_f) >= f.hwe)))
    if f.maf is not None:
        af = qc.allele_freq(stats_f)
        tests.append(("maf", f.maf, ~(np.minimum(af, 1 - af) >= f.maf)))
    for name, value, bad in tests:
        counts[f"snps_dropped_{name}"] = int((bad & keep).sum())
        log.info(f"--{name} {value}: {counts[f'snps_dropped_{name}']} SNPs removed")
        keep &= ~bad
    return keep


def run_qc(bf: GenotypeSource, f: QCFilters, log, threads: int = 1, progress: bool = True) -> QCResult:
    """Decide which samples and SNPs pass QC, from the packed .bed rows (read twice with --mind)."""
    counts: dict[str, int] = {"samples_in": bf.n_samples, "snps_in": bf.n_snps}
    smask = select_samples(bf.fam.select("FID", "IID"), f.keep, f.remove, log=log)
    if not smask.any():
        raise InputError("no samples left after --keep/--remove")
    chrom, vmask = _candidate_snps(bf, f, log, counts)
    cm = genetic_positions(bf, chrom, f, log)
    cand = np.flatnonzero(vmask)
    if f.mind is not None:
        _apply_mind(bf, cand, smask, f.mind, log, counts)
    # SNP statistics on the remaining samples (allele frequencies and HWE on founders only)
    founders = _founders(bf.fam, smask)
    all_founders = bool((founders == smask).all())
    stats_all = np.zeros((len(cand), 4), dtype=np.int64)
    stats_f = stats_all if all_founders else np.zeros((len(cand), 4), dtype=np.int64)
    for a, rows in _packed_chunks(bf, cand):
        stats_all[a : a + len(rows)] = qc.packed_genotype_counts(rows, bf.n_samples, smask, threads=threads)
        if not all_founders:
            stats_f[a : a + len(rows)] = qc.packed_genotype_counts(rows, bf.n_samples, founders, threads=threads)
    keep = _snp_filters(stats_all, stats_f, int(smask.sum()), f, log, counts)
    vmask[cand[~keep]] = False
    counts["samples_out"] = int(smask.sum())
    counts["snps_out"] = int(vmask.sum())
    if counts["snps_out"] == 0:
        raise InputError("no SNPs pass QC; loosen --maf/--geno/--hwe")
    return QCResult(sample_mask=smask, snp_mask=vmask, cm=cm, chrom=chrom, counts=counts)


def _runs(sel: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive values in the increasing integers `sel`, as (first, last + 1)."""
    brk = np.flatnonzero(np.diff(sel) != 1) + 1
    starts, ends = np.r_[0, brk], np.r_[brk, len(sel)]
    return list(zip(sel[starts].tolist(), (sel[ends - 1] + 1).tolist()))


def write_outputs(bf: GenotypeSource, res: QCResult, out: str, log, threads: int = 1, progress: bool = True) -> dict[str, float]:
    """Write <out>.bed/.bim/.fam (cM in column 3) and the sample-major store <out>.geno/.

    Straight from the packed .bed rows, read in place from the memory-mapped .bed: they are
    copied (all samples kept) or repacked (a subset) into the new .bed, and transposed into the
    store's sample-major 2-bit rows by the compiled module (numpy without it). A writer thread
    writes the store's tables, then each chunk's .bed rows and store block while the main
    thread prepares the next chunk. Returns the seconds of each part (the writer thread's
    overlap the others)."""
    import concurrent.futures as cf
    import time

    from gimtool.io.genostore import GenoStoreWriter
    from gimtool.io.plink import BedWriter, write_bim, write_fam

    sidx = np.flatnonzero(res.sample_mask)
    vidx = np.flatnonzero(res.snp_mask)
    bim = bf.bim[vidx].with_columns(pl.Series("CM", res.cm[vidx]))
    fam = bf.fam[sidx]
    snps = bim.with_columns(pl.Series("CHR", res.chrom[vidx].astype(np.int64)))
    all_samples = len(sidx) == bf.n_samples
    store = qc.SampleMajorPacker(bf.n_samples, sidx, threads=threads)
    # SNPs per chunk, a multiple of 256 (the store's pieces start on whole bytes): the packed
    # rows read (SNPs x people / 4) and the store's block (people x SNPs / 4) within ~24 MB each
    chunk = 256 * int(max(1, min(1024, (96 * 2**20) // max(len(sidx), bf.n_samples, 1) // 256)))
    secs = {"repack .bed rows": 0.0, "transpose store": 0.0, "waited for the writer": 0.0,
            "write .bed (writer thread)": 0.0, "write store (writer thread)": 0.0}

    def clock(key, t0):
        secs[key] += time.perf_counter() - t0
        return time.perf_counter()

    def write(span, runs, repacked, block, m):
        """The writer thread's part of a chunk: its .bed rows, then its block of the store."""
        t = time.perf_counter()
        if repacked is not None:
            bw.write_packed(repacked)
        for r0, r1 in runs:
            bw.write_packed(span[r0:r1])
        t = clock("write .bed (writer thread)", t)
        gw.write_packed(block, m)
        clock("write store (writer thread)", t)

    # two store blocks (and .bed blocks for a subset of people), alternating: one is written by the
    # writer thread while the other is filled
    blocks = [np.empty(len(sidx) * (chunk // 4), dtype=np.uint8) for _ in range(2)]
    bed_bufs = [None, None] if all_samples else [np.empty(chunk * ((len(sidx) + 3) // 4), dtype=np.uint8) for _ in range(2)]
    with BedWriter(out + ".bed", len(sidx)) as bw, GenoStoreWriter(out + ".geno", fam.select("FID", "IID"), snps) as gw, \
            cf.ThreadPoolExecutor(1) as writer:
        tables = writer.submit(gw.write_tables)  # the store's SNP and sample tables, while the first chunk is read
        pending = [None, None]  # the writes of the two blocks
        for k, a in enumerate(track(range(0, len(vidx), chunk), total=-(-len(vidx) // chunk), desc="prep-geno writing",
                                    unit="chunk", enabled=progress)):
            t = time.perf_counter()
            idx = vidx[a : a + chunk]
            # the span of .bed rows from the chunk's first kept SNP to its last, in place (a view
            # of the memory-mapped .bed); the kept rows are picked from it, not gathered first
            span = bf.packed(slice(int(idx[0]), int(idx[-1]) + 1))
            sel = idx - idx[0]
            if pending[k % 2] is not None:
                pending[k % 2].result()  # the writes of the buffers filled two chunks ago
            t = clock("waited for the writer", t)
            # every person kept: the .bed rows are copied as they are, run by run of kept SNPs
            repacked = None if all_samples else qc.repack_samples(span, bf.n_samples, sidx, sel, threads, bed_bufs[k % 2])
            t = clock("repack .bed rows", t)
            block = store.pack(span, sel, out=blocks[k % 2])
            clock("transpose store", t)
            runs = _runs(sel) if all_samples else []
            pending[k % 2] = writer.submit(write, span if runs else None, runs, repacked, block, len(idx))
        t = time.perf_counter()
        for p in (tables, *pending):
            if p is not None:
                p.result()
        clock("waited for the writer", t)
    write_bim(bim, out + ".bim")
    write_fam(fam, out + ".fam")
    log.output("QC'd fileset", out + ".bed/.bim/.fam")
    log.output("genotype store", out + ".geno/")
    return secs


def run(bfile: str | None, out: str, maf: float = 0.01, geno: float = 0.1, mind: float | None = None,
        hwe: float | None = None, chr: str = "1-22", keep=None, remove=None, extract=None, exclude=None,
        genetic_map=None, cm_per_mb: float = 1.0, threads: int = 1, pfile: str | None = None) -> dict:
    """`gimtool prep-geno`: reads exactly one of `bfile` and `pfile` (PLINK 2, hardcalls); writes
    <out>.bed/.bim/.fam, the genotype store <out>.geno/ and <out>.log; returns the counts (samples_in/out, snps_in/out, ...)."""
    from gimtool.runlog import RunLog

    def opt(p):
        return str(p) if p else None

    with RunLog(out, "prep-geno") as log:
        bf = open_genotypes(bfile, pfile)
        for p in (bf.bed_path, bf.bim_path, bf.fam_path):
            log.input("bfile" if pfile is None else "pfile", p)
        log.info(f"{bf.n_samples} samples and {bf.n_snps} SNPs read")
        f = QCFilters(maf=maf, geno=geno, mind=mind, hwe=hwe, chr=chr, keep=opt(keep), remove=opt(remove),
                      extract=opt(extract), exclude=opt(exclude), genetic_map=opt(genetic_map), cm_per_mb=cm_per_mb)
        with log.timed("QC"):
            res = run_qc(bf, f, log, threads=threads)
        with log.timed("write"):
            secs = write_outputs(bf, res, out, log, threads=threads)
        for k, v in secs.items():
            log.info(f"time {k}: {v:.2f} s")
        c = res.counts
        log.info(f"kept {c['samples_out']} of {c['samples_in']} samples and {c['snps_out']} of {c['snps_in']} SNPs")
        log.summary(f"prep-geno: kept {c['samples_out']}/{c['samples_in']} samples, {c['snps_out']}/{c['snps_in']} SNPs; "
                    f"wrote {out}.bed/.bim/.fam and the genotype store {out}.geno/")
    return c
