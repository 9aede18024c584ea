"""gwas with missing genotype calls shaped like a real array's, against plink2 --glm.

EUR_subset itself has no missing call, so calls are removed the way genotyping arrays lose them:
each SNP's rate from a skewed distribution (most SNPs lose few calls, a few lose many), each
person's from another (a few people are called badly), plus the cases that break a sparse
correction: a SNP missing for everyone, one missing for all but a handful, one whose calls are
missing only in people that a phenotype lacks, one that the missing calls leave monomorphic, and
many missing calls in one person whose phenotypes are partly NA. Phenotypes are NA and -9.
"""

from __future__ import annotations

import numpy as np
import pytest

from gimtool.io.plink import MISSING_INT8, Bfile, write_bfile
from gimtool.stats import assoc
from tests.conftest import gimtool, require_program, run
from tests.pipelines.test_gwas import _assert_same_as_plink

N_PHENO = 6
M = 4000


@pytest.fixture(scope="module")
def cohort(eur_bfile, tmp_path_factory):
    d = tmp_path_factory.mktemp("gwas_missing")
    bf = Bfile(eur_bfile)
    n = bf.n_samples
    rng = np.random.default_rng(11)
    g = bf.read(snps=slice(0, M)).copy()
    snp_rate = 0.01 * rng.gamma(0.5, 2.0, M)
    person = rng.gamma(2.0, 0.5, n)
    person[[3, 50, 200]] = 8.0  # badly called people
    g[rng.random(g.shape) < np.minimum(person[:, None] * snp_rate[None], 0.6)] = MISSING_INT8
    y = rng.standard_normal((n, N_PHENO))
    common = int(np.flatnonzero(np.abs(np.nanmean(np.where(g < 0, np.nan, g), 0) / 2 - 0.5) < 0.3)[10])
    gc = np.where(g[:, common] < 0, 1, g[:, common])
    y[:, 0] += 0.7 * (gc - gc.mean()) / gc.std()
    y[rng.random(y.shape) < 0.06] = np.nan
    y[3, :3] = np.nan  # a badly called person lacking some phenotypes
    # edge SNPs
    poly = np.flatnonzero((g >= 0).all(0) & (np.ptp(np.where(g < 0, 0, g), axis=0) > 0))
    e_all, e_few, e_excl, e_mono = poly[5:9]
    g[:, e_all] = MISSING_INT8
    g[6:, e_few] = MISSING_INT8  # 6 people keep a call: too few for 3 covariates + intercept on some phenotypes
    g[np.isnan(y[:, 1]), e_excl] = MISSING_INT8  # missing only where phenotype 1 is NA
    alt = g[:, e_mono] != np.bincount(g[:, e_mono]).argmax()
    g[alt, e_mono] = MISSING_INT8  # what remains is one genotype
    write_bfile(d / "c", g, bf.fam, bf.bim[:M])
    # phenotypes: missing written as NA and as PLINK's -9
    with open(d / "pheno.tsv", "w") as fh:
        fh.write("FID\tIID\t" + "\t".join(f"PH{j}" for j in range(N_PHENO)) + "\n")
        for i, (f, iid) in enumerate(zip(bf.fam["FID"], bf.fam["IID"])):
            vals = ["-9" if (np.isnan(v) and (i + j) % 2) else "NA" if np.isnan(v) else f"{v:.6f}" for j, v in enumerate(y[i])]
            fh.write(f"{f}\t{iid}\t" + "\t".join(vals) + "\n")
    c = np.column_stack([rng.standard_normal(n), 40 + 10 * rng.standard_normal(n), rng.integers(0, 2, n)])
    c[[9, 120], 0] = np.nan
    with open(d / "covar.tsv", "w") as fh:
        fh.write("FID\tIID\tAGE\tHEIGHT\tSEX\n")
        for i, (f, iid, row) in enumerate(zip(bf.fam["FID"], bf.fam["IID"], c)):
            miss = "-9.000000" if i == 120 else "NA"  # -9 in another spelling: missing for plink2 too
            fh.write(f"{f}\t{iid}\t" + "\t".join(miss if np.isnan(v) else f"{v:.6f}" for v in row) + "\n")
    frac = (g == MISSING_INT8).mean()
    assert 0.005 < frac < 0.05, frac
    return {"dir": d, "bfile": str(d / "c"), "pheno": d / "pheno.tsv", "covar": d / "covar.tsv", "y": y, "c": c,
            "edge": (e_all, e_few, e_excl, e_mono)}


