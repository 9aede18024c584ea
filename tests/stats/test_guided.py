"""The genotype-guided readout (stats.guided, `pcs --guided-by`): it finds a low-variance
direction that carries association with the genotypes where PCA keeps the high-variance noise,
it selects nothing under the null, and it never sees people outside the fit set."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from gimtool.cli import app, main
from gimtool.io.tables import write_ids, write_table
from gimtool.stats import guided, pca


def _cohort(n=800, L=300, d=24, seed=0, signal=True):
    rng = np.random.default_rng(seed)
    af = rng.uniform(0.1, 0.5, L)
    G = rng.binomial(2, af, size=(n, L)).astype(np.int8)
    Gs = pca.standardize_genotypes(G)[0]
    # z: large-variance noise on every axis, and along one fixed direction w a small genetic part
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    z = rng.standard_normal((n, d)) * np.linspace(10, 1, d)
    if signal:
        z += np.outer(Gs[:, 7] + Gs[:, 150], w) * 3.0
    return G, Gs, z, w


def _cos(a, b):
    return abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))


def test_finds_the_genetic_direction_that_pca_misses():
    G, Gs, z, w = _cohort()
    fit = guided.fit_guided(z, [Gs[:, :100], Gs[:, 100:]], k=2, rotation="none")
    scores = pca.apply_pca(z, fit.mean, fit.components)
    # the first guided score tracks the genetic part; the top PCs do not
    genetic = Gs[:, 7] + Gs[:, 150]
    # as good as the best linear predictor of the genetic part (which uses the truth) nearly
    zc = z - z.mean(0)
    oracle = np.corrcoef(zc @ np.linalg.lstsq(zc, genetic - genetic.mean(), rcond=None)[0], genetic)[0, 1]
    assert oracle > 0.6 and abs(np.corrcoef(scores[:, 0], genetic)[0, 1]) > 0.95 * oracle
    top = pca.fit_pca(z, 2)
    pcs = pca.apply_pca(z, top.mean, top.components)
    assert max(abs(np.corrcoef(pcs[:, j], genetic)[0, 1]) for j in range(2)) < 0.3
    # scores have variance 1 on the fit people; the two causal SNPs are among those selected
    np.testing.assert_allclose(scores.var(0), 1.0, rtol=1e-6)
    assert 2 <= fit.n_selected <= 6 and fit.n_tested == 300 and fit.q == z.shape[1]
    # varimax turns the two directions within the same span: together they hold as much
    rot = guided.fit_guided(z, [Gs[:, :100], Gs[:, 100:]], k=2, rotation="varimax")
    assert _multiple_r(pca.apply_pca(z, rot.mean, rot.components), genetic) > 0.95 * oracle


def _multiple_r(X, y):
    Xc = np.column_stack([np.ones(len(y)), X])
    return float(np.corrcoef(Xc @ np.linalg.lstsq(Xc, y, rcond=None)[0], y)[0, 1])


def _three_factors(seed=11, n=1500, d=20):
    """z with three equally strong genetic parts s1..s3 (two SNPs each) along directions that are
    not orthogonal once z is whitened, over unequal noise: M's top eigenvectors mix them."""
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.2, 0.5, 200), size=(n, 200)).astype(np.int8)
    Gs = pca.standardize_genotypes(G)[0]
    s = np.stack([Gs[:, 10] + Gs[:, 11], Gs[:, 60] + Gs[:, 61], Gs[:, 120] + Gs[:, 121]], axis=1)
    base = rng.standard_normal(d)
    W = np.stack([base + rng.standard_normal(d) * 0.8 for _ in range(3)])  # correlated directions
    z = rng.standard_normal((n, d)) * np.linspace(6, 1, d) + s @ W
    return Gs, z, s


def _corr(scores, s):
    return np.abs(np.corrcoef(scores.T, s.T)[: scores.shape[1], scores.shape[1]:])  # (k, 3)


def test_varimax_gives_each_group_of_loci_its_own_direction():
    Gs, z, s = _three_factors()
    plain = guided.fit_guided(z, [Gs], k=3, rotation="none")
    rot = guided.fit_guided(z, [Gs], k=3, rotation="varimax")
    P = pca.apply_pca(z, plain.mean, plain.components)
    R = pca.apply_pca(z, rot.mean, rot.components)
    assert plain.rotated == 0 and rot.rotated == 3 and plain.n_selected == rot.n_selected >= 6
    # unrotated, a direction mixes two genetic parts (this case discriminates) ...
    assert (np.sort(_corr(P, s), axis=1)[:, -2] > 0.35).any()
    # ... rotated, each direction follows one part, a different one each
    C = _corr(R, s)
    assert (C.max(1) > 0.8).all() and (np.sort(C, axis=1)[:, -2] < 0.3).all()
    assert sorted(C.argmax(1)) == [0, 1, 2]
    # the same span, and still unit-variance, uncorrelated scores on the fit people
    beta, *_ = np.linalg.lstsq(P - P.mean(0), R - R.mean(0), rcond=None)
    np.testing.assert_allclose((P - P.mean(0)) @ beta, R - R.mean(0), atol=1e-6)
    np.testing.assert_allclose(np.cov(R.T, bias=True), np.eye(3), atol=1e-6)
    # ordered by their sum of squares over the selected SNPs
    assert (np.diff(rot.eigenvalues) <= 0).all()
    with pytest.raises(ValueError, match="rotation 'promax'"):
        guided.fit_guided(z, [Gs], k=3, rotation="promax")


