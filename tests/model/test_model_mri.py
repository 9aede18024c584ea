"""MRI encoder/decoder shapes on odd grids, batch independence, augmentations."""

from __future__ import annotations

import pytest
import torch

from gimtool.model import ModelConfig
from gimtool.model.augment import random_shift, two_views
from gimtool.model.mri import MRIDecoder, MRIEncoder


def cfg(**kw) -> ModelConfig:
    base = dict(repr_dim=12, readout_dim=8, readout_heads=2, conv_channels=(4, 8, 8), norm_groups=2, flatten_grid=(2, 3, 2))
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("stem_stride", [1, 2])
@pytest.mark.parametrize("shape", [(23, 27, 23), (7, 8, 9), (16, 16, 16)])
def test_encoder_decoder_shapes(shape, stem_stride):
    c = cfg(stem_stride=stem_stride)
    enc = MRIEncoder(c, attentive=True)
    dec = MRIDecoder(c, enc.code_dim)
    x = torch.randn(2, 1, *shape)
    out = enc(x)
    assert out.z.shape == (2, 12) and out.readout.shape == (2, 8) and out.code().shape == (2, 20)
    assert dec(out.code(), shape).shape == (2, 1, *shape)
    plain = MRIEncoder(c, attentive=False)
    assert plain(x).readout is None and plain(x).code().shape == (2, 12)


def test_one_encoder_serves_crops_and_whole_volumes():
    enc = MRIEncoder(cfg())
    assert enc(torch.randn(1, 1, 16, 16, 16)).z.shape == enc(torch.randn(1, 1, 45, 54, 45)).z.shape


def test_flatten_grid_resolves_to_cells_of_flatten_mm_at_every_voxel_size():
    c = ModelConfig()  # flatten_mm = 32: the last maps as they are at 8 mm, the same cells at finer voxels
    assert c.resolved_flatten_grid((23, 28, 23), (8.0, 8.0, 8.0)) == (6, 7, 6) == c.last_map_shape((23, 28, 23))
    assert c.resolved_flatten_grid((92, 112, 92), (2.0, 2.0, 2.0)) == (6, 7, 6)
    assert c.resolved_flatten_grid((182, 218, 182), (1.0, 1.0, 1.0)) == (6, 7, 6)
    assert c.resolved_flatten_grid((160, 160, 160), (1.0, 1.0, 1.0)) == (5, 5, 5)  # the paper's crop
    assert c.resolved_flatten_grid((20, 20, 20), (8.0, 8.0, 8.0)) == (5, 5, 5)  # a 160 mm crop at 8 mm
    # never finer than the last maps (no upsampling): 8 voxels of 8 mm are 2 map cells, not ceil(64 / 16) = 4
    assert c.replace(flatten_mm=16.0).resolved_flatten_grid((8, 10, 8), (8.0, 8.0, 8.0)) == (2, 3, 2)
    assert c.replace(stem_stride=2).last_map_shape((182, 218, 182)) == (23, 28, 23)
    # anisotropic voxels: cells of the same millimetres on each axis
    assert c.resolved_flatten_grid((96, 48, 96), (2.0, 4.0, 2.0)) == (6, 6, 6)
    assert c.replace(flatten_mm=0.0, flatten_grid=(3, 2, 1)).resolved_flatten_grid((92, 112, 92), (2.0,) * 3) == (3, 2, 1)
    with pytest.raises(ValueError, match="flatten_mm"):
        ModelConfig(flatten_mm=-1.0)


def test_samples_are_independent_of_the_batch():
    # GroupNorm, not BatchNorm: a person's z must not depend on who shares the batch (DDP == one process)
    torch.manual_seed(0)
    enc = MRIEncoder(cfg())
    x = torch.randn(4, 1, 12, 13, 11)
    torch.testing.assert_close(enc(x).z[:2], enc(x[:2]).z, atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())


def test_encoder_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        MRIEncoder(cfg())(torch.zeros(2, 16, 16, 16))


def test_augmentations():
    x = torch.arange(2 * 10 * 10 * 10, dtype=torch.float32).view(2, 1, 10, 10, 10)
    y = random_shift(x, 0.2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    # a pure translation: every non-zero voxel of y exists in x, and zeros fill the rest
    assert set(y[y != 0].tolist()) <= set(x.flatten().tolist())
    a = two_views(x, cfg(), torch.Generator().manual_seed(3))
    b = two_views(x, cfg(), torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1])


def test_config_validation_and_roundtrip():
    c = ModelConfig()
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown key"):
        ModelConfig.from_dict({"windw": 3})
    with pytest.raises(ValueError, match="window = 7"):
        ModelConfig(window=7)
    with pytest.raises(ValueError, match="genetic_encoder"):
        ModelConfig(genetic_encoder="cnn")


def test_genetic_subset():
    from gimtool.model.augment import genetic_subset

    g = torch.Generator().manual_seed(0)
    draws = [genetic_subset(10_000, g) for _ in range(200)]
    assert all(len(d) == 987 and bool((d[1:] > d[:-1]).all()) and int(d.max()) < 10_000 for d in draws)
    crops = [d for d in draws if int(d[-1] - d[0]) == 986]
    assert 20 < len(crops) < 70  # p = 0.2 of crops
    even = [d for d in draws if int(d[-1] - d[0]) != 986]
    assert all(int((d[1:] - d[:-1]).max()) <= 11 for d in even)  # spread over the whole array
    assert genetic_subset(5, g).tolist() in ([0], [1], [2], [3], [4])


def test_seeded_views_do_not_depend_on_the_batch():
    x = torch.randn(3, 1, 9, 10, 11)
    seeds = torch.tensor([11, 22, 33])
    a = two_views(x, cfg(), seeds=seeds)
    b = two_views(x[1:], cfg(), seeds=seeds[1:])
    assert torch.equal(a[0][1:], b[0]) and torch.equal(a[1][1:], b[1])
    assert not torch.equal(a[0], a[1])
    with pytest.raises(ValueError, match=r"seeds must be \(3,\)"):
        two_views(x, cfg(), seeds=seeds[:2])
