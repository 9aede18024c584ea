"""`gimtool h2 --method greml`: the command against the kernels, GRM reuse, bad input, and BOLT-REML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gimtool.io.plink import write_bfile
from gimtool.stats import greml
from tests.conftest import gimtool, require_program


def cli(capsys, *args):
    from gimtool.cli import main

    capsys.readouterr()
    code = main(["h2", "--method", "greml", *map(str, args)])
    return code, capsys.readouterr().err


def read(path):
    return pl.read_csv(path, separator="\t", null_values="NA")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """220 people x 3,000 random SNPs; phenotypes P1 (complete), P2 (some missing), a covariate file."""
    rng = np.random.default_rng(11)
    n, m = 220, 3000
    f = rng.uniform(0.05, 0.5, m)
    G = rng.binomial(2, f, size=(n, m)).astype(np.int8)
    d = tmp_path_factory.mktemp("greml")
    fam = pl.DataFrame({"FID": [f"F{i}" for i in range(n)], "IID": [f"I{i}" for i in range(n)]})
    bim = pl.DataFrame({"CHR": ["1"] * m, "SNP": [f"s{j}" for j in range(m)], "CM": np.linspace(0, 50, m),
                        "BP": np.arange(m) * 1000 + 1, "A1": ["A"] * m, "A2": ["G"] * m})
    write_bfile(d / "c", G, fam, bim)
    Z = (G - G.mean(0)) / G.std(0)
    g = Z @ rng.normal(size=m)
    g /= g.std()
    age = rng.normal(50, 10, n)
    P1 = np.sqrt(0.5) * g + np.sqrt(0.5) * rng.normal(size=n) + 0.05 * age
    P2 = np.sqrt(0.3) * g + np.sqrt(0.7) * rng.normal(size=n)
    P2[rng.random(n) < 0.15] = np.nan
    ph = fam.with_columns(pl.Series("P1", P1), pl.Series("P2", P2))
    ph.write_csv(d / "pheno.tsv", separator="\t", null_value="NA")
    # the covariate file lists the people in another order, and one person lacks a value
    cov = fam.with_columns(pl.Series("AGE", age), pl.Series("SEX", rng.integers(0, 2, n).astype(float)))
    cov = cov.with_columns(pl.when(pl.col("IID") == "I5").then(None).otherwise(pl.col("AGE")).alias("AGE"))
    cov.reverse().write_csv(d / "covar.tsv", separator="\t", null_value="NA")
    return dict(dir=d, bfile=str(d / "c"), G=G, P1=P1, P2=P2, age=age, cov=cov)


@pytest.mark.slow
def test_greml_command_equals_kernels_and_reuses_grm(cohort, tmp_path):
    d = cohort["dir"]
    out = str(tmp_path / "a")
    gimtool("h2", "--method", "greml", "--bfile", cohort["bfile"], "--pheno", d / "pheno.tsv", "--covar", d / "covar.tsv",
            "--out", out, "--grm-out", tmp_path / "grm.npz", "--chunk-size", "700")
    got = read(out + ".h2.tsv")
    assert got["PHENO"].to_list() == ["P1", "P2"]
    # the same fit from the kernels, by hand: person I5 (no AGE) dropped, P2 on its own people
    keep = np.arange(220) != 5
    G = cohort["G"][keep].astype(float)
    Z = (G - G.mean(0)) / G.std(0)
    K = Z @ Z.T / Z.shape[1]
    cov = cohort["cov"]  # in .fam order (the file on disk is reversed)
    X = np.column_stack([np.ones(keep.sum()), cov["AGE"].to_numpy()[keep], cov["SEX"].to_numpy()[keep]])
    lam, U = np.linalg.eigh(K)
    f1 = greml.reml_fit(lam, U.T @ cohort["P1"][keep], U.T @ X)
    y2 = cohort["P2"][keep]
    o = ~np.isnan(y2)
    lam2, U2 = np.linalg.eigh(K[np.ix_(o, o)])
    f2 = greml.reml_fit(lam2, U2.T @ y2[o], U2.T @ X[o])
    for row, f in zip(got.iter_rows(named=True), (f1, f2)):
        assert row["N"] == f.n
        assert row["H2"] == pytest.approx(f.h2, abs=1e-5)
        assert row["LOGLIK"] == pytest.approx(f.loglik, abs=1e-4)
        assert row["H2_SE"] == pytest.approx(f.h2_se, rel=1e-3)
    assert got["N"].to_list() == [219, int(o.sum())]
    summ = read(out + ".h2.summary.tsv").row(0, named=True)
    assert summ["H2_MEAN"] == pytest.approx(got["H2"].mean(), abs=1e-6)
    assert summ["H2_SD"] == pytest.approx(got["H2"].std(), abs=1e-6)
    log = Path(out + ".log").read_text()
    assert "1 people without every covariate dropped" in log and "GRM decomposed for them" in log
    # reuse: same numbers without reading genotypes
    out2 = str(tmp_path / "b")
    gimtool("h2", "--method", "greml", "--bfile", cohort["bfile"], "--pheno", d / "pheno.tsv", "--covar", d / "covar.tsv",
            "--out", out2, "--grm", tmp_path / "grm.npz")
    assert read(out2 + ".h2.tsv").equals(got)
    assert "(reused)" in Path(out2 + ".log").read_text()


def test_no_variance(cohort, tmp_path, capsys):
    ph = pl.read_csv(cohort["dir"] / "pheno.tsv", separator="\t", null_values="NA").with_columns(pl.lit(2.0).alias("P1"))
    ph.write_csv(tmp_path / "p.tsv", separator="\t", null_value="NA")
    code, err = cli(capsys, "--bfile", cohort["bfile"], "--pheno", tmp_path / "p.tsv", "--out", tmp_path / "o")
    assert code != 0 and "phenotype P1 has no variance" in err and "p.tsv" in err


def test_too_few_people(cohort, tmp_path, capsys):
    ph = pl.read_csv(cohort["dir"] / "pheno.tsv", separator="\t", null_values="NA")
    ph = ph.with_columns(pl.when(pl.int_range(pl.len()) < 4).then(pl.col("P1")).otherwise(None).alias("P1"))
    ph.write_csv(tmp_path / "p.tsv", separator="\t", null_value="NA")
    code, err = cli(capsys, "--bfile", cohort["bfile"], "--pheno", tmp_path / "p.tsv", "--pheno-name", "P1",
                    "--covar", cohort["dir"] / "covar.tsv", "--out", tmp_path / "o")
    assert code != 0 and "phenotype P1: 4 people" in err and "covariates + 2 = 5" in err


def test_beyond_the_n_limit(cohort, tmp_path, capsys):
    code, err = cli(capsys, "--bfile", cohort["bfile"], "--pheno", cohort["dir"] / "pheno.tsv", "--max-n", "100",
                    "--out", tmp_path / "o")
    assert code != 0 and "220 people exceed the GREML limit --max-n 100" in err and "--method ldsc" in err


def test_cuda_asked_without_gpu(cohort, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, err = cli(capsys, "--bfile", cohort["bfile"], "--pheno", cohort["dir"] / "pheno.tsv", "--device", "cuda",
                    "--out", tmp_path / "o")
    assert code != 0 and "CUDA" in err


@pytest.mark.slow
def test_greml_agrees_with_bolt_reml(tmp_path):
    """1,000 simulated people x 10,000 SNPs, h2 0.5 with two covariates: within one BOLT SE."""
    require_program("bolt")
    from gimtool.sim.genotypes import simulate_genotypes
    from gimtool.sim.traits import simulate_traits

    s = simulate_genotypes(1000, n_chromosomes=2, chrom_length_mb=5, n_snps=10_000, seed=21)
    write_bfile(tmp_path / "c", s.G, s.fam, s.bim)
    tr = simulate_traits(s.G, h2=0.5, n_causal=None, seed=3)
    rng = np.random.default_rng(4)
    c1, c2 = rng.normal(size=1000), rng.integers(0, 2, 1000).astype(float)
    ids = s.fam.select("FID", "IID")
    ids.with_columns(pl.Series("T", tr.values[:, 0] + 0.3 * c1 - 0.2 * c2)).write_csv(tmp_path / "p.tsv", separator="\t")
    ids.with_columns(pl.Series("C1", c1), pl.Series("C2", c2)).write_csv(tmp_path / "c.tsv", separator="\t")
    common = ["--bfile", tmp_path / "c", "--pheno", tmp_path / "p.tsv", "--covar", tmp_path / "c.tsv"]
    gimtool("h2", "--method", "greml", *common, "--out", tmp_path / "g")
    gimtool("h2", "--backend", "bolt-reml", *common, "--out", tmp_path / "b")
    g = read(str(tmp_path / "g") + ".h2.tsv").row(0, named=True)
    b = read(str(tmp_path / "b") + ".h2.tsv").row(0, named=True)
    assert b["N"] == g["N"] == 1000
    assert abs(g["H2"] - b["H2"]) < b["H2_SE"], (g, b)
    assert g["H2_SE"] == pytest.approx(b["H2_SE"], rel=0.25)
