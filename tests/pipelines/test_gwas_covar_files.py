"""Several --covar files are joined by FID IID (age/sex beside ancestry PCs)."""

import numpy as np
import polars as pl
import pytest

from gimtool.pipelines import gwas
from gimtool.errors import InputError
from gimtool.io.plink import Bfile
from gimtool.io.tables import write_table


def test_two_covar_files_equal_one(eur_bfile, tmp_path):
    bf = Bfile(eur_bfile)
    rng = np.random.default_rng(3)
    ids = bf.fam.select("FID", "IID")
    cov = ids.with_columns(pl.Series("age", rng.normal(60, 8, bf.n_samples)), pl.Series("PC1", rng.normal(size=bf.n_samples)),
                           pl.Series("PC2", rng.normal(size=bf.n_samples)))
    ph = ids.with_columns(pl.Series("y", rng.normal(size=bf.n_samples)))
    write_table(cov, tmp_path / "all.tsv")
    write_table(cov.select("FID", "IID", "age"), tmp_path / "a.tsv")
    # the second file lists people in another order and lacks one person
    write_table(cov.select("FID", "IID", "PC1", "PC2")[::-1][1:], tmp_path / "b.tsv")
    write_table(ph, tmp_path / "y.tsv")
    one = gwas.load_inputs(bf, tmp_path / "y.tsv", None, tmp_path / "all.tsv")
    two = gwas.load_inputs(bf, tmp_path / "y.tsv", None, [tmp_path / "a.tsv", tmp_path / "b.tsv"])
    assert two.covar_names == ["age", "PC1", "PC2"]
    expect = one.c.copy()
    expect[-1, 1:] = np.nan  # the person missing from b.tsv (the last of the .fam) has no PCs
    np.testing.assert_array_equal(two.c, expect)
    sel = gwas.load_inputs(bf, tmp_path / "y.tsv", None, [tmp_path / "a.tsv", tmp_path / "b.tsv"], ["PC2", "age"])
    assert sel.covar_names == ["PC2", "age"]
    np.testing.assert_array_equal(sel.c[:, 1], one.c[:, 0])
    with pytest.raises(InputError, match="covariate\\(s\\) sex not found; covariate columns are: age"):
        gwas.load_inputs(bf, tmp_path / "y.tsv", None, [tmp_path / "a.tsv", tmp_path / "b.tsv"], ["age", "sex"])
    with pytest.raises(InputError, match="appear in more than one --covar file"):
        gwas.load_inputs(bf, tmp_path / "y.tsv", None, [tmp_path / "a.tsv", tmp_path / "all.tsv"])
