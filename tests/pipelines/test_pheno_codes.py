"""PLINK's missing code (-9, --input-missing-phenotype) and categorical covariates in phenotype and
covariate files, against plink2 --glm on EUR_subset and BOLT's own example covariate file."""

from __future__ import annotations

import numpy as np
import pytest

from gimtool.errors import InputError
from gimtool.io.phenotypes import indicators
from gimtool.io.plink import Bfile
from gimtool.io.tables import read_table
from tests.conftest import gimtool, require_program, run
from tests.pipelines.test_gwas import _assert_same_as_plink


def _plink2(bfile, pheno, covar, out, *extra):
    run([require_program("plink2"), "--bfile", bfile, "--pheno", str(pheno), "--covar", str(covar), "--glm",
         "hide-covar", "--covar-variance-standardize", "--no-psam-pheno", "--threads", "1", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def coded(eur_bfile, tmp_path_factory):
    """A phenotype with a third of the values -9 (and -9.0) and a covariate with a few: the
    issue's case, where reading -9 as a value changed N from 253 to 379 and BETA fourfold."""
    d = tmp_path_factory.mktemp("codes")
    fam = Bfile(eur_bfile).fam
    rng = np.random.default_rng(17)
    n = fam.height
    y = rng.standard_normal(n)
    c = 50 + 10 * rng.standard_normal(n)
    miss_y = rng.random(n) < 1 / 3
    miss_c = rng.random(n) < 0.05
    for code, name in (("-9", "pheno9.tsv"), ("-999", "pheno999.tsv")):
        with open(d / name, "w") as fh, open(d / name.replace("pheno", "covar"), "w") as fc:
            fh.write("FID\tIID\tY\n")
            fc.write("FID\tIID\tAGE\n")
            for k, (f, i) in enumerate(zip(fam["FID"], fam["IID"])):
                spell = code if k % 2 else code + ".0"
                fh.write(f"{f}\t{i}\t{spell if miss_y[k] else f'{y[k]:.6f}'}\n")
                fc.write(f"{f}\t{i}\t{spell if miss_c[k] else f'{c[k]:.4f}'}\n")
    return d, int(miss_y.sum()), int((miss_y | miss_c).sum())


@pytest.mark.parametrize("code", ["-9", "-999"])
def test_missing_code_like_plink2(eur_bfile, coded, tmp_path, code):
    d, n_y, n_any = coded
    extra = [] if code == "-9" else ["--input-missing-phenotype", code]
    ph, cv = d / f"pheno{code[1:]}.tsv", d / f"covar{code[1:]}.tsv"
    gimtool("gwas", "--bfile", eur_bfile, "--pheno", ph, "--covar", cv, "--out", tmp_path / "g", "--no-plots", *extra)
    _plink2(eur_bfile, ph, cv, tmp_path / "pl", *extra)
    _assert_same_as_plink(tmp_path / "g", tmp_path / "pl", ["Y"])  # same N and BETA (and SE, P)
    log = (tmp_path / "g.log").read_text()
    assert f"{n_y} phenotype values equal to {code} read as missing" in log
    assert f"samples with phenotype and covariates" in log and f"Y: N={379 - n_any} " in log


def test_other_code_leaves_neg9_a_value(eur_bfile, coded, tmp_path):
    d, _, _ = coded
    gimtool("gwas", "--bfile", eur_bfile, "--pheno", d / "pheno9.tsv", "--out", tmp_path / "g", "--no-plots",
            "--input-missing-phenotype", "-999")
    assert "Y: N=379 " in (tmp_path / "g.log").read_text()


def test_categorical_covariate_like_plink2(eur_dir, tmp_path):
    """BOLT's example covariate file: CAT_COV (A/B, one NA, one -9) becomes the indicator CAT_COV=A.
    plink2 wants NONE for a missing category: it gets a copy so recoded."""
    src = eur_dir / "EUR_subset.pheno.covars"
    lines = src.read_text().splitlines()
    recoded = [lines[0]] + [" ".join(t[:5] + ["NONE" if t[5] in ("NA", "-9") else t[5]])
                            for t in (ln.split() for ln in lines[1:])]
    (tmp_path / "none.covars").write_text("\n".join(recoded) + "\n")
    bfile = str(eur_dir / "EUR_subset")
    covs = ["--covar-name", "QCOV1,QCOV2,CAT_COV"]
    gimtool("gwas", "--bfile", bfile, "--pheno", src, "--pheno-name", "PHENO", "--covar", src, *covs,
            "--out", tmp_path / "g", "--no-plots")
    _plink2(bfile, tmp_path / "none.covars", tmp_path / "none.covars", tmp_path / "pl", "--pheno-name", "PHENO", *covs)
    _assert_same_as_plink(tmp_path / "g", tmp_path / "pl", ["PHENO"])
    log = (tmp_path / "g.log").read_text()
    assert "covariate CAT_COV: categorical, 2 levels (A 179, B 192); 1 indicator column(s) CAT_COV=A, reference B" in log
    assert "covariates: QCOV1, QCOV2, CAT_COV=A" in log


def test_mixed_numbers_and_text_is_one_error(eur_dir, tmp_path):
    src = eur_dir / "EUR_subset.pheno.covars"
    bad = tmp_path / "mixed.covars"
    lines = src.read_text().splitlines()
    t = lines[5].split()
    lines[5] = " ".join(t[:5] + ["3"])
    bad.write_text("\n".join(lines) + "\n")
    p = gimtool("gwas", "--bfile", eur_dir / "EUR_subset", "--pheno", src, "--pheno-name", "PHENO", "--covar", bad,
                "--out", tmp_path / "g", "--no-plots", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and str(bad) in err[0] and "column CAT_COV" in err[0] and "mixes numbers ('3') and text" in err[0]


def test_read_table_categorical_and_counts(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("FID IID SITE AGE\na 1 x -9\nb 2 NONE 40\nc 3 y -9.0\nd 4 -9 50\ne 5 y NA\n")
    counts: dict = {}
    df = read_table(p, what="covariate", missing_code=-9, categorical=True, counts=counts)
    assert df["SITE"].to_list() == ["x", None, "y", None, "y"]
    assert df["AGE"].to_list() == [None, 40.0, None, 50.0, None]
    assert counts == {"SITE": 1, "AGE": 2}
    with pytest.raises(InputError, match="line 2: column SITE: expected a number or NA, found 'x'"):
        read_table(p, what="covariate", missing_code=-9)
    a, names = indicators("SITE", np.array(["x", None, "y", "z", "y"], dtype=object))
    assert names == ["SITE=x", "SITE=z"]  # y, the most frequent, is the reference
    np.testing.assert_array_equal(a, [[1, 0], [np.nan, np.nan], [0, 0], [0, 1], [0, 0]])
