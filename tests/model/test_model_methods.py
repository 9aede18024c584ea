"""Every training method: builds, its loss is finite and falls over a few steps, it embeds."""

from __future__ import annotations

import pytest
import torch

from gimtool.model import METHODS, LossModule, ModelConfig, Stage, get_method

SHAPE = (16, 16, 16)
N_SNPS = 300


def tiny_cfg() -> ModelConfig:
    return ModelConfig(
        repr_dim=16, readout_dim=16, readout_heads=2, conv_channels=(4, 8, 8), norm_groups=2,
        flatten_grid=(2, 2, 2), genetic_dims=(8, 8, 16), heads=2, window=4, pool_rate=3, pos_dim=16,
        pos_proj_dim=4, rbf_centres=4, genetic_out_dim=16, mlp_hidden=16, critic_hidden=(32,),
        critic_dim=16, projector_dims=(32, 16), mlp_ratio=2,
    )


def tiny_batch(B: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    chrom = torch.tensor([1] * 170 + [2] * 130)
    bp = torch.cat([torch.arange(170) * 5000 + 10_000, torch.arange(130) * 7000 + 50_000])
    cm = bp.double() / 1e6
    geno = torch.randint(0, 3, (B, N_SNPS), generator=g).to(torch.int8)
    geno[0, :5] = -127
    # Images that depend on the genotypes, so the trans-modal losses have something to learn.
    image = torch.randn(B, 1, *SHAPE, generator=g) * 0.3
    image[:, 0, :8] += geno[:, :8].float().view(B, 8, 1, 1)
    return {"image": image, "geno": geno, "chrom": chrom, "bp": bp, "cm": cm}


def built(method, cfg: ModelConfig):
    """The method's modules for the tiny batch; gim's voxel teacher (fit from the stores before
    training in `train`, tests/model/test_teacher.py) set to a fixed random map."""
    modules = method.build(cfg, SHAPE, N_SNPS)
    if "teacher" in modules:
        t = modules["teacher"]
        t.set_map(torch.arange(t.weight.shape[0]), torch.randn(t.weight.shape), torch.zeros(t.dim))
    return modules


def test_unknown_method_lists_names():
    with pytest.raises(ValueError, match="unknown method 'nope'.*gim.*random-init"):
        get_method("nope")


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.trains])
def test_method_loss_falls(name):
    torch.manual_seed(0)
    method = get_method(name)
    modules = built(method, tiny_cfg())
    assert "encoder" in modules
    stage = method.stages(3)[-1]
    assert set(stage.trainable) <= set(modules.keys())
    params = [p for n in stage.trainable for p in modules[n].parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    batch = tiny_batch()
    # A fixed generator for the two-view augmentations keeps the comparison of losses fair.
    losses = []
    for step in range(8):
        torch.manual_seed(1)
        loss, metrics = LossModule(method, modules)(batch, stage)
        assert torch.isfinite(loss)
        assert all(isinstance(v, float) for v in metrics.values()) and "loss" in metrics
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    z = method.embed(modules, batch["image"])
    assert z.shape == (8, 16)


def test_random_init_does_not_train():
    m = get_method("random-init")
    assert not m.trains and m.stages(5) == []
    modules = m.build(tiny_cfg(), SHAPE, 0)
    assert m.embed(modules, torch.zeros(2, 1, *SHAPE)).shape == (2, 16)


def test_gim_stages():
    st = get_method("gim").stages({"frozen-genetic": 2, "genetic-augment": 1, "co-train": 1})
    assert [s.name for s in st] == ["frozen-genetic", "genetic-augment", "co-train"]
    assert [s.epochs for s in st] == [2, 1, 1]
    assert "genetic" not in st[0].trainable and "genetic" not in st[1].trainable and "genetic" in st[2].trainable
    assert [s.genetic_augment for s in st] == [False, True, True]
    assert sum(s.epochs for s in get_method("gim").stages(7)) == 7
    assert [s.epochs for s in get_method("gim").stages({})] == [200, 100, 50]
    with pytest.raises(ValueError, match="gim stages are"):
        get_method("gim").stages({"warmup": 3})
    assert get_method("autoencoder").stages(4) == [Stage("train", 4, ("encoder", "decoder"))]


def test_gim_frozen_stage_leaves_genetic_encoder_without_gradients():
    torch.manual_seed(0)
    m = get_method("gim")
    modules = built(m, tiny_cfg())
    first, _, last = m.stages(3)
    loss, metrics = m.loss(modules, tiny_batch(), first)
    loss.backward()
    assert all(p.grad is None for p in modules["genetic"].parameters())
    assert all(p.grad is not None for p in modules["critic"].parameters())
    assert set(metrics) == {"loss", "jse", "recon", "mi", "teacher"}
    cfg = tiny_cfg()  # eq. 5: JSE + lambda x reconstruction, plus the voxel teacher's term
    assert metrics["loss"] == pytest.approx(metrics["jse"] + cfg.lambda_recon * metrics["recon"]
                                            + cfg.teacher_weight * metrics["teacher"], rel=1e-5)
    assert all(p.grad is not None for p in modules["teacher_head"].parameters())
    modules.zero_grad()
    m.loss(modules, tiny_batch(), last)[0].backward()
    assert all(p.grad is not None for p in modules["genetic"].parameters())


def test_gim_linear_default_takes_a_snp_mask_and_the_training_frequencies():
    torch.manual_seed(0)
    m = get_method("gim")
    modules = built(m, tiny_cfg())
    assert type(modules["genetic"]).__name__ == "MLPGeneticEncoder" and len(modules["genetic"].net) == 1  # linear
    batch = tiny_batch(4)
    mask = torch.zeros(N_SNPS, dtype=torch.bool)
    mask[::3] = True
    stage = m.stages(3)[-1]
    af = torch.full((N_SNPS,), 0.3)
    assert torch.isfinite(m.loss(modules, dict(batch, snp_mask=mask, af=af), stage)[0])
    enc = modules["genetic"]
    args = (batch["geno"], batch["chrom"], batch["bp"], batch["cm"])
    a, b, c = enc(*args, mask, af), enc(*args, None, af), enc(*args, mask, af * 2)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    # masked SNPs do not count: changing their genotypes changes nothing
    g2 = batch["geno"].clone()
    g2[:, ~mask] = 2 - g2[:, ~mask].clamp(min=0)
    torch.testing.assert_close(enc(g2, *args[1:], mask, af), a)


def test_gim_transformer_accepts_a_snp_subset_and_bf16_autocast():
    torch.manual_seed(0)
    m = get_method("gim")
    modules = m.build(tiny_cfg().replace(genetic_encoder="transformer"), SHAPE, N_SNPS)
    batch = tiny_batch(4)
    idx = torch.arange(10, 250, 3)  # an even down-sampling, as the genetic augmentation draws
    sub = dict(batch, geno=batch["geno"][:, idx], chrom=batch["chrom"][idx], bp=batch["bp"][idx], cm=batch["cm"][idx])
    stage = m.stages(3)[-1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = m.loss(modules, sub, stage)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in modules.parameters() if p.grad is not None)


def test_gim_critic_queue_trains_the_critic_on_past_pairs_and_not_the_encoder():
    torch.manual_seed(0)
    m = get_method("gim")
    modules = built(m, tiny_cfg().replace(critic_queue=2, critic_hidden=(), teacher_weight=0.0))
    stage = m.stages(3)[-1]
    bank = modules["critic"].bank
    for step in range(4):
        modules.zero_grad()
        loss, metrics = m.loss(modules, tiny_batch(seed=step), stage)
        assert len(bank) == min(step + 1, 2) and "jse_bank" in metrics
        assert metrics["loss"] == pytest.approx(metrics["jse"] + tiny_cfg().lambda_recon * metrics["recon"] + metrics["jse_bank"], rel=1e-5)
    # the bank term alone: gradient for the critic and the genetic encoder, none for the image encoder
    modules.zero_grad()
    b9 = tiny_batch(seed=9)
    bank_loss = m._bank_loss(modules, b9, stage, modules["encoder"](b9["image"]).z, m._genetic(modules, b9, stage))
    bank_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in modules["encoder"].parameters())
    assert any(p.grad is not None and p.grad.any() for p in modules["critic"].parameters())
    assert any(p.grad is not None and p.grad.any() for p in modules["genetic"].parameters())
    stats = modules["critic"].x_norm.count.clone()
    b10 = tiny_batch(seed=10)
    m._bank_loss(modules, b10, stage, modules["encoder"](b10["image"]).z, m._genetic(modules, b10, stage))
    assert modules["critic"].x_norm.count == stats  # the bank's pairs do not count twice in the running statistics
    # validation (eval mode) leaves the bank alone
    modules.eval()
    assert "jse_bank" not in m.loss(modules, tiny_batch(seed=11), stage)[1] and len(bank) == 2


