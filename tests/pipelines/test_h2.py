"""`gimtool h2 --method ldsc`: LD scores, LD score regression, and the LDSC v1 reference numbers.

Reference numbers under tests/data/ldsc_ref/ were made by LDSC 2.0.1 itself, outside the project;
make_reference.sh and make_hsq_case.py there are the recipes.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gimtool.io.ldscore import read_ldscore, write_ldscore
from gimtool.stats.ldsc import ldsc_h2
from gimtool.stats.ldscore import ld_scores, ldsc_windows, window_bounds
from tests.conftest import gimtool

REF = Path(__file__).resolve().parents[1] / "data" / "ldsc_ref"


def cli(capsys, *args):
    """Run the CLI in this process (faster than a subprocess for the error cases): (exit code, stderr)."""
    from gimtool.cli import main

    capsys.readouterr()
    code = main(["h2", *map(str, args)])
    return code, capsys.readouterr().err


# --- LD scores against a brute-force numpy reference ---------------------------------------------


def brute_ld_scores(G, chrom, pos, max_dist, chunk):
    """All pairwise r of one chromosome at a time, then LDSC's pair rule written out pair by pair."""
    n = G.shape[0]
    X = G.astype(float)
    X[G == -127] = np.nan
    mu = np.nanmean(X, axis=0)
    X = np.where(np.isnan(X), mu, X) - mu
    sd = X.std(axis=0)
    out = np.full(G.shape[1], np.nan)
    for c in np.unique(chrom):
        idx = np.flatnonzero((chrom == c) & (sd > 0))
        Z = X[:, idx] / sd[idx]
        R = Z.T @ Z / n
        U = R**2 - (1 - R**2) / (n - 2)
        p = pos[idx]
        m = len(idx)
        left = np.array([np.flatnonzero(np.abs(p - p[i]) <= max_dist)[0] for i in range(m)])
        # LDSC: SNPs before b0 pair with everything before them; later SNP k pairs with i from the
        # window start of its chunk's first SNP, rounded out to whole chunks
        first = np.flatnonzero(left > 0)
        b0 = int(np.ceil((first[0] if len(first) else m) / chunk) * chunk)
        inc = np.zeros((m, m), dtype=bool)
        for k in range(m):
            for i in range(k + 1):
                if k < b0:
                    ok = True
                else:
                    s = (k // chunk) * chunk
                    ok = i >= s - int(np.ceil((s - left[s]) / chunk)) * chunk
                inc[i, k] = inc[k, i] = ok
        out[idx] = (U * inc).sum(axis=1)
    return out


@pytest.fixture(scope="module")
def small_geno():
    rng = np.random.default_rng(3)
    n, m = 60, 230
    # LD from a shared latent walk along the chromosome
    latent = np.cumsum(rng.normal(size=(n, m)), axis=1) * 0.3
    G = (rng.random((n, m)) < 1 / (1 + np.exp(-latent))).astype(np.int8) + (rng.random((n, m)) < 0.3)
    G = G.astype(np.int8)
    G[rng.random((n, m)) < 0.02] = -127
    G[:, 17] = 1  # monomorphic: dropped as LDSC does
    chrom = np.array(["1"] * 150 + ["2"] * 80)
    pos = np.concatenate([np.sort(rng.uniform(0, 3, 150)), np.sort(rng.uniform(0, 2, 80))])
    return G, chrom, pos


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_ld_scores_equal_numpy_reference(small_geno, chunk):
    G, chrom, pos = small_geno
    res = ld_scores(lambda idx: G[:, idx], chrom, pos, G.shape[0], 0.4, chunk=chunk, block_size=16)
    ref = brute_ld_scores(G, chrom, pos, 0.4, chunk)
    assert 17 not in res.index and res.n_monomorphic == 1
    assert res.M == G.shape[1] - 1
    np.testing.assert_allclose(res.l2, ref[res.index], atol=2e-5)


def test_exact_windows():
    pos = np.array([0.0, 0.5, 1.0, 1.01, 3.0])
    left, right = window_bounds(pos, 1.0)
    assert left.tolist() == [0, 0, 0, 1, 4] and right.tolist() == [3, 4, 4, 4, 5]
    assert [a.tolist() for a in ldsc_windows(pos, 1.0, chunk=1)] == [left.tolist(), right.tolist()]


def morgan_subset(eur_bfile, tmp_path_factory, chroms=("21", "22")):
    """EUR_subset chromosomes 21-22, bim column 3 left in Morgans (gimtool converts)."""
    from gimtool.io.plink import Bfile, write_bfile

    bf = Bfile(eur_bfile)
    sel = np.flatnonzero(np.isin(bf.bim["CHR"].to_numpy(), chroms))
    prefix = str(tmp_path_factory.mktemp("eur2122") / "eur2122")
    write_bfile(prefix, bf.read(snps=sel), bf.fam, bf.bim[sel])
    return prefix


@pytest.fixture(scope="module")
def eur2122(eur_bfile, tmp_path_factory):
    return morgan_subset(eur_bfile, tmp_path_factory)


@pytest.fixture(scope="module")
def h2_run(eur2122, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("h2") / "ref")
    gimtool("h2", "--bfile", eur2122, "--sumstats", REF / "gwas.PHENO.glm.linear.gz", "--out", out)
    return out


def test_ld_scores_match_ldsc_output(h2_run):
    mine = read_ldscore(h2_run)
    ldsc = pl.read_csv(REF / "ldsc_chr22.l2.ldscore.gz", separator="\t")
    m22 = mine.table.filter(pl.col("CHR") == "22")
    assert m22["SNP"].to_list() == ldsc["SNP"].to_list()
    # both printed with 3 decimals; float32 products may round the last digit the other way
    assert np.abs(m22["L2"].to_numpy() - ldsc["L2"].to_numpy()).max() <= 0.0011
    ref = json.loads((REF / "ldsc_h2.json").read_text())
    assert mine.M_5_50 == ref["M_5_50"]


def test_h2_matches_ldsc_v1(h2_run, eur2122, tmp_path):
    ref = json.loads((REF / "ldsc_h2.json").read_text())["results"]
    got = pl.read_csv(h2_run + ".h2.tsv", separator="\t", null_values="NA").row(0, named=True)
    r = ref["free"]
    assert abs(got["H2"] - r["h2"]) < 0.01  # the bar; in fact equal to LDSC's printed digits:
    for k, col in (("h2", "H2"), ("h2_se", "H2_SE"), ("intercept", "INTERCEPT"), ("intercept_se", "INTERCEPT_SE"),
                   ("mean_chisq", "MEAN_CHISQ"), ("lambda_gc", "LAMBDA_GC"), ("ratio", "RATIO"), ("ratio_se", "RATIO_SE")):
        assert got[col] == pytest.approx(r[k], abs=6e-4), col
    assert got["NSNP"] == r["n_snp"]
    log = Path(h2_run + ".log").read_text()
    assert "look like Morgans" in log and "11751 (100.0%) merged" in log
    # reuse the written LD scores, intercept fixed at 1
    out = str(tmp_path / "fixed")
    gimtool("h2", "--ref-ld", h2_run, "--sumstats", REF / "gwas.PHENO.glm.linear.gz", "--intercept", "1", "--out", out)
    got = pl.read_csv(out + ".h2.tsv", separator="\t", null_values="NA").row(0, named=True)
    assert got["H2"] == pytest.approx(ref["1"]["h2"], abs=6e-4)
    assert got["H2_SE"] == pytest.approx(ref["1"]["h2_se"], abs=6e-4)
    assert got["INTERCEPT"] == 1.0 and got["INTERCEPT_SE"] is None


@pytest.mark.parametrize("case", ["twostep", "free", "fixed1"])
def test_regression_equals_ldsc_recorded_case(case):
    d = np.load(REF / "hsq_case.npz")
    ref = json.loads((REF / "hsq_case.json").read_text())[case]
    kw = {"twostep": dict(intercept=None, two_step=30), "free": dict(intercept=None, two_step=None),
          "fixed1": dict(intercept=1.0, two_step=None)}[case]
    r = ldsc_h2(d["chisq"], d["ld"], d["w_ld"], d["N"], float(d["M"]), **kw)
    for k, v in ref.items():
        assert getattr(r, k) == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_ldscore_files_roundtrip_and_per_chromosome(tmp_path):
    t = pl.DataFrame({"CHR": ["1", "1", "2"], "SNP": ["a", "b", "c"], "BP": [10, 20, 5], "L2": [1.23456, 2.0, 3.5]})
    write_ldscore(tmp_path / "x", t, 3, 2)
    with gzip.open(tmp_path / "x.l2.ldscore.gz", "rt") as fh:
        assert fh.readline().rstrip("\n").split("\t") == ["CHR", "SNP", "BP", "L2"]
        assert fh.readline().rstrip("\n") == "1\ta\t10\t1.235"
    back = read_ldscore(tmp_path / "x")
    assert back.M == 3 and back.M_5_50 == 2 and back.table["L2"].to_list() == [1.235, 2.0, 3.5]
    # LDSC's --ref-ld-chr layout: <prefix><chr>.l2.ldscore.gz, counts summed
    for c in ("1", "2"):
        write_ldscore(tmp_path / f"chr{c}", t.filter(pl.col("CHR") == c), 5, 4)
    split = read_ldscore(tmp_path / "chr")
    assert split.table["SNP"].to_list() == ["a", "b", "c"] and split.M == 10 and split.M_5_50 == 8


# --- bad input -----------------------------------------------------------------------------------


def test_sumstats_missing_column(h2_run, tmp_path, capsys):
    bad = tmp_path / "bad.sumstats.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("SNP\tCHR\tBP\tALLELE1\tALLELE0\tBETA\n")
        fh.write("rs1\t22\t100\tA\tG\t0.1\n")
    code, err = cli(capsys, "--ref-ld", h2_run, "--sumstats", bad, "--out", tmp_path / "o")
    assert code != 0
    assert "bad.sumstats.gz" in err and "SE" in err and "ALLELE1" in err  # expected and found columns


def test_little_overlap_is_an_error_with_counts(h2_run, tmp_path, capsys):
    ss = pl.read_csv(REF / "gwas.PHENO.glm.linear.gz", separator="\t")
    few = ss.head(150)
    renamed = ss.slice(150).with_columns(("x" + pl.col("ID")).alias("ID"))
    path = tmp_path / "few.glm.linear"
    pl.concat([few, renamed]).write_csv(path, separator="\t")
    out = tmp_path / "o"
    code, err = cli(capsys, "--ref-ld", h2_run, "--sumstats", path, "--out", out)
    assert code != 0 and "only 150 of its 11751 SNPs" in err
    log = Path(str(out) + ".log").read_text()
    assert "150 (1.3%) merged with the reference LD scores (11751 SNPs)" in log and "status: failed" in log


def test_low_overlap_warns(h2_run, tmp_path, capsys):
    ss = pl.read_csv(REF / "gwas.PHENO.glm.linear.gz", separator="\t")
    path = tmp_path / "half.glm.linear"
    half = ss.with_columns(pl.when(pl.int_range(pl.len()) % 3 != 0).then("x" + pl.col("ID")).otherwise(pl.col("ID")).alias("ID"))
    half.write_csv(path, separator="\t")
    out = tmp_path / "o"
    code, err = cli(capsys, "--ref-ld", h2_run, "--sumstats", path, "--out", out)
    assert code == 0 and "overlap the reference LD scores" in err
    assert "(33.3%) merged" in Path(str(out) + ".log").read_text()


def test_needs_one_ld_source(tmp_path, capsys):
    code, err = cli(capsys, "--sumstats", REF / "gwas.PHENO.glm.linear.gz", "--out", tmp_path / "o")
    assert code != 0 and "--bfile REF" in err and "--ref-ld" in err


def test_ldsc_backend_absent_says_how_to_install(h2_run, tmp_path):
    import shutil
    import subprocess
    import sys

    if shutil.which("ldsc.py"):
        pytest.skip("ldsc.py is on PATH here")
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-m", "gimtool", "h2", "--backend", "ldsc", "--ref-ld", h2_run, "--sumstats",
                        str(REF / "gwas.PHENO.glm.linear.gz"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "not found on PATH" in p.stderr and "install LDSC" in p.stderr


def test_backend_parsers_read_real_tool_output():
    from gimtool.backends.bolt_reml import parse_bolt_reml
    from gimtool.backends.ldsc import parse_ldsc_log

    d = parse_ldsc_log((REF / "ldsc_h2_free.log").read_text(), REF / "ldsc_h2_free.log")
    assert (d["h2"], d["h2_se"], d["intercept"], d["intercept_se"], d["ratio"], d["n_snp"]) == (
        0.2999, 0.2151, 1.0212, 0.0351, 0.2456, 11751)
    d = parse_ldsc_log((REF / "ldsc_h2_fixed1.log").read_text(), REF / "ldsc_h2_fixed1.log")
    assert d["h2"] == 0.4048 and d["intercept"] == 1.0 and np.isnan(d["intercept_se"]) and np.isnan(d["ratio"])
    r = parse_bolt_reml((REF.parent / "bolt_reml_tail.out").read_text())
    assert (r.h2, r.h2_se) == (0.567389, 0.187904)


def test_ld_scores_on_kept_people_only(eur2122, tmp_path, capsys):
    from gimtool.io.plink import Bfile

    bf = Bfile(eur2122)
    keep = tmp_path / "keep.txt"
    bf.fam.select("FID", "IID").head(150).write_csv(keep, separator="\t", include_header=False)
    out = tmp_path / "k"
    code, err = cli(capsys, "--bfile", eur2122, "--keep", keep, "--ld-wind-kb", "100", "--out", out)
    assert code == 0, err
    got = read_ldscore(out).table
    sel = np.flatnonzero(bf.bim["CHR"].to_numpy() == "22")[:300]
    G = bf.read(snps=sel, samples=np.arange(150))
    ref = brute_ld_scores(G, np.zeros(len(sel)), bf.bim["BP"].to_numpy()[sel].astype(float), 100_000, 50)
    mine = got.filter(pl.col("CHR") == "22").head(300)
    # LDSC's chunking (50 SNPs) stretches windows by up to two chunks: compare SNPs whose stretched
    # window cannot reach past the 300 SNPs of the reference computation
    bp = bf.bim["BP"].to_numpy()[sel]
    inner = (np.arange(300) < 150) & (bp < bp[-1] - 100_000)
    assert inner.sum() > 100
    np.testing.assert_allclose(mine["L2"].to_numpy()[inner], ref[inner], atol=1.1e-3)
    assert "150 people" in Path(str(out) + ".log").read_text()