@pytest.mark.slow
def test_real_shaped_missing_calls_equal_plink2(cohort):
    d = cohort["dir"]
    gimtool("gwas", "--bfile", cohort["bfile"], "--pheno", cohort["pheno"], "--covar", cohort["covar"],
            "--out", d / "g", "--threads", "2", "--no-plots")
    run([require_program("plink2"), "--bfile", cohort["bfile"], "--pheno", str(cohort["pheno"]), "--covar",
         str(cohort["covar"]), "--glm", "hide-covar", "--covar-variance-standardize", "--no-psam-pheno", "--threads", "1",
         "--out", str(d / "pl")])
    names = [f"PH{j}" for j in range(N_PHENO)]
    _assert_same_as_plink(d / "g", d / "pl", names)
    from gimtool.io.sumstats import read_sumstats

    a = read_sumstats(d / "g.PH1.sumstats.gz")
    e_all, e_few, e_excl, e_mono = cohort["edge"]
    assert a["P"][int(e_all)] is None and a["P"][int(e_mono)] is None
    # missing only where PH1 is NA: PH1 keeps all of its samples on that SNP
    assert a["N"][int(e_excl)] == a["N"].max()
    assert a["N"].n_unique() > 20


def test_compiled_and_numpy_missing_corrections_agree(cohort):
    """The sparse compiled correction and the numpy one give the same sums on every SNP, and
    the dense reference (decoded genotypes) agrees with both."""
    bf = Bfile(cohort["bfile"])
    prep = assoc.prepare(cohort["y"], cohort["c"])
    raw = bf.packed(slice(0, M))
    ref = assoc.scan_chunk(prep, bf.read(snps=slice(0, M))[prep.samples])
    scans = [assoc.PackedScan(prep, bf.n_samples, kernel="numpy")]
    compiled = assoc.PackedScan(prep, bf.n_samples)
    if compiled.compiled:
        scans.append(compiled)
    for sc in scans:
        r = sc(raw)
        np.testing.assert_array_equal(r.n, ref.n)
        assert (np.isnan(r.beta) == np.isnan(ref.beta)).all()
        for f in ("beta", "se", "freq", "freq0"):
            np.testing.assert_allclose(getattr(r, f), getattr(ref, f), rtol=1e-9, err_msg=f"{sc.compiled} {f}")
    # the missing calls really change the sample counts, per SNP and per phenotype
    assert len(np.unique(ref.n[:, 0])) > 20
    assert (ref.n != ref.n.max(axis=0)).any(axis=1).mean() > 0.5


def test_singular_after_missing_is_nan_not_error():
    """A SNP whose called samples leave the covariates collinear (here: every called person has
    the same value of a binary covariate) gets NaN from both corrections, not an exception."""
    from gimtool.io.plink import encode_bed_chunk

    rng = np.random.default_rng(3)
    n, p = 40, 2
    y = rng.standard_normal((n, p))
    c = np.column_stack([rng.standard_normal(n), np.r_[np.zeros(20), np.ones(20)]])
    g = rng.integers(0, 3, (n, 3)).astype(np.int8)
    g[20:, 1] = MISSING_INT8  # SNP 1: only people with the covariate at 0 are called
    g[:2, 2] = MISSING_INT8
    prep = assoc.prepare(y, c)
    raw = np.frombuffer(encode_bed_chunk(g), dtype=np.uint8).reshape(3, -1)
    for kernel in ("numpy", "auto"):
        r = assoc.PackedScan(prep, n, kernel=kernel)(raw)
        assert np.isnan(r.beta[1]).all()
        assert np.isfinite(r.beta[[0, 2]]).all()
        assert (r.n[2] == n - 2).all() and (r.n[1] == 20).all()
