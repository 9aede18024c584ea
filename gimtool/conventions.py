"""What every layer shares, defined once: table schemas, missing-value codes, chromosome codes.

Kernels (stats/, imaging/, model/) and file formats (io/) both import this module; it imports
nothing of gimtool's, so no kernel has to reach into io/ for a convention.

Tables are tab-separated with a header; missing values are written `NA`.
"""

from __future__ import annotations

# -- missing values ------------------------------------------------------------------------------

# Genotypes are int8 counts of A1 (0, 1, 2), samples x SNPs; a missing call is -127 (bed-reader's
# int8 missing value), kept unchanged everywhere in gimtool.
MISSING_INT8 = -127

# -- chromosome codes ----------------------------------------------------------------------------

# PLINK's numeric codes for the non-autosomal chromosomes
CHROM_CODES = {"X": 23, "Y": 24, "XY": 25, "MT": 26, "M": 26}


def chrom_to_int(code: str) -> int | None:
    """'7' -> 7, 'chr7' -> 7, 'X' -> 23 (PLINK's numbering); None for an unknown code."""
    c = code[3:] if code.lower().startswith("chr") else code
    if c.isdigit():
        return int(c)
    return CHROM_CODES.get(c.upper())


def chrom_sort_key(chrom) -> "np.ndarray":
    """Sort key (str array) putting 1..22 numerically first, then X, Y, XY, MT, then other names."""
    import numpy as np

    out = []
    for c in np.asarray(chrom, dtype=str):
        i = chrom_to_int(c)
        out.append(f"{i:04d}" if i is not None else f"9999{c[3:] if c.lower().startswith('chr') else c}")
    return np.array(out)


# -- table schemas -------------------------------------------------------------------------------

# Sample identifiers: every per-person table starts with these two columns.
ID_COLS = ("FID", "IID")
MISSING = "NA"
# Tokens read as missing in phenotype/covariate files (PLINK 2 accepts the same).
MISSING_TOKENS = ("NA", "nan", "NaN", "-9", "")

# PLINK .fam and .bim (no header in the files themselves).
FAM_COLS = ("FID", "IID", "FATHER", "MOTHER", "SEX", "PHENO")
BIM_COLS = ("CHR", "SNP", "CM", "BP", "A1", "A2")

# Genotype store SNP and sample tables (prep-geno output, <out>.geno/snps.tsv, samples.tsv).
SNP_COLS = ("CHR", "SNP", "CM", "BP", "A1", "A2")
SAMPLE_COLS = ID_COLS

# Summary statistics (gwas output): BOLT-LMM column names; BETA is per copy of ALLELE1.
SUMSTATS_COLS = ("SNP", "CHR", "BP", "GENPOS", "ALLELE1", "ALLELE0", "A1FREQ", "N", "BETA", "SE", "CHISQ", "P")

# GWAS summary over phenotypes (gwas output <out>.summary.tsv).
GWAS_SUMMARY_COLS = ("PHENO", "N", "NSNP", "LAMBDA_GC", "MIN_P", "N_P5E8", "N_P_BONF")

# Clumps in PLINK 1.9's .clumped layout, tab-separated.
CLUMP_COLS = ("CHR", "F", "SNP", "BP", "P", "TOTAL", "NSIG", "S05", "S01", "S001", "S0001", "SP2")

# Clump members, one row per listed (SP2) entry (clump <out>.clumped.members.tsv, like
# plink --clump-verbose): index SNP, member SNP, its file, distance in kb, |r²| with the index, P.
CLUMP_MEMBER_COLS = ("INDEX", "SNP", "F", "KB", "R2", "P")

# Loci (clump --loci output); with --compare a UNIQUE column (1 = no other set has a locus within
# the merge window) follows.
LOCI_COLS = ("LOCUS", "CHR", "START", "END", "LEAD_SNP", "LEAD_BP", "LEAD_P", "NSNP", "PHENOS")
LOCI_UNIQUE_COL = "UNIQUE"

# Heritability (h2 output), one row per phenotype.
H2_LDSC_COLS = ("PHENO", "H2", "H2_SE", "INTERCEPT", "INTERCEPT_SE", "MEAN_CHISQ", "LAMBDA_GC", "RATIO", "RATIO_SE", "N", "NSNP")
H2_GREML_COLS = ("PHENO", "H2", "H2_SE", "LOGLIK", "N")
# Mean and sd over phenotypes (h2 <out>.h2.summary.tsv); INTERCEPT_* are NA for GREML.
H2_SUMMARY_COLS = ("METHOD", "N_PHENO", "H2_MEAN", "H2_SD", "INTERCEPT_MEAN", "INTERCEPT_SD")

