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
from gimtool.io.plink import Bfile
from gimtool.io.tables import read_snp_list, select_samples
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


def chunk_size_for(n_samples: int, budget_bytes: int = 256 * 2**20) -> int:
    """SNPs per chunk so that one int8 chunk (and its temporaries) stays within the budget."""
    return int(max(256, min(50_000, budget_bytes // (4 * max(n_samples, 1)))))


def _founders(fam: pl.DataFrame, mask: np.ndarray) -> np.ndarray:
    """Founders among the kept samples: neither parent is a kept sample of the same family."""
    ids = {(f, i) for f, i, k in zip(fam["FID"], fam["IID"], mask) if k}
    father = np.array([(f, p) in ids for f, p in zip(fam["FID"], fam["FATHER"])])
    mother = np.array([(f, p) in ids for f, p in zip(fam["FID"], fam["MOTHER"])])
    return mask & ~father & ~mother


def genetic_positions(bf: Bfile, chrom: np.ndarray, f: QCFilters, log) -> np.ndarray:
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


def run_qc(bf: Bfile, f: QCFilters, log, threads: int = 1, progress: bool = True) -> QCResult:
    """Decide which samples and SNPs pass QC. Reads the bed in SNP chunks (twice when --mind)."""
    from tqdm.auto import tqdm

    counts: dict[str, int] = {"samples_in": bf.n_samples, "snps_in": bf.n_snps}
    # -- samples: keep/remove
    smask = select_samples(bf.fam.select("FID", "IID"), f.keep, f.remove, log=log, strict=True)
    if not smask.any():
        raise InputError("no samples left after --keep/--remove")
    # -- SNPs: chromosome, extract, exclude
    chrom = np.array([(-1 if (c := chrom_to_int(x)) is None else c) for x in bf.bim["CHR"].to_list()])
    wanted = parse_chr_spec(f.chr)
    vmask = np.isin(chrom, list(wanted))
    dropped_chr = int((~vmask).sum())
    if dropped_chr:
        codes = sorted(set(np.asarray(bf.bim["CHR"].to_list())[~vmask].tolist()))
        log.info(f"--chr {f.chr}: {dropped_chr} SNPs on other chromosomes dropped (codes: {', '.join(codes[:10])})")
    counts["snps_dropped_chr"] = dropped_chr
    snp_ids = bf.bim["SNP"].to_numpy()
    for path, is_extract in ((f.extract, True), (f.exclude, False)):
        if path is None:
            continue
        lst = set(read_snp_list(path))
        hit = np.array([s in lst for s in snp_ids])
        before = int(vmask.sum())
        vmask &= hit if is_extract else ~hit
        log.info(f"--{'extract' if is_extract else 'exclude'} {path}: {len(lst)} IDs, {before - int(vmask.sum())} SNPs dropped")
    if not vmask.any():
        raise InputError("no SNPs left after --chr/--extract/--exclude")
    cm = genetic_positions(bf, chrom, f, log)

    chunk = chunk_size_for(int(smask.sum()))
    cand = np.flatnonzero(vmask)

    def chunks(samples_idx):
        for a in range(0, len(cand), chunk):
            idx = cand[a : a + chunk]
            # contiguous runs read fastest; bed-reader takes index arrays as well
            yield idx, bf.read(snps=idx, samples=samples_idx, dtype="int8", num_threads=threads)

    # -- --mind: sample call rate over the candidate SNPs
    if f.mind is not None:
        sidx = np.flatnonzero(smask)
        miss = np.zeros(len(sidx), dtype=np.int64)
        for _, G in tqdm(chunks(sidx), total=-(-len(cand) // chunk), desc="sample missingness", disable=not progress, leave=False):
            miss += qc.sample_missing_counts(G)
        rate = miss / len(cand)
        bad = rate > f.mind
        if bad.any():
            shown = ", ".join(f"{bf.fam['FID'][i]} {bf.fam['IID'][i]}" for i in sidx[bad][:5].tolist())
            log.info(f"--mind {f.mind}: {int(bad.sum())} samples removed (e.g. {shown})")
        smask[sidx[bad]] = False
        counts["samples_dropped_mind"] = int(bad.sum())
        if not smask.any():
            raise InputError(f"--mind {f.mind}: every sample was removed")
    # -- SNP statistics on the remaining samples, counted from the packed .bed rows (no decoding)
    sidx = np.flatnonzero(smask)
    founders = _founders(bf.fam, smask)
    all_founders = bool((founders == smask).all())
    stats_all = np.zeros((len(cand), 4), dtype=np.int64)
    stats_f = stats_all if all_founders else np.zeros((len(cand), 4), dtype=np.int64)
    pchunk = 4 * chunk  # packed rows are a quarter of the decoded size
    for a in tqdm(range(0, len(cand), pchunk), desc="SNP QC", disable=not progress, leave=False):
        rows = bf.packed(cand[a : a + pchunk])
        stats_all[a : a + len(rows)] = qc.packed_genotype_counts(rows, bf.n_samples, smask)
        if not all_founders:
            stats_f[a : a + len(rows)] = qc.packed_genotype_counts(rows, bf.n_samples, founders)
    keep = np.ones(len(cand), dtype=bool)
    if f.geno is not None:
        rate = stats_all[:, 3] / len(sidx)
        bad = rate > f.geno
        counts["snps_dropped_geno"] = int((bad & keep).sum())
        log.info(f"--geno {f.geno}: {counts['snps_dropped_geno']} SNPs removed")
        keep &= ~bad
    if f.hwe is not None:
        p = qc.hwe_exact_p(stats_f)
        bad = ~(p >= f.hwe)
        counts["snps_dropped_hwe"] = int((bad & keep).sum())
        log.info(f"--hwe {f.hwe}: {counts['snps_dropped_hwe']} SNPs removed")
        keep &= ~bad
    if f.maf is not None:
        af = qc.allele_freq(stats_f)
        maf = np.minimum(af, 1 - af)
        bad = ~(maf >= f.maf)
        counts["snps_dropped_maf"] = int((bad & keep).sum())
        log.info(f"--maf {f.maf}: {counts['snps_dropped_maf']} SNPs removed")
        keep &= ~bad
    vmask[cand[~keep]] = False
    counts["samples_out"] = int(smask.sum())
    counts["snps_out"] = int(vmask.sum())
    if counts["snps_out"] == 0:
        raise InputError("no SNPs pass QC; loosen --maf/--geno/--hwe")
    return QCResult(sample_mask=smask, snp_mask=vmask, cm=cm, chrom=chrom, counts=counts)


def write_outputs(bf: Bfile, res: QCResult, out: str, log, threads: int = 1, progress: bool = True) -> None:
    """Write <out>.bed/.bim/.fam (cM in column 3) and the sample-major store <out>.geno/."""
    from tqdm.auto import tqdm

    from gimtool.io.genostore import GenoStoreWriter
    from gimtool.io.plink import BedWriter, write_bim, write_fam

    sidx = np.flatnonzero(res.sample_mask)
    vidx = np.flatnonzero(res.snp_mask)
    bim = bf.bim[vidx].with_columns(pl.Series("CM", res.cm[vidx]))
    fam = bf.fam[sidx]
    snps = bim.with_columns(pl.Series("CHR", res.chrom[vidx].astype(np.int64)))
    chunk = chunk_size_for(len(sidx))
    all_samples = len(sidx) == bf.n_samples
    with BedWriter(out + ".bed", len(sidx)) as bw, GenoStoreWriter(out + ".geno", fam.select("FID", "IID"), snps) as gw:
        for a in tqdm(range(0, len(vidx), chunk), desc="writing", disable=not progress, leave=False):
            idx = vidx[a : a + chunk]
            G = bf.read(snps=idx, samples=None if all_samples else sidx, dtype="int8", num_threads=threads)
            if all_samples:  # the .bed rows can be copied as they are
                bw.write_packed(bf.packed(idx))
            else:
                bw.write(G)
            gw.write(G)
    write_bim(bim, out + ".bim")
    write_fam(fam, out + ".fam")
    log.output("QC'd fileset", out + ".bed/.bim/.fam")
    log.output("genotype store", out + ".geno/")


def run(bfile: str, out: str, maf: float = 0.01, geno: float = 0.1, mind: float | None = None,
        hwe: float | None = None, chr: str = "1-22", keep=None, remove=None, extract=None, exclude=None,
        genetic_map=None, cm_per_mb: float = 1.0, threads: int = 1) -> dict:
    """`gimtool prep-geno`: writes <out>.bed/.bim/.fam, the genotype store <out>.geno/ and
    <out>.log; returns the counts (samples_in/out, snps_in/out, ...)."""
    from gimtool.runlog import RunLog

    def opt(p):
        return str(p) if p else None

    with RunLog(out, "prep-geno") as log:
        bf = Bfile(bfile)
        for p in (bf.bed_path, bf.bim_path, bf.fam_path):
            log.input("bfile", p)
        log.info(f"{bf.n_samples} samples and {bf.n_snps} SNPs read")
        f = QCFilters(maf=maf, geno=geno, mind=mind, hwe=hwe, chr=chr, keep=opt(keep), remove=opt(remove),
                      extract=opt(extract), exclude=opt(exclude), genetic_map=opt(genetic_map), cm_per_mb=cm_per_mb)
        with log.timed("QC"):
            res = run_qc(bf, f, log, threads=threads)
        with log.timed("write"):
            write_outputs(bf, res, out, log, threads=threads)
        c = res.counts
        log.info(f"kept {c['samples_out']} of {c['samples_in']} samples and {c['snps_out']} of {c['snps_in']} SNPs")
    return c
