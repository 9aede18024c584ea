"""gim's voxel teacher (model.teacher): its fixed map is the critic's genetic side, it learns
polygenic scores that an image side carries and none where the image side carries none, and it
is configured as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gimtool.model import ModelConfig, get_method
from gimtool.model.genetic import standardized_dosage
from gimtool.model.teacher import GeneticTeacher, TeacherFit, fit_teacher
from gimtool.train.checkpoint import with_legacy_model_keys
from gimtool.train.config import load_config

CFG = ModelConfig(teacher_snps=32, teacher_epochs=4)


def cohort(n=900, L=200, n_scores=3, signal=True, seed=0):
    """Genotypes; three polygenic scores (5 causal SNPs each); a 24-d 'voxel PC' side that mixes
    the scores with noise at per-dimension SNR about 0.16 (or holds noise only)."""
    rng = np.random.default_rng(seed)
    af = rng.uniform(0.1, 0.5, L)
    G = rng.binomial(2, af, size=(n, L)).astype(np.int8)
    G[rng.random((n, L)) < 0.02] = -127  # missing calls
    Gs = standardized_dosage(torch.from_numpy(G), torch.tensor(af, dtype=torch.float32)).numpy()
    beta = np.zeros((L, n_scores))
    for k in range(n_scores):
        beta[rng.choice(L, 5, replace=False), k] = rng.normal(0, 1, 5)
    S = Gs @ beta
    S = (S - S.mean(0)) / S.std(0)
    X = rng.normal(0, 1, (n, 24))
    if signal:
        X += 0.4 * S @ rng.normal(0, 1, (n_scores, 24))
    return (torch.tensor(X, dtype=torch.float32), torch.from_numpy(G), torch.tensor(af, dtype=torch.float32), S)


def ridge_r2(V, S, tr, te, lam=1e-3):
    A = np.c_[V[tr], np.ones(len(tr))]
    B = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ S[tr])
    P = np.c_[V[te], np.ones(len(te))] @ B
    return 1 - ((S[te] - P) ** 2).sum(0) / ((S[te] - S[te].mean(0)) ** 2).sum(0)


def test_the_fixed_map_is_the_critics_genetic_side():
    X, G, af, _ = cohort(n=240)
    fit = TeacherFit(CFG, X.shape[1], G.shape[1], seed=3)
    for b in range(0, 240, 12):
        fit.step(X[b:b + 12], G[b:b + 12], af)
    idx, w, bias = fit.affine_map(32)
    assert idx.shape == (32,) and w.shape == (32, CFG.critic_dim)
    fit.critic.eval()
    with torch.no_grad():
        direct = fit.critic.y_head(fit.critic.y_norm(fit.encoder(G, mask=fit.critic.selector.mask(), af=af)))
    mapped = standardized_dosage(G[:, idx], af[idx]) @ w + bias
    torch.testing.assert_close(mapped, direct, rtol=1e-4, atol=1e-5)


def test_teacher_learns_the_scores_the_image_side_carries():
    X, G, af, S = cohort()
    tr, te = np.arange(700), np.arange(700, 900)
    teacher = GeneticTeacher(G.shape[1], CFG.teacher_snps, CFG.critic_dim)
    hist = fit_teacher(teacher, CFG, X[tr], G[tr], af, seed=1, x_val=X[te], geno_val=G[te])
    assert len(hist) == CFG.teacher_epochs and hist[-1]["val_mi"] > 0.05, hist
    V = teacher(G, af).numpy()
    # standardized over the training people
    np.testing.assert_allclose(V[tr].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(V[tr].std(0, ddof=1), 1, atol=1e-3)
    r2 = ridge_r2(V.astype(np.float64), S, tr, te)
    assert np.all(r2 > 0.5), r2  # held-out people: every score learned from the genotypes alone
    # the same fit on an image side with no genetic content finds no dependence in held-out people
    # (its v(g) is then an arbitrary projection of 32 SNPs, which may span part of a score by chance)
    Xn, Gn, afn, _ = cohort(signal=False)
    null = GeneticTeacher(Gn.shape[1], CFG.teacher_snps, CFG.critic_dim)
    hn = fit_teacher(null, CFG, Xn[tr], Gn[tr], afn, seed=1, x_val=Xn[te], geno_val=Gn[te])
    assert max(h["val_mi"] for h in hn) < 0.02, hn
    assert bool(teacher.active) and not bool(null.active)  # a teacher that does not hold out is not used
    gim = get_method("gim")
    mods = gim.build(ModelConfig(conv_channels=(8, 8, 8), repr_dim=16, teacher_snps=32), (8, 8, 8), Gn.shape[1])
    mods["teacher"].load_state_dict(null.state_dict())
    batch = {"image": torch.randn(4, 1, 8, 8, 8), "geno": Gn[:4], "chrom": torch.ones(Gn.shape[1], dtype=torch.long),
             "bp": torch.arange(Gn.shape[1]) * 1000, "cm": torch.zeros(Gn.shape[1]), "af": afn}
    assert "teacher" not in gim.loss(mods, batch, gim.stages(3)[-1])[1]
    mods["teacher"].load_state_dict(teacher.state_dict())
    assert "teacher" in gim.loss(mods, batch, gim.stages(3)[-1])[1]


def test_a_checkpoint_from_before_active_existed_loads_as_active():
    t = GeneticTeacher(50, 32, 4)
    t.set_map(torch.arange(32), torch.ones(32, 4), torch.zeros(4), active=False)
    state = {k: v for k, v in t.state_dict().items() if k != "active"}
    fresh = GeneticTeacher(50, 32, 4)
    fresh.load_state_dict(state)
    assert bool(fresh.active) and bool(fresh.fitted)


def test_teacher_refuses_unfit_use_and_other_arrays():
    t = GeneticTeacher(50, 32, 4)
    with pytest.raises(RuntimeError, match="never fit"):
        t(torch.zeros(2, 50, dtype=torch.int8), None)
    t.set_map(torch.arange(32), torch.ones(32, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="fit on 50 SNPs"):
        t(torch.zeros(2, 49, dtype=torch.int8), None)
    with pytest.raises(ValueError, match="does not fit"):
        t.set_map(torch.arange(31), torch.ones(31, 4), torch.zeros(4))
    small = GeneticTeacher(20, 32, 4)  # an array smaller than teacher_snps: every SNP
    assert small.weight.shape == (20, 4)


def test_teacher_config():
    gim = get_method("gim")
    mods = gim.build(ModelConfig(conv_channels=(8, 8, 8), repr_dim=16), (8, 8, 8), 100)
    assert {"teacher", "teacher_head"} <= set(mods) and not list(mods["teacher"].parameters())
    assert "teacher_head" in gim.stages(3)[-1].trainable
    assert "teacher" not in gim.build(ModelConfig(conv_channels=(8, 8, 8), teacher_weight=0.0), (8, 8, 8), 100)
    # the transformer's augmentation reads SNP subsets: no teacher with it (train logs it)
    tf = ModelConfig(conv_channels=(8, 8, 8), genetic_encoder="transformer", genetic_dims=(8, 8, 8), heads=2)
    assert not tf.uses_teacher and "teacher" not in gim.build(tf, (8, 8, 8), 100)
    for bad in ({"teacher_weight": -1.0}, {"teacher_weight": float("nan")}, {"teacher_pcs": 0},
                {"teacher_voxel_mm": 0.0}, {"teacher_epochs": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ModelConfig(**bad)
    # the paper's settings, and checkpoints written before the teacher existed, have none
    assert load_config(None, {"paper": True}).model.teacher_weight == 0.0
    assert with_legacy_model_keys({"model": {}})["model"]["teacher_weight"] == 0.0
