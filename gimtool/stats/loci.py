"""The paper's locus count (appendix A): significant SNPs merged into loci, union over phenotypes.

A SNP is significant for a phenotype when P < threshold (default 5e-9, i.e. 5e-8 corrected for
10 PCs) and its MAF ≥ 1%. The significant SNPs of all phenotypes are pooled and, per chromosome
in position order, a new locus starts wherever the gap to the previous significant SNP exceeds
`kb` (so two SNPs closer than `kb` kb always share a locus; single linkage). A locus of one set is
*unique* with respect to other sets when no locus of theirs lies within `kb` of it, i.e. when it
would stay apart had their SNPs been pooled with these.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from gimtool.conventions import LOCI_COLS, chrom_sort_key


def significant_mask(p: np.ndarray, maf: np.ndarray, p_threshold: float, maf_min: float) -> np.ndarray:
    """(n,) True where P < p_threshold and MAF ≥ maf_min (NaN P or MAF: not significant)."""
    p = np.asarray(p, dtype=np.float64)
    maf = np.asarray(maf, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (p < p_threshold) & (np.minimum(maf, 1 - maf) >= maf_min)


def merge_loci(chrom: np.ndarray, bp: np.ndarray, snp: np.ndarray, p: np.ndarray, pheno: np.ndarray,
               pheno_names: list[str], kb: float = 250.0) -> pl.DataFrame:
    """Merge significant SNPs (already filtered; one row per SNP and phenotype, shape (n,) each;
    `pheno` indexes `pheno_names`) into loci. Returns a frame with LOCI_COLS, one row per locus,
    ordered by chromosome and position; PHENOS lists the phenotypes with a significant SNP in the
    locus, in the order of `pheno_names`."""
    chrom = np.asarray(chrom, dtype=str)
    bp = np.asarray(bp, dtype=np.int64)
    snp = np.asarray(snp, dtype=str)
    p = np.asarray(p, dtype=np.float64)
    pheno = np.asarray(pheno, dtype=np.int64)
    n = chrom.shape[0]
    if not (bp.shape == snp.shape == p.shape == pheno.shape == (n,)):
        raise ValueError("chrom, bp, snp, p and pheno must have the same shape (n,)")
    if n == 0:
        return pl.DataFrame(schema={c: t for c, t in _LOCI_DTYPES.items()})
    key = chrom_sort_key(chrom)
    order = np.lexsort((pheno, p, bp, key))  # by chromosome, position; ties: smaller P first
    chrom, bp, snp, p, pheno, key = chrom[order], bp[order], snp[order], p[order], pheno[order], key[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (key[1:] != key[:-1]) | (bp[1:] - bp[:-1] > kb * 1000)
    rows = []
    for L, (a, b) in enumerate(zip(np.flatnonzero(new), np.concatenate([np.flatnonzero(new)[1:], [n]]))):
        lead = a + int(np.argmin(p[a:b]))  # first smallest P in position order
        hit = sorted(set(pheno[a:b].tolist()))
        rows.append((L + 1, chrom[a], int(bp[a:b].min()), int(bp[a:b].max()), snp[lead], int(bp[lead]),
                     float(p[lead]), len(set(snp[a:b].tolist())), ",".join(pheno_names[h] for h in hit)))
    return pl.DataFrame(rows, schema=_LOCI_DTYPES, orient="row")


_LOCI_DTYPES = dict(zip(LOCI_COLS, (pl.Int64, pl.Utf8, pl.Int64, pl.Int64, pl.Utf8, pl.Int64, pl.Float64, pl.Int64, pl.Utf8)))


def unique_loci(loci: pl.DataFrame, others: list[pl.DataFrame], kb: float = 250.0) -> np.ndarray:
    """(L,) True for each locus of `loci` that no locus of any frame in `others` (CHR, START, END)
    comes within `kb` of."""
    w = kb * 1000
    uniq = np.ones(loci.height, dtype=bool)
    if loci.height == 0:
        return uniq
    ch = np.asarray(loci["CHR"].cast(pl.Utf8).to_list(), dtype=str)
    st = loci["START"].to_numpy().astype(np.float64)
    en = loci["END"].to_numpy().astype(np.float64)
    k = chrom_sort_key(ch)
    for o in others:
        if o.height == 0:
            continue
        ok = chrom_sort_key(np.asarray(o["CHR"].cast(pl.Utf8).to_list(), dtype=str))
        ost = o["START"].to_numpy().astype(np.float64)
        oen = o["END"].to_numpy().astype(np.float64)
        for i in range(loci.height):
            same = ok == k[i]
            near = same & (ost - en[i] <= w) & (st[i] - oen <= w)
            if near.any():
                uniq[i] = False
    return uniq


def loci_from_sumstats(frames: list[pl.DataFrame], names: list[str], bim: pl.DataFrame | None = None,
                       ref_a1_freq=None, p: float = 5e-9, kb: float = 250.0,
                       maf_min: float = 0.01) -> tuple[pl.DataFrame, dict]:
    """Loci of sumstats frames (SUMSTATS_COLS; one per phenotype, named by `names`).

    A SNP's MAF comes from its A1FREQ; where that is missing, from the reference: `bim` rows
    matched by SNP ID and `ref_a1_freq(rows)` giving their A1 frequencies. Significant SNPs with
    neither are dropped and counted in the returned stats (n_sig, maf_from_ref, no_maf)."""
    chrom, bp, snp, pv, ph = [], [], [], [], []
    st = {"n_sig": 0, "maf_from_ref": 0, "no_maf": 0}
    for k, df in enumerate(frames):
        d = df.filter(pl.col("P").is_not_null() & (pl.col("P") < p)).select("SNP", "CHR", "BP", "P", "A1FREQ")
        if d.height == 0:
            continue
        freq = d["A1FREQ"].to_numpy().astype(np.float64)
        need = np.isnan(freq)
        if need.any():
            if bim is not None and ref_a1_freq is not None:
                ref = pl.DataFrame({"SNP": bim["SNP"], "ROW": np.arange(bim.height)}).unique("SNP", keep="first")
                rows = d.filter(pl.Series(need)).select("SNP").join(ref, on="SNP", how="left", maintain_order="left")["ROW"]
                rows = rows.to_numpy().astype(np.float64)
                have = ~np.isnan(rows)
                f = np.full(rows.shape[0], np.nan)
                if have.any():
                    f[have] = ref_a1_freq(rows[have].astype(np.int64))
                freq[need] = f
                st["maf_from_ref"] += int(have.sum())
            st["no_maf"] += int(np.isnan(freq).sum())
        keep = significant_mask(d["P"].to_numpy(), freq, p, maf_min)
        d = d.filter(pl.Series(keep))
        st["n_sig"] += d.height
        chrom.append(np.asarray(d["CHR"].cast(pl.Utf8).to_list(), dtype=str))
        bp.append(d["BP"].to_numpy())
        snp.append(np.asarray(d["SNP"].to_list(), dtype=str))
        pv.append(d["P"].to_numpy())
        ph.append(np.full(d.height, k))
    if not chrom:
        return merge_loci(np.array([], dtype=str), np.array([], dtype=np.int64), np.array([], dtype=str),
                          np.array([]), np.array([], dtype=np.int64), names, kb), st
    return merge_loci(np.concatenate(chrom), np.concatenate(bp), np.concatenate(snp), np.concatenate(pv),
                      np.concatenate(ph), names, kb), st