def test_gim_jse_gradient_ramps_up_linearly_after_the_warmup():
    from gimtool.model.methods import GIMMethod

    cfg = tiny_cfg().replace(critic_warmup_steps=2, critic_ramp_steps=3)
    seen = []
    for step in range(7):
        z = torch.randn(4, 5, requires_grad=True)
        zc = GIMMethod._jse_gradient_scaled(z, step, cfg)
        assert torch.equal(zc, z)  # the critic sees the same values
        if zc.requires_grad:
            (zc * 2.0).sum().backward()
            assert torch.equal(z.grad, z.grad[0, 0].expand_as(z.grad))  # one scale for every element
            seen.append(round(float(z.grad[0, 0]) / 2.0, 6))
        else:
            seen.append(0.0)
    assert seen == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    # no ramp: full gradient from the end of the warm-up
    z = torch.randn(3, 2, requires_grad=True)
    assert GIMMethod._jse_gradient_scaled(z, 2, cfg.replace(critic_ramp_steps=0)) is z
    # jse_encoder_scale: the ramp ends there, and the gradient stays at that fraction
    half = cfg.replace(jse_encoder_scale=0.5)
    got = []
    for step in (2, 4, 5, 50):
        z = torch.randn(2, 2, requires_grad=True)
        GIMMethod._jse_gradient_scaled(z, step, half).sum().backward()
        got.append(round(float(z.grad[0, 0]), 6))
    assert got == [0.125, 0.375, 0.5, 0.5]
    assert not GIMMethod._jse_gradient_scaled(z, 50, cfg.replace(jse_encoder_scale=0.0)).requires_grad
    with pytest.raises(ValueError, match="critic_ramp_steps"):
        tiny_cfg().replace(critic_ramp_steps=-1)
    with pytest.raises(ValueError, match="jse_encoder_scale"):
        tiny_cfg().replace(jse_encoder_scale=1.5)


def test_gim_critic_warmup_keeps_the_jse_out_of_the_image_encoder_until_it_ends():
    torch.manual_seed(0)
    m = get_method("gim")
    modules = built(m, tiny_cfg().replace(critic_warmup_steps=2, lambda_recon=0.0, teacher_weight=0.0))
    stage = m.stages(3)[-1]
    grads = []
    for step in range(3):  # the critic's step count is 0, 1 (warm-up), then 2 (JSE into the encoder)
        modules.zero_grad()
        loss, _ = m.loss(modules, tiny_batch(seed=step), stage)
        loss.backward()
        grads.append(any(p.grad is not None and p.grad.any() for p in modules["encoder"].parameters()))
        assert any(p.grad is not None and p.grad.any() for p in modules["critic"].parameters())  # the critic learns throughout
    assert grads == [False, False, True]
    assert modules["critic"].steps == 3
