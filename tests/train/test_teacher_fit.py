"""Fitting gim's voxel teacher from the stores (train.teacher): block means, the PCA of the
training people only, and a gim run with the teacher that is killed and resumed equals one that
was not (the teacher is fit once and restored from last.pt, never refit)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from gimtool.model.methods import METHODS
from gimtool.train import checkpoint as ckpt_mod
from gimtool.train.config import TrainConfig
from gimtool.train.loop import prepare_data, train
from gimtool.train.teacher import downsample, pool_factor, voxel_pcs
from tests.train.test_train_methods import SMALL_MODEL, cohort  # noqa: F401 (fixture)


def test_downsample_takes_block_means_and_partial_edge_blocks():
    vol = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    out = downsample(vol, (2, 2, 2))
    assert out.shape == (3, 2, 2)
    assert out[0, 0, 0] == pytest.approx(vol[:2, :2, :2].mean())
    assert out[2, 1, 1] == pytest.approx(vol[4:, 2:, 2:].mean())  # a 1 x 2 x 1 edge block: its own voxels only
    assert downsample(vol, (1, 1, 1)) is not None and np.array_equal(downsample(vol, (1, 1, 1)), vol)
    assert pool_factor((1.0, 1.0, 1.2), 8.0) == (8, 8, 7) and pool_factor((8.0, 8.0, 8.0), 8.0) == (1, 1, 1)
    assert pool_factor((10.0, 10.0, 10.0), 8.0) == (1, 1, 1)


class FakeStore:
    voxel_size = (2.0, 2.0, 2.0)

    def __init__(self, vols):
        self.vols = vols

    def volume(self, i):
        return self.vols[i]


def test_voxel_pcs_are_the_training_peoples_pcs_and_ignore_everyone_else():
    rng = np.random.default_rng(0)
    vols = rng.normal(size=(60, 6, 6, 4)).astype(np.float32)
    vols[:, :3] += rng.normal(size=(60, 1, 1, 1)) * 3  # a strong component
    train_rows, other = np.arange(0, 40), np.arange(40, 60)
    tr, ot = voxel_pcs(FakeStore(vols), train_rows, [other], n_pcs=5, mm=4.0, max_people=1000, seed=1)
    X = np.stack([downsample(v, (2, 2, 2)).ravel() for v in vols]).astype(np.float64)
    mu = X[train_rows].mean(0)
    _, _, vt = np.linalg.svd(X[train_rows] - mu, full_matrices=False)
    ref = (X - mu) @ vt[:5].T
    for got, want in ((tr, ref[train_rows]), (ot, ref[other])):
        signs = np.sign((got * want).sum(0))  # a PC's sign is arbitrary
        np.testing.assert_allclose(got * signs, want, rtol=1e-4, atol=1e-4)
    # other people's volumes never enter the PCA
    changed = vols.copy()
    changed[other] *= 5
    tr2, _ = voxel_pcs(FakeStore(changed), train_rows, [other], n_pcs=5, mm=4.0, max_people=1000, seed=1)
    np.testing.assert_allclose(tr2, tr, rtol=1e-5, atol=1e-5)
    # at most max_people of the training people fit it; everyone is still scored
    sub, _ = voxel_pcs(FakeStore(vols), train_rows, [other], n_pcs=5, mm=4.0, max_people=25, seed=1)
    assert sub.shape == (40, 5) and np.isfinite(sub).all()


def test_gim_with_the_teacher_resumes_exactly(cohort, tmp_path):  # noqa: F811
    torch.set_num_threads(1)
    d, ids = cohort
    method = METHODS["gim"]
    cfg = TrainConfig.from_dict({"method": "gim", "epochs": 3, "schedule": "cotrain", "batch_size": 8, "lr": 1e-3,
                                 "crop_mm": 1000.0, "seed": 2, "model": dict(SMALL_MODEL, teacher_snps=16, teacher_epochs=2)})
    tr = pl.DataFrame({"FID": [f for f, _ in ids[:16]], "IID": [i for _, i in ids[:16]]})
    va = pl.DataFrame({"FID": [f for f, _ in ids[16:]], "IID": [i for _, i in ids[16:]]})
    data = prepare_data(cfg, method, d / "img", d / "geno", tr, va)
    train(cfg, method, data, tmp_path / "full", progress=False)

    class Killed(Exception):
        pass

    def kill(epoch):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, method, data, tmp_path / "part", on_epoch_end=kill, progress=False)
    torch.rand(50)
    train(cfg, method, data, tmp_path / "part", resume=True, progress=False)
    a = ckpt_mod.load_checkpoint(tmp_path / "full" / "model.pt")["modules"]
    b = ckpt_mod.load_checkpoint(tmp_path / "part" / "model.pt")["modules"]
    assert bool(a["teacher.fitted"]) and a["teacher.weight"].abs().sum() > 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)
    h = pl.read_csv(tmp_path / "part" / "history.tsv", separator="\t", null_values="NA")
    assert h.height == 3 and np.isfinite(h["TRAIN_TEACHER"].to_numpy()).all()


def test_an_inactive_teacher_leaves_teacher_head_untouched_and_the_log_says_so(cohort, tmp_path, monkeypatch):  # noqa: F811
    """A teacher whose validation MI never rose above 0 is inactive: gim's loss has no teacher term, so
    teacher_head, still listed among the stage's trainable modules, gets no gradient, and the stage line says so."""
    import gimtool.train.teacher as teacher_mod

    fit = teacher_mod.fit_run_teacher

    def fit_then_deactivate(teacher, *args, **kwargs):
        fit(teacher, *args, **kwargs)
        teacher.active.fill_(False)

    monkeypatch.setattr(teacher_mod, "fit_run_teacher", fit_then_deactivate)
    torch.set_num_threads(1)
    d, ids = cohort
    method = METHODS["gim"]
    tr = pl.DataFrame({"FID": [f for f, _ in ids[:16]], "IID": [i for _, i in ids[:16]]})
    va = pl.DataFrame({"FID": [f for f, _ in ids[16:]], "IID": [i for _, i in ids[16:]]})
    trained = {}
    for epochs in (1, 2):
        cfg = TrainConfig.from_dict({"method": "gim", "epochs": epochs, "schedule": "cotrain", "batch_size": 8, "lr": 1e-3,
                                     "crop_mm": 1000.0, "seed": 2, "model": dict(SMALL_MODEL, teacher_snps=16, teacher_epochs=2)})
        data = prepare_data(cfg, method, d / "img", d / "geno", tr, va)
        out = tmp_path / f"e{epochs}"

        class Log:
            def __init__(self):
                self.lines = []

            def info(self, msg):
                self.lines.append(msg)

        log = Log()
        train(cfg, method, data, out, log=log, progress=False)
        trained[epochs] = ckpt_mod.load_checkpoint(out / "model.pt")["modules"]
        assert not bool(trained[epochs]["teacher.active"])
        stage = [ln for ln in log.lines if ln.startswith("stage ")]
        assert len(stage) == 1 and "teacher_head" in stage[0], log.lines
        assert stage[0].endswith("(teacher inactive: teacher_head gets no gradient)"), stage[0]
    head = [k for k in trained[1] if k.startswith("teacher_head.")]
    assert head and all(torch.equal(trained[1][k], trained[2][k]) for k in head)
    # the rest of the model did train in the second epoch
    assert any(not torch.equal(trained[1][k], trained[2][k]) for k in trained[1] if k.startswith("encoder."))