# LD scores in LDSC's format (<prefix>.l2.ldscore.gz, with .l2.M and .l2.M_5_50).
LDSCORE_COLS = ("CHR", "SNP", "BP", "L2")

# Mutual information (mi output <out>.mi.tsv), one row per embedding file (model). MI_* are JSE
# estimates in nats (2 ln 2 - converged loss, at most 2 ln 2), mean over REPEATS seeds with their
# standard error; VAL = pairs the critic never saw, TRAIN = the pairs it was trained on.
MI_COLS = ("NAME", "FILE", "N_DIMS", "N_TRAIN", "N_VAL", "N_SNPS", "REPEATS", "MI_VAL", "MI_VAL_SE", "MI_TRAIN",
           "MI_TRAIN_SE", "BEST_EPOCH")
# mi curves (<out>.curves.tsv), one row per (model, repeat, epoch); losses are whole-part JSE losses,
# BATCH_LOSS the mean minibatch loss during the epoch.
MI_CURVE_COLS = ("NAME", "REPEAT", "EPOCH", "BATCH_LOSS", "TRAIN_LOSS", "VAL_LOSS", "MI_TRAIN", "MI_VAL")

# Genetic map (BOLT-LMM / HapMap format), header row present.
GENMAP_COLS = ("chr", "position", "COMBINED_rate(cM/Mb)", "Genetic_Map(cM)")

# Image store manifest (prep-mri output); QC columns follow.
IMAGE_MANIFEST_COLS = ("FID", "IID", "SOURCE")
# prep-mri input list (header optional), plus an optional MAT column (per-subject FSL FLIRT matrix).
IMAGE_LIST_COLS = ("FID", "IID", "PATH")
IMAGE_LIST_MAT_COL = "MAT"
# Per-subject QC computed while conforming (raw intensities inside the brain mask, on the target
# grid; FOV_COVERAGE = share of the target grid inside the scan's field of view).
IMAGE_QC_COLS = ("RAW_MEAN", "RAW_SD", "RAW_P01", "RAW_P99", "BRAIN_VOXELS", "FOV_COVERAGE", "NONFINITE_VOXELS")
# Cohort QC added when the store is finished: correlation with the mean image, outlier flag (0/1).
IMAGE_COHORT_QC_COLS = ("CORR_MEAN", "QC_OUTLIER")
# STORE/failed.tsv: images that could not be conformed, with the reason.
IMAGE_FAILED_COLS = ("FID", "IID", "SOURCE", "REASON")

# Embeddings (embed output PREFIX.tsv): FID IID z1..zK, the GWAS dimensions of the encoder.
EMBEDDING_PREFIX = "z"
# Training history (train output DIR/history.tsv), one row per epoch; method metrics follow as
# TRAIN_<NAME> and VAL_<NAME>. MI columns are the JSE estimate (nats), MI_GAP = TRAIN_MI - VAL_MI.
TRAIN_HISTORY_COLS = ("EPOCH", "STAGE", "STAGE_EPOCH", "LR", "TRAIN_LOSS", "VAL_LOSS", "TRAIN_MI", "VAL_MI", "MI_GAP",
                      "SAMPLES_PER_S", "SECONDS")

# Simulated cohorts (simulate output DIR/): covariates and truth (images.tsv uses IMAGE_LIST_COLS).
SIM_COVAR_COLS = ("FID", "IID", "age", "sex", "ancestry")  # sex 1 = male, 2 = female; ancestry = deme index
SIM_CAUSAL_COLS = ("SNP", "CHR", "BP", "FACTOR", "BETA", "A1", "A1FREQ", "KIND")  # BETA per copy of A1; KIND strong|polygenic
SIM_LOCI_COLS = ("LOCUS", "FACTOR", "CHR", "START", "END", "SNP", "BP")  # one row per strong causal SNP, START-END = BP ± 250 kb

# PCA (pcs output): explained variance per component (<out>.explained.tsv); embedding loadings
# (<out>.loadings.tsv: FEATURE MEAN PC1..PCk, one row per input column, read back by --apply);
# scores are `FID IID PC1..PCk` (<out>.pcs.tsv, or PLINK 2's `#FID IID PC1..` in <out>.eigenvec).
PCA_EXPLAINED_COLS = ("PC", "EIGENVALUE", "EXPLAINED", "CUMULATIVE")
PCA_LOADINGS_COLS = ("FEATURE", "MEAN")
