"""The threaded training-data path (gimtool.train.data.ThreadedLoader): the batches of the
DataLoader path, in every delivery mode; errors reach the caller; stopping early leaves no
thread behind."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from gimtool.train.data import Collate, KeyedBatches, PairDataset, ThreadedLoader, make_loader, pair_samples
from tests.train.test_train_data import ids_of, make_geno_store, make_image_store


@pytest.fixture
def setup(tmp_path):
    img = make_image_store(tmp_path / "img", ids_of(20))
    geno = make_geno_store(tmp_path / "geno", ids_of(20))
    p = pair_samples(img, geno, None, "all")
    ds = PairDataset(img.path, geno.path, p, (4, 6, 4), n_views=2, with_geno=True)
    # opened here, so that forked DataLoader workers inherit them: a child that reads the stores'
    # tables with polars after the parent used polars' thread pool can hang
    ds.stores()
    kw = dict(n=len(ds), batch_size=4, seed=5, train=True, augment=True, n_snps=geno.n_snps, fraction=0.25)
    return img, geno, ds, kw


def _all(loader):
    return list(loader)


def test_every_mode_gives_the_dataloader_batches(setup):
    img, geno, ds, kw = setup
    collate = Collate(geno.positions(), 2)
    ref = _all(make_loader(ds, KeyedBatches(**kw), collate, 2))  # worker processes
    modes = {
        "default (threads, float32)": make_loader(ds, KeyedBatches(**kw), collate, 0),
        "one thread, no prefetch": ThreadedLoader(ds, KeyedBatches(**kw), collate, threads=1, prefetch=1),
        "device cpu (the device path)": ThreadedLoader(ds, KeyedBatches(**kw), collate, device=torch.device("cpu")),
    }
    for name, loader in modes.items():
        got = _all(loader)
        assert len(got) == len(ref) == len(loader), name
        for a, b in zip(got, ref):
            assert a["image"].dtype == torch.float32 and a["image"].shape == b["image"].shape, name
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["views"][1], b["views"][1]), name
            assert torch.equal(a["geno"], b["geno"]) and torch.equal(a["bp"], b["bp"]), name
            assert torch.equal(a["aug_seed"], b["aug_seed"]), name
    # batches of the device path own their images (the host buffers are reused)
    got = _all(ThreadedLoader(ds, KeyedBatches(**kw), collate, device=torch.device("cpu")))
    assert len({b["image"].data_ptr() for b in got}) == len(got)


def test_stored_dtype_delivery(setup):
    """keep_dtype: the stored float16 values themselves, as a CUDA run sends them to the device."""
    img, geno, ds, kw = setup
    collate = Collate(geno.positions(), 2)
    ref = _all(make_loader(ds, KeyedBatches(**kw), collate, 0))
    for a, b in zip(ThreadedLoader(ds, KeyedBatches(**kw), collate, keep_dtype=True, prefetch=1), ref):
        assert a["image"].dtype == torch.float16
        assert torch.equal(a["image"].float(), b["image"])


def test_validation_shares_and_empty_rank(setup):
    img, geno, ds, _ = setup
    collate = Collate(geno.positions(), 2)
    # 20 people, 2 ranks: batches of 1 leave rank 1 nothing; batches of 3 give rank 0 two people, and one of the last two
    s = KeyedBatches(len(ds), 1, seed=0, train=False, rank=1, world=2)
    got = _all(make_loader(ds, s, collate, 0))
    assert len(got) == len(ds) and all(b is None for b in got)
    s0 = KeyedBatches(len(ds), 3, seed=0, train=False, rank=0, world=2)
    sizes = [b["image"].shape[0] for b in make_loader(ds, s0, collate, 0)]
    assert sizes == [2] * 6 + [1]  # array_split of each batch of 3, the last batch of 2


def test_errors_reach_the_caller_and_early_stop_ends_the_thread(setup):
    img, geno, ds, kw = setup
    collate = Collate(geno.positions(), 2)

    class Bad:
        def __len__(self):
            return 3

        def __iter__(self):
            yield [(0, [1, 0, 0, 13], ("all",))]
            yield [(10_000, [1, 0, 1, 13], ("all",))]  # no such pair

    with pytest.raises(IndexError):
        _all(ThreadedLoader(ds, Bad(), collate))
    before = {t for t in threading.enumerate() if t.name == "gimtool-batches"}
    it = iter(ThreadedLoader(ds, KeyedBatches(**kw), collate, prefetch=1))
    next(it)
    it.close()
    left = [t for t in threading.enumerate() if t.name == "gimtool-batches" and t not in before]
    for t in left:
        t.join(5)
    assert not any(t.is_alive() for t in left)
