"""gimtool pcs: genotype PCs against plink2 --pca, embedding PCs against a numpy reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gimtool.cli import main
from gimtool.stats import pca
from tests.conftest import gimtool, require_program, run


@pytest.fixture(scope="module")
def pruned(eur_bfile, tmp_path_factory):
    """EUR_subset chr 20-22 pruned by plink2 --indep-pairwise 50 5 0.2, and plink2 --pca 10 on it."""
    plink2 = require_program("plink2")
    d = tmp_path_factory.mktemp("pcs")
    run([plink2, "--bfile", eur_bfile, "--chr", "20-22", "--indep-pairwise", "50", "5", "0.2", "--out", str(d / "pr")])
    run([plink2, "--bfile", eur_bfile, "--extract", str(d / "pr.prune.in"), "--make-bed", "--out", str(d / "pruned")])
    run([plink2, "--bfile", str(d / "pruned"), "--pca", "10", "--out", str(d / "pl")])
    return d


def test_genotype_pcs_match_plink2_pca(pruned):
    d = pruned
    gimtool("pcs", "--bfile", d / "pruned", "--prune", "none", "--maf", "0", "--n-pcs", "10", "--out", d / "g")
    ours = pl.read_csv(d / "g.eigenvec", separator="\t")
    ref = pl.read_csv(d / "pl.eigenvec", separator="\t")
    assert ours.columns[:3] == ["#FID", "IID", "PC1"]
    assert (ours["IID"] == ref["IID"]).all()
    for i in range(1, 6):
        r = np.corrcoef(ours[f"PC{i}"].to_numpy(), ref[f"PC{i}"].to_numpy())[0, 1]
        assert abs(r) >= 0.999, (i, r)
    ev = np.loadtxt(d / "g.eigenval")
    np.testing.assert_allclose(ev[:5], np.loadtxt(d / "pl.eigenval")[:5], rtol=1e-4)


def test_genotype_pcs_with_pruning(pruned, eur_bfile, tmp_path):
    from gimtool.io.plink import Bfile

    gimtool("pcs", "--bfile", eur_bfile, "--n-pcs", "3", "--out", tmp_path / "p", "--prune-window", "50", "--prune-r2", "0.2")
    kept = (tmp_path / "p.prune.in").read_text().split()
    bf = Bfile(eur_bfile)
    assert 0.2 * bf.n_snps < len(kept) < 0.7 * bf.n_snps
    # no pair of kept SNPs within a window of 50 kept-or-not SNPs has r2 above the threshold
    pos = {s: k for k, s in enumerate(bf.bim["SNP"].to_list())}
    idx = np.array(sorted(pos[s] for s in kept[:400]))
    g = bf.read(snps=idx, dtype="float64")
    r2 = np.corrcoef(g.T) ** 2
    close = np.abs(idx[:, None] - idx[None, :]) < 50
    np.fill_diagonal(close, False)
    assert r2[close & np.isfinite(r2)].max() <= 0.2 + 1e-9
    assert len((tmp_path / "p.eigenval").read_text().split()) == 3


def test_randomized_equals_exact_on_structured_data():
    rng = np.random.default_rng(0)
    n, m = 300, 2000
    pop = rng.integers(0, 3, n)
    f = np.clip(rng.uniform(0.1, 0.9, (3, m)) * 0.3 + rng.uniform(0.1, 0.6, m) * 0.7, 0.01, 0.99)
    g = rng.binomial(2, f[pop]).astype(np.int8)
    x, _ = pca.standardize_genotypes(g)
    chunks = lambda: (x[:, a : a + 500] for a in range(0, m, 500))  # noqa: E731
    v_e, w_e = pca.grm_pca(chunks(), n, 2)
    v_r, w_r = pca.randomized_pca(chunks, n, 2, np.random.default_rng(1))
    for i in range(2):
        assert abs(np.corrcoef(v_e[:, i], v_r[:, i])[0, 1]) > 0.9999
    np.testing.assert_allclose(w_r, w_e, rtol=1e-6)


def _embeddings(path, n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 3.0
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    with open(path, "w") as fh:
        fh.write("FID\tIID\t" + "\t".join(f"E{j}" for j in range(d)) + "\n")
        for (f, i), row in zip(ids, x):
            fh.write(f"{f}\t{i}\t" + "\t".join(repr(float(v)) for v in row) + "\n")
    return x, ids


def test_embedding_pcs_fit_on_subset_equal_numpy(tmp_path):
    x, ids = _embeddings(tmp_path / "emb.tsv")
    train = np.arange(40)
    (tmp_path / "train.ids").write_text("".join(f"{ids[i][0]}\t{ids[i][1]}\n" for i in train))
    gimtool("pcs", "--pheno", tmp_path / "emb.tsv", "--fit-keep", tmp_path / "train.ids", "--n-pcs", "4", "--out", tmp_path / "e")
    got = pl.read_csv(tmp_path / "e.pcs.tsv", separator="\t")
    assert got.columns == ["FID", "IID", "PC1", "PC2", "PC3", "PC4"] and got.height == 60
    # numpy reference: eigenvectors of the training covariance, applied to everyone
    xt = x[train]
    mu = xt.mean(0)
    w, v = np.linalg.eigh(np.cov(xt.T))
    v = v[:, np.argsort(w)[::-1][:4]]
    ref = (x - mu) @ v
    ours = got.select("PC1", "PC2", "PC3", "PC4").to_numpy()
    signs = np.sign((ours * ref).sum(0))
    np.testing.assert_allclose(ours, ref * signs, rtol=1e-8, atol=1e-8)
    expl = pl.read_csv(tmp_path / "e.explained.tsv", separator="\t")
    np.testing.assert_allclose(expl["EIGENVALUE"].to_numpy(), np.sort(w)[::-1][:4], rtol=1e-8)
    np.testing.assert_allclose(expl["EXPLAINED"].to_numpy(), np.sort(w)[::-1][:4] / w.sum(), rtol=1e-8)
    assert (tmp_path / "e.scree.png").read_bytes()[:4] == b"\x89PNG"


def test_apply_loadings_reproduces_scores(tmp_path, capsys):
    _embeddings(tmp_path / "emb.tsv")
    _embeddings(tmp_path / "new.tsv", seed=1)
    assert main(["pcs", "--pheno", str(tmp_path / "emb.tsv"), "--n-pcs", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(["pcs", "--pheno", str(tmp_path / "emb.tsv"), "--apply", str(tmp_path / "a.loadings.tsv"), "--out", str(tmp_path / "b")]) == 0
    a = pl.read_csv(tmp_path / "a.pcs.tsv", separator="\t")
    b = pl.read_csv(tmp_path / "b.pcs.tsv", separator="\t")
    np.testing.assert_allclose(a.select("PC1", "PC2", "PC3").to_numpy(), b.select("PC1", "PC2", "PC3").to_numpy(), rtol=1e-12)
    assert main(["pcs", "--pheno", str(tmp_path / "new.tsv"), "--apply", str(tmp_path / "a.loadings.tsv"), "--out", str(tmp_path / "c")]) == 0
    lo = pl.read_csv(tmp_path / "a.loadings.tsv", separator="\t")
    xn = pl.read_csv(tmp_path / "new.tsv", separator="\t").select([f"E{j}" for j in range(8)]).to_numpy()
    ref = (xn - lo["MEAN"].to_numpy()) @ lo.select("PC1", "PC2", "PC3").to_numpy()
    c = pl.read_csv(tmp_path / "c.pcs.tsv", separator="\t").select("PC1", "PC2", "PC3").to_numpy()
    np.testing.assert_allclose(c, ref, rtol=1e-10)


def test_pcs_bad_input(tmp_path, capsys):
    _embeddings(tmp_path / "emb.tsv", n=10, d=3)
    assert main(["pcs", "--pheno", str(tmp_path / "emb.tsv"), "--n-pcs", "5", "--out", str(tmp_path / "x")]) != 0
    assert "--n-pcs 5: at most" in capsys.readouterr().err
    assert main(["pcs", "--out", str(tmp_path / "x")]) != 0
    assert "exactly one of --pheno" in capsys.readouterr().err
    (tmp_path / "ids").write_text("NOPE NOPE\n")
    assert main(["pcs", "--pheno", str(tmp_path / "emb.tsv"), "--fit-keep", str(tmp_path / "ids"), "--n-pcs", "2", "--out", str(tmp_path / "x")]) != 0
    assert "the keep list selects no one (none of its 1 IDs is in the data, e.g. NOPE NOPE)" in capsys.readouterr().err
