"""Losses against hand computations, the JSE MI estimate, and the cross-process gather."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from gimtool.model import ModelConfig
from gimtool.model import losses as L
from gimtool.model.critic import SeparableCritic
from gimtool.model.distributed import gather_rows


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_jse_hand_computed():
    T = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0], [3.0, 0.2, -0.5]])
    pos = (sp(-2.0) + sp(-1.0) + sp(0.5)) / 3
    neg = (sp(-1.0) + sp(0.5) + sp(0.0) + sp(-2.0) + sp(3.0) + sp(0.2)) / 6
    assert L.jse_loss(T).item() == pytest.approx(pos + neg, rel=1e-6)
    # eq. 2 written with D = sigmoid(T)
    D = torch.sigmoid(T)
    eq2 = -torch.log(D.diagonal()).mean() - torch.log(1 - D[~torch.eye(3, dtype=torch.bool)]).mean()
    assert L.jse_loss(T).item() == pytest.approx(eq2.item(), rel=1e-6)


def test_mi_estimate_bounds():
    assert L.jse_mi(L.jse_loss(torch.zeros(5, 5))).item() == pytest.approx(0.0, abs=1e-7)
    big = torch.full((4, 4), -30.0).fill_diagonal_(30.0)
    assert L.jse_mi(L.jse_loss(big)).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def _train_critic(x: torch.Tensor, y: torch.Tensor, steps: int = 150) -> float:
    torch.manual_seed(0)
    cfg = ModelConfig(critic_hidden=(32,), critic_dim=16)
    critic = SeparableCritic(cfg, x.shape[1], y.shape[1])
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    n, B = x.shape[0], 32
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)[:B]
        loss = L.jse_loss(critic(x[idx], y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # estimate on fresh pairs from the same distribution
        return float(L.jse_mi(L.jse_loss(critic(x[-B:], y[-B:]))))


@pytest.mark.slow
def test_mi_estimate_near_zero_without_dependence_and_positive_with_it():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 4, generator=g)
    noise = torch.randn(2000, 4, generator=g)
    assert abs(_train_critic(x, noise)) < 0.1
    assert _train_critic(x, x + 0.1 * noise) > 0.5


def test_info_nce_hand_computed():
    S = torch.tensor([[1.0, 0.2, -0.3], [0.1, 0.4, 0.9], [-1.0, 0.0, 2.0]])
    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))
    rows = np.mean([ce(S[i].tolist(), i) for i in range(3)])
    cols = np.mean([ce(S[:, i].tolist(), i) for i in range(3)])
    assert L.info_nce(S, symmetric=False).item() == pytest.approx(rows, rel=1e-6)
    assert L.info_nce(S).item() == pytest.approx((rows + cols) / 2, rel=1e-6)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    cos = np.array([[np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v) for v in b.numpy()] for u in a.numpy()])
    np.testing.assert_allclose(L.cosine_scores(a, b, 0.1).numpy(), cos / 0.1, rtol=1e-5)


def test_nt_xent_naive():
    torch.manual_seed(0)
    z1, z2, tau = torch.randn(3, 5), torch.randn(3, 5), 0.5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).numpy()
    total = 0.0
    for i in range(6):
        j = (i + 3) % 6
        den = sum(math.exp(z[i] @ z[k] / tau) for k in range(6) if k != i)
        total += -math.log(math.exp(z[i] @ z[j] / tau) / den)
    assert L.nt_xent(z1, z2, tau).item() == pytest.approx(total / 6, rel=1e-5)


def test_decorrelation_and_barlow():
    # orthogonal, centred columns: correlation matrix = I, so no decorrelation penalty
    m = torch.randn(16, 16, dtype=torch.float64)
    m[:, 0] = 1.0  # the other columns of Q are then orthogonal to the constant, i.e. centred
    q, _ = torch.linalg.qr(m)
    z = q[:, 1:5].float()
    assert L.decorrelation_loss(z).item() == pytest.approx(0.0, abs=1e-4)
    corr = torch.randn(16, 1).repeat(1, 3)  # three identical columns: off-diagonals all 1
    assert L.decorrelation_loss(corr).item() == pytest.approx(6 / 3, rel=1e-3)
    assert L.barlow_twins_loss(z, z, 5e-3).item() == pytest.approx(0.0, abs=1e-4)
    assert L.barlow_twins_loss(z, -z, 0.0).item() == pytest.approx(4 * 4.0, rel=1e-3)


def test_genotype_prediction_ignores_missing():
    logits = torch.randn(2, 3, 3)
    geno = torch.tensor([[0, 2, -127], [1, 1, 0]], dtype=torch.int8)
    lp = torch.log_softmax(logits, -1)
    expected = -(lp[0, 0, 0] + lp[0, 1, 2] + lp[1, 0, 1] + lp[1, 1, 1] + lp[1, 2, 0]) / 5
    assert L.genotype_prediction_loss(logits, geno).item() == pytest.approx(expected.item(), rel=1e-6)


def test_reconstruction_shape_error():
    with pytest.raises(ValueError, match="does not match"):
        L.reconstruction_mse(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 3))


def _gather_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    w = torch.randn(6, 6, requires_grad=True)
    x = torch.randn(8, 6)[rank * 4 : rank * 4 + 4]  # this process's share of a batch of 8
    z = gather_rows(x @ w)
    loss = L.jse_loss(z @ z.t() / 6) + (x @ w).square().mean()  # coupled + per-sample terms
    loss.backward()
    dist.all_reduce(w.grad)
    w.grad /= world  # what DDP does
    if rank == 0:
        torch.save(w.grad, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_gather_rows_gives_single_process_gradient(tmp_path):
    out = str(tmp_path / "grad.pt")
    mp.spawn(_gather_worker, args=(2, f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    torch.manual_seed(0)
    w = torch.randn(6, 6, requires_grad=True)
    x = torch.randn(8, 6)
    z = x @ w
    (L.jse_loss(z @ z.t() / 6) + z.square().mean()).backward()
    torch.testing.assert_close(torch.load(out, weights_only=True), w.grad, atol=1e-6, rtol=1e-5)
