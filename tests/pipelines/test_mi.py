"""gimtool mi: the held-out JSE mutual-information estimator (library and command)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gimtool.model.losses import jse_loss
from gimtool.train import mi as milib
from gimtool.cli import main as gimtool_main
from gimtool.conventions import MISSING_INT8
from tests.conftest import gimtool


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # two cores are shared by many jobs: more threads only oversubscribe them
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run_inproc(capsys, *args) -> tuple[int, str]:
    """The CLI in this process (no interpreter and torch start-up per call): (exit code, stderr)."""
    code = gimtool_main([str(a) for a in args])
    return code, capsys.readouterr().err

# Gaussian pairs: embedding = rho * (genetic score) + sqrt(1 - rho^2) * noise, so the true MI of
# the informative dimension is -0.5 ln(1 - rho^2) nats, increasing with rho.
RHOS = (0.0, 0.5, 0.75, 0.95)
N_PEOPLE, N_SNPS, N_CAUSAL = 1000, 50, 5


def _genotypes(rng, n=N_PEOPLE, m=N_SNPS):
    maf = rng.uniform(0.1, 0.5, m)
    return rng.binomial(2, maf, size=(n, m)).astype(np.int8), maf


def _score(G, maf, causal):
    X = (G[:, causal] - 2 * maf[causal]) / np.sqrt(2 * maf[causal] * (1 - maf[causal]))
    s = X.sum(1)
    return (s - s.mean()) / s.std()


def _embedding(rng, score, rho, noise_dims=2):
    z = rho * score + math.sqrt(1 - rho**2) * rng.standard_normal(score.size)
    return np.column_stack([z, rng.standard_normal((score.size, noise_dims))])


def _positions(m):
    half = m // 2
    return {
        "chrom": np.r_[np.ones(half, int), np.full(m - half, 2)],
        "bp": np.r_[np.arange(half), np.arange(m - half)] * 10_000 + 1,
        "cm": np.r_[np.arange(half), np.arange(m - half)] * 0.01,
    }


@pytest.fixture(scope="module")
def gaussian_levels():
    """MI estimates (MLP genetic encoder) at each correlation level, one repeat each."""
    rng = np.random.default_rng(1)
    G, maf = _genotypes(rng)
    score = _score(G, maf, rng.choice(N_SNPS, N_CAUSAL, replace=False))
    cols = np.arange(N_SNPS)
    settings = milib.MISettings(encoder="mlp", model=milib.small_transformer_config(), max_epochs=60, patience=8)
    out = {}
    for rho in RHOS:
        Z = _embedding(rng, score, rho)
        res = milib.estimate_mi(Z, milib.GenotypeRows(G, np.arange(N_PEOPLE), cols), _positions(N_SNPS), cols,
                                settings, repeats=1, seed=3)
        out[rho] = res
    print("\nrho  true_MI  MI_val  MI_train  best_epoch")
    for rho, res in out.items():
        print(f"{rho:.2f} {-0.5 * math.log(1 - rho**2):.3f} {res.mi_val[0]:.4f} {res.mi_train[0]:.4f} {res.runs[0].best_epoch}")
    return out


def test_jse_loss_separable_matches_dense():
    g = torch.Generator().manual_seed(0)
    U, V = torch.randn(37, 5, generator=g), torch.randn(37, 5, generator=g)
    dense = float(jse_loss(U @ V.t() * 0.4))
    assert milib.jse_loss_separable(U, V, 0.4, block=8) == pytest.approx(dense, rel=1e-5)
    # an uninformative critic (all scores 0) sits exactly at 2 ln 2, i.e. an estimate of 0
    zeros = torch.zeros(10, 3)
    assert milib.jse_loss_separable(zeros, zeros, 1.0) == pytest.approx(milib.MAX_MI)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), k=st.integers(1, 6), block=st.integers(1, 50), scale=st.floats(0.01, 3.0))
def test_jse_loss_separable_property(n, k, block, scale):
    g = torch.Generator().manual_seed(n * 100 + k)
    U, V = torch.randn(n, k, generator=g, dtype=torch.float64), torch.randn(n, k, generator=g, dtype=torch.float64)
    assert milib.jse_loss_separable(U, V, scale, block) == pytest.approx(float(jse_loss(U @ V.t() * scale)), rel=1e-6)


def test_split_people_disjoint_and_complete():
    tr, va = milib.split_people(100, 0.3, np.random.default_rng(0))
    assert va.size == 30 and tr.size == 70
    assert np.intersect1d(tr, va).size == 0
    assert np.array_equal(np.sort(np.r_[tr, va]), np.arange(100))
    tr2, va2 = milib.split_people(100, 0.3, np.random.default_rng(1))
    assert not np.array_equal(va, va2)
    with pytest.raises(ValueError, match="each part needs at least"):
        milib.split_people(6, 0.3, np.random.default_rng(0))


def test_even_snp_subset():
    assert np.array_equal(milib.even_snp_subset(10, None), np.arange(10))
    sub = milib.even_snp_subset(1000, 7)
    assert sub.size == 7 and sub[0] == 0 and sub[-1] == 999 and np.all(np.diff(sub) > 0)


def test_standardize_uses_training_rows_only():
    Z = np.r_[np.zeros((5, 1)), np.full((5, 1), 100.0)]
    Z[:5, 0] = [1, 2, 3, 4, 5]
    out = milib.standardize_columns(Z, np.arange(5))
    assert out[:5, 0].mean() == pytest.approx(0, abs=1e-6) and out[:5, 0].std() == pytest.approx(1, rel=1e-5)
    assert out[5, 0] > 50  # validation rows are not re-centred on themselves


def test_estimates_rank_in_true_order(gaussian_levels):
    val = [gaussian_levels[r].mi_val[0] for r in RHOS]
    assert all(a < b for a, b in zip(val, val[1:])), f"validation estimates not increasing with rho: {val}"
    train = [gaussian_levels[r].mi_train[0] for r in RHOS]
    assert all(a < b for a, b in zip(train, train[1:])), f"training estimates not increasing with rho: {train}"
    assert all(v <= milib.MAX_MI for v in val + train)


def test_independent_pairs_near_zero(gaussian_levels):
    res = gaussian_levels[0.0]
    assert abs(res.mi_val[0]) < 0.02
    # the informative levels are well clear of it
    assert gaussian_levels[0.95].mi_val[0] > 0.1


def test_curves_and_early_stopping(gaussian_levels):
    run = gaussian_levels[0.75].runs[0]
    epochs = [c["EPOCH"] for c in run.curves]
    assert epochs == list(range(len(epochs)))
    best = min(run.curves, key=lambda c: c["VAL_LOSS"])
    assert best["EPOCH"] == run.best_epoch
    assert run.mi_val == pytest.approx(2 * math.log(2) - best["VAL_LOSS"])
    assert run.mi_train == pytest.approx(2 * math.log(2) - best["TRAIN_LOSS"])
    # it stopped `patience` epochs after the best one (or at max_epochs)
    assert len(epochs) - 1 == min(run.best_epoch + 8, 60)


def test_repeats_give_standard_error_and_are_reproducible():
    rng = np.random.default_rng(5)
    G, maf = _genotypes(rng, n=200, m=20)
    Z = _embedding(rng, _score(G, maf, np.arange(3)), 0.9)
    cols = np.arange(20)
    st = milib.MISettings(encoder="mlp", model=milib.small_transformer_config(), max_epochs=5, patience=2)
    geno = milib.GenotypeRows(G, np.arange(200), cols)
    a = milib.estimate_mi(Z, geno, _positions(20), cols, st, repeats=3, seed=7)
    b = milib.estimate_mi(Z, geno, _positions(20), cols, st, repeats=3, seed=7)
    assert [r.mi_val for r in a.runs] == [r.mi_val for r in b.runs]
    mean, se = a.mi_val
    vals = np.array([r.mi_val for r in a.runs])
    assert mean == pytest.approx(vals.mean()) and se == pytest.approx(vals.std(ddof=1) / math.sqrt(3))
    assert len({r.mi_val for r in a.runs}) == 3  # different seeds, different splits


def test_genotype_rows_memmap_path_matches_cache():
    rng = np.random.default_rng(0)
    G = rng.integers(0, 3, size=(30, 12)).astype(np.int8)
    rows, cols = np.array([5, 2, 20, 7]), np.array([0, 3, 11])
    cached = milib.GenotypeRows(G, rows, cols)
    streamed = milib.GenotypeRows(G, rows, cols, max_bytes=0)
    assert streamed.cache is None
    k = np.array([3, 0, 2])
    assert np.array_equal(cached[k], G[rows[k]][:, cols])
    assert np.array_equal(streamed[k], G[rows[k]][:, cols])


def test_transformer_encoder_smoke():
    rng = np.random.default_rng(2)
    G, maf = _genotypes(rng, n=64, m=24)
    Z = _embedding(rng, _score(G, maf, np.arange(3)), 0.9)
    cols = np.arange(24)
    st = milib.MISettings(encoder="transformer", model=milib.small_transformer_config(), max_epochs=2, patience=2,
                          batch_size=16)
    res = milib.estimate_mi(Z, milib.GenotypeRows(G, np.arange(64), cols), _positions(24), cols, st, repeats=1)
    run = res.runs[0]
    assert len(run.curves) == 3 and all(np.isfinite(c["VAL_LOSS"]) for c in run.curves)
    assert -1.0 < run.mi_val <= milib.MAX_MI


# -- the command ------------------------------------------------------------------------------


def _write_store(path, G, fids, chrom=None):
    from gimtool.io.genostore import GenoStoreWriter

    n, m = G.shape
    pos = _positions(m)
    snps = pl.DataFrame({"CHR": pos["chrom"], "SNP": [f"rs{j}" for j in range(m)], "CM": pos["cm"], "BP": pos["bp"],
                         "A1": ["A"] * m, "A2": ["G"] * m})
    samples = pl.DataFrame({"FID": fids, "IID": fids})
    with GenoStoreWriter(path, samples, snps) as w:
        w.write(G)


def _write_emb(path, fids, Z):
    df = pl.DataFrame({"FID": fids, "IID": fids, **{f"z{j + 1}": Z[:, j] for j in range(Z.shape[1])}})
    df.write_csv(path, separator="\t")


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("mi_cli")
    rng = np.random.default_rng(4)
    G, maf = _genotypes(rng, n=300, m=30)
    fids = [f"P{i}" for i in range(300)]
    _write_store(d / "c.geno", G, fids)
    _write_emb(d / "strong.tsv", fids, _embedding(rng, _score(G, maf, np.arange(3)), 0.95))
    (d / "keep.ids").write_text("".join(f"P{i}\tP{i}\n" for i in range(250)))
    return d


def test_cli_outputs(small_inputs):
    d = small_inputs
    out = d / "run"
    gimtool("mi", "--pheno", d / "strong.tsv", "--geno", d / "c", "--keep", d / "keep.ids", "--out", out,
            "--repeats", "2", "--genetic-encoder", "mlp", "--epochs", "4", "--patience", "2", "--seed", "1")
    mi = pl.read_csv(f"{out}.mi.tsv", separator="\t")
    from gimtool.conventions import MI_COLS, MI_CURVE_COLS

    assert tuple(mi.columns) == MI_COLS
    row = mi.row(0, named=True)
    assert row["NAME"] == "strong" and row["N_TRAIN"] + row["N_VAL"] == 250 and row["N_VAL"] == 75
    assert row["REPEATS"] == 2 and row["N_SNPS"] == 30 and row["N_DIMS"] == 3
    assert row["MI_VAL_SE"] >= 0 and row["MI_TRAIN"] <= milib.MAX_MI
    curves = pl.read_csv(f"{out}.curves.tsv", separator="\t", null_values="NA")
    assert tuple(curves.columns) == MI_CURVE_COLS
    assert sorted(curves["REPEAT"].unique().to_list()) == [1, 2]
    assert (d / "run.curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (d / "run.log").read_text()
    assert "250 matched" in log and "status: ok" in log


def test_cli_small_transformer_and_subsample(small_inputs, capsys):
    d = small_inputs
    code, err = _run_inproc(capsys, "mi", "--pheno", d / "strong.tsv", "--geno", d / "c.geno", "--out", d / "tr",
                            "--repeats", "1", "--genetic-dims", "8,16", "--snp-subsample", "20", "--epochs", "1",
                            "--batch-size", "32")
    assert code == 0, err
    row = pl.read_csv(d / "tr.mi.tsv", separator="\t", null_values="NA").row(0, named=True)
    assert row["N_SNPS"] == 20 and row["N_TRAIN"] + row["N_VAL"] == 300 and row["MI_VAL_SE"] is None


@pytest.mark.slow
def test_cohort_true_factors_beat_random(tmp_path):
    """On a simulated cohort, the true genetic factors carry more information than random vectors."""
    from gimtool.sim.cohort import preset, simulate_cohort

    coh = tmp_path / "coh"
    simulate_cohort(coh, preset("tiny", n_samples=1000, images=False, n_snps=300, split=(0.2, 0.1, 0.7)))
    gimtool("prep-geno", "--bfile", coh / "geno", "--out", coh / "qc")
    factors = pl.read_csv(coh / "truth" / "factors.tsv", separator="\t", schema_overrides={"FID": pl.Utf8, "IID": pl.Utf8})
    rng = np.random.default_rng(0)
    rand = factors.select("FID", "IID").with_columns(
        [pl.Series(f"R{j + 1}", rng.standard_normal(factors.height)) for j in range(factors.width - 2)])
    rand.write_csv(coh / "random.tsv", separator="\t")
    gimtool("mi", "--pheno", f"{coh / 'truth' / 'factors.tsv'},{coh / 'random.tsv'}", "--geno", coh / "qc.geno",
            "--keep", coh / "test.ids", "--out", tmp_path / "mi", "--repeats", "2", "--genetic-encoder", "mlp")
    mi = pl.read_csv(tmp_path / "mi.mi.tsv", separator="\t")
    print("\n", mi.select("NAME", "N_TRAIN", "N_VAL", "MI_VAL", "MI_VAL_SE", "MI_TRAIN", "MI_TRAIN_SE"))
    f, r = mi.row(0, named=True), mi.row(1, named=True)
    assert f["NAME"] == "factors" and r["NAME"] == "random"
    assert f["N_TRAIN"] + f["N_VAL"] == 700
    assert f["MI_VAL"] - 2 * f["MI_VAL_SE"] > r["MI_VAL"] + 2 * r["MI_VAL_SE"]
    assert abs(r["MI_VAL"]) < 0.02


# -- bad input --------------------------------------------------------------------------------


def test_cli_no_overlap(small_inputs, tmp_path, capsys):
    other = tmp_path / "other.tsv"
    _write_emb(other, [f"X{i}" for i in range(50)], np.zeros((50, 2)))
    code, err = _run_inproc(capsys, "mi", "--pheno", other, "--geno", small_inputs / "c.geno", "--out", tmp_path / "o")
    assert code != 0
    assert "other.tsv: no sample (FID IID) in common" in err


def test_cli_embedding_without_ids(small_inputs, tmp_path, capsys):
    bad = tmp_path / "noids.tsv"
    bad.write_text("z1\tz2\n0.1\t0.2\n")
    code, err = _run_inproc(capsys, "mi", "--pheno", bad, "--geno", small_inputs / "c.geno", "--out", tmp_path / "o")
    assert code != 0
    assert "noids.tsv: line 1: expected a header starting with 'FID IID'" in err


def test_cli_store_missing(small_inputs, tmp_path, capsys):
    code, err = _run_inproc(capsys, "mi", "--pheno", small_inputs / "strong.tsv", "--geno", tmp_path / "nowhere.geno", "--out",
                tmp_path / "o")
    assert code != 0
    assert "nowhere.geno: not a gimtool genotype store" in err
    assert not (tmp_path / "o.mi.tsv").exists()


def test_cli_device_and_remove(small_inputs, tmp_path, capsys):
    d = small_inputs
    if not torch.cuda.is_available():
        code, err = _run_inproc(capsys, "mi", "--pheno", d / "strong.tsv", "--geno", d / "c.geno", "--out", tmp_path / "o",
                                "--device", "cuda")
        assert code != 0 and "CUDA was asked for" in err
    (tmp_path / "rm.ids").write_text("P0 P0\nP1 P1\n")
    code, err = _run_inproc(capsys, "mi", "--pheno", d / "strong.tsv", "--geno", d / "c.geno", "--keep", d / "keep.ids",
                            "--remove", tmp_path / "rm.ids", "--out", tmp_path / "rm", "--repeats", "1",
                            "--genetic-encoder", "mlp", "--epochs", "1", "--weight-decay", "0.01")
    assert code == 0, err
    assert "weight decay 0.01" in (tmp_path / "rm.log").read_text()
    row = pl.read_csv(tmp_path / "rm.mi.tsv", separator="\t", null_values="NA").row(0, named=True)
    assert row["N_TRAIN"] + row["N_VAL"] == 248


def test_cli_too_few_people_and_bad_options(small_inputs, tmp_path, capsys):
    few = tmp_path / "few.tsv"
    _write_emb(few, [f"P{i}" for i in range(8)], np.random.default_rng(0).standard_normal((8, 2)))
    code, err = _run_inproc(capsys, "mi", "--pheno", few, "--geno", small_inputs / "c.geno", "--out", tmp_path / "o")
    assert code != 0 and "each part needs at least 4" in err
    code, err = _run_inproc(capsys, "mi", "--pheno", small_inputs / "strong.tsv", "--geno", small_inputs / "c.geno", "--out", tmp_path / "o",
                "--genetic-encoder", "cnn")
    assert code == 2 and "--genetic-encoder cnn: expected one of transformer, mlp" in err
    code, err = _run_inproc(capsys, "mi", "--pheno", small_inputs / "strong.tsv", "--geno", small_inputs / "c.geno", "--out", tmp_path / "o",
                "--pheno-name", "z9")
    assert code != 0 and "column(s) z9 not found" in err


def test_multiple_r2_matches_least_squares():
    rng = np.random.default_rng(8)
    G, maf = _genotypes(rng, n=400, m=25)
    G[rng.random(G.shape) < 0.02] = MISSING_INT8  # missing calls sit at the mean
    Z = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 4))  # rank 3 in 4 columns
    Z[:, 0] += 0.8 * _score(np.where(G < 0, 0, G), maf, np.array([2, 7]))
    rows = np.sort(rng.choice(400, 300, replace=False))
    geno = milib.GenotypeRows(G, np.arange(400), np.arange(25))
    from gimtool.train.freq import a1_frequencies

    af = a1_frequencies(G[rows])
    r2 = milib.multiple_r2(Z, geno, rows, af, chunk=64)  # several chunks
    from gimtool.stats.pca import standardize_genotypes

    X, _ = standardize_genotypes(G[rows], af)
    Zc = np.column_stack([np.ones(rows.size), Z[rows]])
    for j in range(25):
        fit = Zc @ np.linalg.lstsq(Zc, X[:, j], rcond=None)[0]
        x = X[:, j] - X[:, j].mean()
        assert r2[j] == pytest.approx(((fit - fit.mean()) ** 2).sum() / (x * x).sum(), rel=1e-6, abs=1e-9)
    assert set(np.argsort(-r2)[:2]) == {2, 7}


def test_select_snps_finds_signal_that_all_snps_hide():
    """A score on 3 of 1,500 SNPs, 500 people: a critic over every SNP memorizes before it
    generalizes (validation MI ~0), one over the 16 SNPs chosen on the estimator-train people
    finds the dependence, and the chosen SNPs include the causal ones."""
    rng = np.random.default_rng(9)
    G, maf = _genotypes(rng, n=500, m=1500)
    causal = np.array([100, 700, 1300])
    Z = _embedding(rng, _score(G, maf, causal), 0.8)
    cols = np.arange(1500)
    geno = milib.GenotypeRows(G, np.arange(500), cols)
    base = dict(encoder="mlp", model=milib.small_transformer_config(), max_epochs=30, patience=4, weight_decay=0.01)
    sel = milib.estimate_once(Z, geno, _positions(1500), cols, milib.MISettings(select_snps=16, **base), seed=1)
    full = milib.estimate_once(Z, geno, _positions(1500), cols, milib.MISettings(**base), seed=1)
    assert set(causal) <= set(sel.snps.tolist()) and sel.snps.size == 16 and full.snps is None
    assert sel.mi_val > 0.1 and sel.mi_val > full.mi_val + 0.05, (sel.mi_val, full.mi_val)


def test_cli_select_snps(small_inputs, capsys):
    d = small_inputs
    code, err = _run_inproc(capsys, "mi", "--pheno", d / "strong.tsv", "--geno", d / "c.geno", "--out", d / "sel",
                            "--repeats", "1", "--genetic-encoder", "mlp", "--select-snps", "5", "--epochs", "3")
    assert code == 0, err
    assert "the critic sees the 5 SNPs with the largest multiple R²" in (d / "sel.log").read_text()
    code, err = _run_inproc(capsys, "mi", "--pheno", d / "strong.tsv", "--geno", d / "c.geno", "--out", d / "sel2",
                            "--select-snps", "-1")
    assert code == 2 and "--select-snps" in err
