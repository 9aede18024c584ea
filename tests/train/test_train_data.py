"""Training data: pairing the stores, crops, genetic augmentation, keyed batches.

Also home of the tiny-store builder the other train/embed tests import.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from gimtool.io.genostore import GenoStore, GenoStoreWriter
from gimtool.io.imagestore import ImageStore, create_store, finish_store
from gimtool.train.config import TrainConfig, crop_shape
from gimtool.train.data import (Collate, KeyedBatches, PairDataset, draw_snp_spec, make_loader, pair_samples,
                                snp_subset)


def make_image_store(path, ids: list[tuple[str, str]], shape=(8, 10, 8), voxel=4.0, seed=0, origin=(-16.0, -20.0, -16.0)):
    """A store of smooth random volumes; a person's volume depends on a per-person factor so
    models have something to learn."""
    rng = np.random.default_rng(seed)
    man = pl.DataFrame({"FID": [f for f, _ in ids], "IID": [i for _, i in ids], "SOURCE": [f"{i}.nii.gz" for _, i in ids]})
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = origin
    tmp, arr = create_store(path, man, shape, affine, (voxel,) * 3)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    for k in range(len(ids)):
        a, b = rng.normal(size=2)
        vol = np.exp(-(xx**2 + yy**2 + zz**2) * (1 + 0.3 * a)) + 0.2 * b * zz + 0.05 * rng.normal(size=shape)
        arr[k] = vol.astype(np.float16)
    finish_store(tmp, path, arr)
    return ImageStore(path)


def make_geno_store(path, ids: list[tuple[str, str]], n_snps=200, seed=1):
    rng = np.random.default_rng(seed)
    chrom = np.repeat([1, 2], [n_snps // 2, n_snps - n_snps // 2])
    bp = np.concatenate([np.sort(rng.choice(10**7, n_snps // 2, replace=False)), np.sort(rng.choice(10**7, n_snps - n_snps // 2, replace=False))]) + 1
    snps = pl.DataFrame({"CHR": chrom, "SNP": [f"rs{k}" for k in range(n_snps)], "CM": bp / 1e6, "BP": bp,
                         "A1": ["A"] * n_snps, "A2": ["G"] * n_snps})
    samples = pl.DataFrame({"FID": [f for f, _ in ids], "IID": [i for _, i in ids]})
    G = rng.binomial(2, 0.3, size=(len(ids), n_snps)).astype(np.int8)
    G[rng.random(G.shape) < 0.01] = -127
    with GenoStoreWriter(path, samples, snps) as w:
        w.write(G[:, : n_snps // 2])
        w.write(G[:, n_snps // 2:])
    return GenoStore(path)


def ids_of(n, start=0):
    return [(f"F{k}", f"I{k}") for k in range(start, start + n)]


def write_ids(path, ids):
    path.write_text("".join(f"{f} {i}\n" for f, i in ids))
    return path


@pytest.fixture
def stores(tmp_path):
    img = make_image_store(tmp_path / "img", ids_of(24))
    # genotypes for 22 of them (F0, F1 missing) plus 3 people without an image
    geno = make_geno_store(tmp_path / "geno", ids_of(22, 2) + ids_of(3, 100))
    return img, geno


def test_pairing_matches_ids_and_logs_drops(stores):
    img, geno = stores

    class Log:
        lines = []

        def info(self, m):
            self.lines.append(m)

    keep = pl.DataFrame({"FID": ["F0", "F5", "F7", "F100", "Fx"], "IID": ["I0", "I5", "I7", "I100", "Ix"]})
    log = Log()
    p = pair_samples(img, geno, keep, "training set", log)
    assert p.ids.to_dicts() == [{"FID": "F5", "IID": "I5"}, {"FID": "F7", "IID": "I7"}]
    # image row k and geno row of the same person
    for k in range(2):
        assert tuple(img.samples.row(int(p.image_index[k]))) == tuple(geno.samples.row(int(p.geno_index[k])))
    assert any("5 IDs listed, 3 have an image, 2 dropped" in m for m in log.lines)
    assert any("2 people have an image and genotypes, 1 dropped" in m for m in log.lines)


def test_crop_shape_scales_with_voxel_size():
    assert crop_shape(TrainConfig(), (182, 218, 182), (1, 1, 1)) == (182, 218, 182)  # default 0: whole volumes
    cfg = TrainConfig(crop_mm=160.0)
    assert crop_shape(cfg, (182, 218, 182), (1, 1, 1)) == (160, 160, 160)
    assert crop_shape(cfg, (91, 109, 91), (2, 2, 2)) == (80, 80, 80)
    assert crop_shape(cfg, (46, 55, 46), (4, 4, 4)) == (40, 40, 40)
    assert crop_shape(cfg, (8, 10, 8), (4, 4, 4)) == (8, 10, 8)  # clipped to the grid


def test_snp_augmentation_subsets():
    n = 1000
    rng = np.random.default_rng(0)
    kinds = []
    for _ in range(400):
        spec = draw_snp_spec(rng, n, crop_p=0.2, fraction=0.1)
        idx = snp_subset(spec, n)
        kinds.append(spec[0])
        assert idx.size == 100 and idx.min() >= 0 and idx.max() < n
        assert np.all(np.diff(idx) > 0)
        if spec[0] == "crop":
            assert np.all(np.diff(idx) == 1)
        else:  # even: every 10th SNP from a random phase
            assert set(np.diff(idx).tolist()) <= {10}
            assert idx[0] < 10
    share = kinds.count("crop") / len(kinds)
    assert 0.13 < share < 0.27


def _batches(ds, sampler, collate, workers, epoch):
    sampler.set_epoch(epoch)
    return [b for b in make_loader(ds, sampler, collate, workers)]


def test_keyed_batches_repeatable_and_sharded(stores):
    img, geno = stores
    p = pair_samples(img, geno, None, "all")
    ds = PairDataset(img.path, geno.path, p, (4, 6, 4), n_views=2, with_geno=True)
    collate = Collate(geno.positions(), 2)
    kw = dict(n=len(ds), batch_size=4, seed=3, train=True, augment=True, n_snps=geno.n_snps, fraction=0.25)
    one = _batches(ds, KeyedBatches(**kw), collate, 0, epoch=2)
    assert len(one) == 22 // 4
    b = one[0]
    assert b["image"].shape == (4, 1, 4, 6, 4) and b["image"].dtype == torch.float32
    assert len(b["views"]) == 2 and not torch.equal(b["views"][0], b["views"][1])
    assert b["aug_seed"].shape == (4,) and b["aug_seed"].dtype == torch.int64 and len(set(b["aug_seed"].tolist())) == 4
    assert b["geno"].shape == (4, 50) and b["geno"].dtype == torch.int8
    assert b["chrom"].shape == b["bp"].shape == b["cm"].shape == (50,)
    # same epoch, workers or not: identical; other epoch: different
    again = _batches(ds, KeyedBatches(**kw), collate, 2, epoch=2)
    for x, y in zip(one, again):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["geno"], y["geno"]) and torch.equal(x["bp"], y["bp"])
        assert torch.equal(x["aug_seed"], y["aug_seed"])
    other = _batches(ds, KeyedBatches(**kw), collate, 0, epoch=3)
    assert not torch.equal(one[0]["image"], other[0]["image"])
    # two ranks together see the global batches of one process
    r0 = _batches(ds, KeyedBatches(**kw, rank=0, world=2), collate, 0, epoch=2)
    r1 = _batches(ds, KeyedBatches(**kw, rank=1, world=2), collate, 0, epoch=2)
    for g, a, c in zip(one, r0, r1):
        assert torch.equal(g["image"], torch.cat([a["image"], c["image"]]))
        assert torch.equal(g["geno"], torch.cat([a["geno"], c["geno"]]))
        assert torch.equal(g["aug_seed"], torch.cat([a["aug_seed"], c["aug_seed"]]))
        assert torch.equal(g["bp"], a["bp"]) and torch.equal(a["bp"], c["bp"])


def test_validation_centre_crop_all_snps(stores):
    img, geno = stores
    p = pair_samples(img, geno, None, "all")
    ds = PairDataset(img.path, geno.path, p, (4, 6, 4), n_views=1, with_geno=True)
    s = KeyedBatches(len(ds), 5, seed=0, train=False)
    batches = _batches(ds, s, Collate(geno.positions(), 1), 0, epoch=0)
    assert sum(b["image"].shape[0] for b in batches) == 22  # every person, last batch partial
    i0 = int(p.image_index[0])
    assert np.array_equal(batches[0]["image"][0, 0].numpy(), img.volume(i0)[2:6, 2:8, 2:6])
    assert batches[0]["geno"].shape == (5, 200)
    assert np.array_equal(batches[0]["geno"][0].numpy(), geno.genotypes[int(p.geno_index[0])])
