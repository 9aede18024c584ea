"""Phenotype for the LDSC reference case: h2 = 0.8 over 2,000 causal SNPs of EUR_subset chr 21-22.

Usage: python sim_pheno.py BFILE_PREFIX OUT_PHENO   (numpy only; seed fixed)
"""
import sys

import numpy as np
from bed_reader import open_bed

prefix, out = sys.argv[1], sys.argv[2]
bed = open_bed(prefix + ".bed")
G = bed.read(dtype="float64")
fam = [ln.split()[:2] for ln in open(prefix + ".fam")]
rng = np.random.default_rng(2024)
causal = rng.choice(G.shape[1], 2000, replace=False)
X = G[:, causal]
X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
g = X @ rng.normal(size=X.shape[1])
g *= np.sqrt(0.8) / g.std()
y = g + rng.normal(scale=np.sqrt(0.2), size=len(g))
with open(out, "w") as fh:
    fh.write("FID\tIID\tPHENO\n")
    for (f, i), v in zip(fam, y):
        fh.write(f"{f}\t{i}\t{v:.6f}\n")