def test_null_selects_nothing_and_falls_back_to_pcs():
    G, Gs, z, w = _cohort(signal=False, seed=3)
    fit = guided.fit_guided(z, [Gs], k=3, p_threshold=1e-5)
    assert fit.n_selected == 0
    top = pca.fit_pca(z, 3)
    for j in range(3):  # with nothing selected, the directions are the leading PCs (whitened)
        assert _cos(fit.components[j], top.components[j]) > 0.99


def test_chunking_and_covariates():
    G, Gs, z, w = _cohort(seed=5)
    one = guided.fit_guided(z, [Gs], k=2)
    many = guided.fit_guided(z, [Gs[:, a:a + 37] for a in range(0, Gs.shape[1], 37)], k=2)
    np.testing.assert_allclose(one.components, many.components, atol=1e-8)
    # a covariate equal to the genetic part removes the association entirely
    cov = (Gs[:, 7] + Gs[:, 150])[:, None]
    with_cov = guided.fit_guided(z, [Gs], k=2, covar=cov)
    assert with_cov.n_selected < one.n_selected


def test_fit_does_not_depend_on_how_each_snp_is_scaled():
    # pcs --guided-by standardizes by 2p(1 - p), the tests by the sample SD: the same readout
    G, Gs, z, w = _cohort(seed=7)
    emp = Gs / Gs.std(0)
    a = guided.fit_guided(z, [Gs], k=2)
    b = guided.fit_guided(z, [emp * np.linspace(0.5, 3.0, emp.shape[1])], k=2)
    np.testing.assert_allclose(a.components, b.components, atol=1e-8)
    assert a.n_selected == b.n_selected


def test_refuses_more_directions_than_dimensions():
    G, Gs, z, w = _cohort(d=4)
    with pytest.raises(ValueError, match="3 directions of a 2-dimensional"):
        guided.fit_guided(z[:, :2], [Gs], k=3)
    rank2 = np.concatenate([z[:, :2], 2 * z[:, :2]], axis=1)  # 4 columns, 2 directions
    with pytest.raises(ValueError, match="2 non-degenerate directions"):
        guided.fit_guided(rank2, [Gs], k=3)


def test_pcs_guided_by_cli_fits_on_fit_people_only(tmp_path, capsys):
    from gimtool.io.genostore import GenoStoreWriter

    G, Gs, z, w = _cohort(n=600)
    ids = pl.DataFrame({"FID": [f"F{i}" for i in range(600)], "IID": [f"I{i}" for i in range(600)]})
    snps = pl.DataFrame({"CHR": [1] * 300, "SNP": [f"rs{j}" for j in range(300)], "CM": np.arange(300) * 0.01,
                         "BP": np.arange(300) * 10_000 + 1, "A1": ["A"] * 300, "A2": ["G"] * 300})
    with GenoStoreWriter(tmp_path / "g.geno", ids, snps) as wr:
        wr.write(G)
    emb = ids.with_columns([pl.Series(f"z{k + 1}", z[:, k]) for k in range(z.shape[1])])
    write_table(emb, tmp_path / "emb.tsv")
    write_ids(ids[:400], tmp_path / "train.ids")
    args = ["pcs", "--pheno", str(tmp_path / "emb.tsv"), "--fit-keep", str(tmp_path / "train.ids"), "--n-pcs", "2",
            "--guided-by", str(tmp_path / "g.geno")]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    out = pl.read_csv(tmp_path / "a.pcs.tsv", separator="\t")
    genetic = Gs[:, 7] + Gs[:, 150]
    assert _multiple_r(out.select("PC1", "PC2").to_numpy()[400:], genetic[400:]) > 0.6  # held-out people
    log = (tmp_path / "a.log").read_text()
    # varimax by default; --guided-rotation none keeps the eigenvectors as they are
    assert "guided readout: 400 fit samples with genotypes" in log and "guided readout: rotation varimax" in log
    assert main([*args, "--guided-rotation", "none", "--out", str(tmp_path / "v")]) == 0
    assert "guided readout: rotation none" in (tmp_path / "v.log").read_text()
    assert main([*args, "--guided-rotation", "oblique", "--out", str(tmp_path / "d")]) != 0
    assert "--guided-rotation oblique: expected one of none, varimax" in capsys.readouterr().err
    # the held-out people's genotypes never shape the readout: scrambling them changes nothing
    G2 = G.copy()
    G2[400:] = np.random.default_rng(9).permutation(G2[400:])
    with GenoStoreWriter(tmp_path / "g2.geno", ids, snps) as wr:
        wr.write(G2)
    r = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "g2.geno"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert pl.read_csv(tmp_path / "b.pcs.tsv", separator="\t").equals(out)
    assert main(["pcs", "--bfile", "x", "--guided-by", str(tmp_path / "g.geno"), "--out", str(tmp_path / "c")]) != 0
    assert "--guided-by fits a readout of embeddings" in capsys.readouterr().err
