"""The training loop, with a small stand-in method (the real methods are tested in
test_train_methods.py): stages, loss falls, history, exact resume, checkpoints and refusals."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest
import torch

from gimtool.errors import InputError
from gimtool.train import checkpoint as ckpt_mod
from gimtool.train.config import TrainConfig
from gimtool.train.loop import prepare_data, train
from tests.train.test_train_data import ids_of, make_geno_store, make_image_store


@dataclass
class Stage:
    name: str
    epochs: int
    trainable: tuple[str, ...]
    genetic_augment: bool = False


class StandIn:
    """Per-sample loss (so a DDP split of a batch gives the same gradient): reconstruct the
    mean intensity of the crop from the encoder, and predict the mean genotype of the batch's
    SNPs from the genetic module. 'mi' is a made-up metric to exercise the MI columns."""

    name = "standin"
    needs_genotypes = True
    n_views = 1
    trains = True

    def build(self, cfg, image_shape, n_snps):
        enc = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.GroupNorm(2, 4), torch.nn.SiLU(),
                                  torch.nn.AdaptiveAvgPool3d(2), torch.nn.Flatten(), torch.nn.Linear(32, 128))
        return torch.nn.ModuleDict({"encoder": enc, "head": torch.nn.Linear(128, 1), "gen": torch.nn.Embedding(4, 1)})

    stage_names = ("frozen", "cotrain")

    def stages(self, epochs):
        e = epochs if isinstance(epochs, dict) else {"frozen": epochs, "cotrain": epochs}
        return [Stage("frozen", e["frozen"], ("encoder", "head")),
                Stage("cotrain", e["cotrain"], ("encoder", "head", "gen"), genetic_augment=True)]

    def loss(self, modules, batch, stage):
        x = batch["image"]
        noise = 1 + 0.01 * torch.randn(x.shape[0], device=x.device)  # exercises the per-epoch seeding
        target = x.mean(dim=(1, 2, 3, 4)) * noise
        rec = ((modules["head"](modules["encoder"](x)).squeeze(1) - target) ** 2)
        g = batch["geno"].long().clamp(min=0)
        gen = (modules["gen"](g).squeeze(-1).mean(1) - g.float().mean(1)) ** 2
        loss = (rec + gen).mean()
        r = float(rec.detach().mean())
        return loss, {"mi": 1 - r, "rec": r}

    def embed(self, modules, image):
        return modules["encoder"](image)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    ids = ids_of(24)
    make_image_store(d / "img", ids)
    make_geno_store(d / "geno", ids)
    return d, ids


def _cfg(**kw):
    base = dict(method="standin", epochs=[2, 2], batch_size=4, lr=1e-2, crop_mm=24.0, seed=5, threads=1, lr_schedule="cosine")
    base.update(kw)
    return TrainConfig.from_dict(base)


def _data(cfg, cohort, method=None):
    d, ids = cohort
    tr = pl.DataFrame({"FID": [f for f, _ in ids[:16]], "IID": [i for _, i in ids[:16]]})
    va = pl.DataFrame({"FID": [f for f, _ in ids[16:]], "IID": [i for _, i in ids[16:]]})
    return prepare_data(cfg, method or StandIn(), d / "img", d / "geno", tr, va)


def _weights(path):
    return ckpt_mod.load_checkpoint(path)["modules"]


def test_trains_loss_falls_history_and_checkpoint(cohort, tmp_path):
    cfg = _cfg(epochs=[6, 2])
    data = _data(cfg, cohort)
    assert data.crop == (6, 6, 6)
    final = train(cfg, StandIn(), data, tmp_path / "run", progress=False)
    h = pl.read_csv(tmp_path / "run" / "history.tsv", separator="\t", null_values="NA")
    assert h.columns[:11] == ["EPOCH", "STAGE", "STAGE_EPOCH", "LR", "TRAIN_LOSS", "VAL_LOSS", "TRAIN_MI", "VAL_MI",
                              "MI_GAP", "SAMPLES_PER_S", "SECONDS"]
    assert h["EPOCH"].to_list() == list(range(1, 9))
    assert h["STAGE"].to_list() == ["frozen"] * 6 + ["cotrain"] * 2
    assert h["TRAIN_REC"][5] < 0.5 * h["TRAIN_REC"][0]
    assert h["TRAIN_LOSS"][5] < h["TRAIN_LOSS"][0]
    assert h["VAL_LOSS"].null_count() == 0
    # the stand-in reports mi = 1 - rec: the MI columns must carry that metric, train and
    # validation each from its own pass (a swap or a stale value breaks these)
    np.testing.assert_allclose(h["TRAIN_MI"].to_numpy(), 1 - h["TRAIN_REC"].to_numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h["VAL_MI"].to_numpy(), 1 - h["VAL_REC"].to_numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h["MI_GAP"].to_numpy(), (h["VAL_REC"] - h["TRAIN_REC"]).to_numpy(), rtol=1e-6, atol=1e-9)
    assert "TRAIN_REC" in h.columns and "VAL_REC" in h.columns
    # the cosine schedule restarts per stage and anneals within it
    lr = h["LR"].to_numpy()
    assert lr[0] == lr[6] == pytest.approx(1e-2) and lr[0] > lr[5] > 0
    assert (tmp_path / "run" / "history.png").stat().st_size > 1000
    ck = ckpt_mod.load_checkpoint(final)
    assert ck["complete"] and ck["method"] == "standin" and ck["crop"] == [6, 6, 6]
    assert ck["config"]["epochs"] == [6, 2] and ck["config"]["model"]["repr_dim"] == 128
    assert ck["grid"]["shape"] == [8, 10, 8] and ck["n_snps"] == 200 and len(ck["history"]) == 8
    assert ck["snp_hash"] == data.snp_hash
    last = ckpt_mod.load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["position"] == {"stage": 2, "epoch": 0, "global_epoch": 8} and not last["complete"]


def test_frozen_stage_leaves_frozen_modules(cohort, tmp_path):
    cfg = _cfg(epochs=[2, 0])
    train(cfg, StandIn(), _data(cfg, cohort), tmp_path / "r", progress=False)
    torch.manual_seed(5)
    fresh = StandIn().build(None, (6, 6, 6), 200)
    w = _weights(tmp_path / "r" / "model.pt")
    assert torch.equal(w["gen.weight"], fresh["gen"].weight)
    assert not torch.equal(w["head.weight"], fresh["head"].weight)


class Killed(Exception):
    pass


def _kill_at(epoch_to_kill: int):
    """An on_epoch_end hook that kills the run at the end of that epoch."""
    def kill(epoch):
        if epoch == epoch_to_kill:
            raise Killed
    return kill


def test_kill_and_resume_equals_uninterrupted(cohort, tmp_path):
    # killed in the middle of stage 2: the stage's optimizer and scheduler state must be restored
    kill_after = 2
    cfg = _cfg(epochs=[1, 2])
    data = _data(cfg, cohort)
    train(cfg, StandIn(), data, tmp_path / "full", progress=False)

    with pytest.raises(Killed):
        train(cfg, StandIn(), data, tmp_path / "part", on_epoch_end=_kill_at(kill_after), progress=False)
    assert not (tmp_path / "part" / "model.pt").exists()
    assert ckpt_mod.load_checkpoint(tmp_path / "part" / "last.pt")["position"]["global_epoch"] == kill_after
    # the killed process's RNG was used after the checkpoint: resume must not depend on it
    torch.rand(100)
    train(cfg, StandIn(), data, tmp_path / "part", resume=True, progress=False)
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "part" / "model.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    ha = pl.read_csv(tmp_path / "full" / "history.tsv", separator="\t")
    hb = pl.read_csv(tmp_path / "part" / "history.tsv", separator="\t")
    np.testing.assert_allclose(ha["TRAIN_LOSS"].to_numpy(), hb["TRAIN_LOSS"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(ha["VAL_LOSS"].to_numpy(), hb["VAL_LOSS"].to_numpy(), rtol=1e-6)


def test_constant_lr_schedule_holds_the_rate_and_resumes(cohort, tmp_path):
    # lr_schedule = "constant": lr in every epoch of every stage, where the cosine anneals; a run
    # killed mid-stage resumes to the same weights (the scheduler's state is a plain dict)
    cfg = _cfg(epochs=[1, 2], lr_schedule="constant")
    data = _data(cfg, cohort)
    train(cfg, StandIn(), data, tmp_path / "full", progress=False)
    lr = pl.read_csv(tmp_path / "full" / "history.tsv", separator="\t", null_values="NA")["LR"].to_numpy()
    assert lr.tolist() == pytest.approx([1e-2] * 3, rel=1e-12)
    train(_cfg(epochs=[1, 2]), StandIn(), data, tmp_path / "cos", progress=False)
    assert pl.read_csv(tmp_path / "cos" / "history.tsv", separator="\t", null_values="NA")["LR"][2] < 0.9e-2
    with pytest.raises(Killed):
        train(cfg, StandIn(), data, tmp_path / "part", on_epoch_end=_kill_at(2), progress=False)
    with pytest.raises(InputError, match="trained with lr_schedule = 'constant', this run uses 'cosine'"):
        train(_cfg(epochs=[1, 2]), StandIn(), data, tmp_path / "part", resume=True, progress=False)
    train(cfg, StandIn(), data, tmp_path / "part", resume=True, progress=False)
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "part" / "model.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="lr_schedule"):
        _cfg(lr_schedule="linear")


def test_seed_repeatable_and_matters(cohort, tmp_path):
    cfg = _cfg(epochs=[1, 1])
    data = _data(cfg, cohort)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        train(dataclasses.replace(cfg, seed=seed), StandIn(), data, tmp_path / name, progress=False)
    a, b, c = (_weights(tmp_path / n / "model.pt") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_loads_weights_only_and_is_plain(cohort, tmp_path):
    cfg = _cfg(epochs=[1, 0])
    train(cfg, StandIn(), _data(cfg, cohort), tmp_path / "r", progress=False)
    ck = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert ck["format"] == "gimtool-checkpoint" and isinstance(ck["config"], dict)
    # a file with arbitrary pickled objects is refused by the weights_only loader
    torch.save({"format": "gimtool-checkpoint", "evil": StandIn}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not a readable gimtool checkpoint"):
        ckpt_mod.load_checkpoint(tmp_path / "bad.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a gimtool checkpoint"):
        ckpt_mod.load_checkpoint(tmp_path / "other.pt")


def test_resume_refuses_other_method_snps_grid(cohort, tmp_path):
    cfg = _cfg(epochs=[1, 1])
    data = _data(cfg, cohort)
    out = tmp_path / "r"
    with pytest.raises(Killed):
        train(cfg, StandIn(), data, out, on_epoch_end=lambda e: (_ for _ in ()).throw(Killed), progress=False)

    class Other(StandIn):
        name = "other"

    with pytest.raises(InputError, match="trained with --method standin, this run uses --method other"):
        train(dataclasses.replace(cfg, method="other"), Other(), data, out, resume=True, progress=False)
    d, ids = cohort
    make_geno_store(tmp_path / "geno2", ids, n_snps=150)
    data2 = prepare_data(cfg, StandIn(), d / "img", tmp_path / "geno2", None, None)
    with pytest.raises(InputError, match=r"another SNP set \(SNP table hash [0-9a-f]{12}, 200 SNPs\).*has hash [0-9a-f]{12}"):
        train(cfg, StandIn(), data2, out, resume=True, progress=False)
    make_image_store(tmp_path / "img2", ids, shape=(8, 10, 9))
    data3 = prepare_data(cfg, StandIn(), tmp_path / "img2", d / "geno", None, None)
    with pytest.raises(InputError, match=r"image grid shape \(8, 10, 8\).*the image store has shape \(8, 10, 9\)"):
        train(cfg, StandIn(), data3, out, resume=True, progress=False)
    with pytest.raises(InputError, match="nothing to resume"):
        train(cfg, StandIn(), data, tmp_path / "empty", resume=True, progress=False)


def test_prepare_refuses_overlap_and_small_sets(cohort, tmp_path):
    d, ids = cohort
    cfg = _cfg()
    keep = pl.DataFrame({"FID": ["F1", "F2"], "IID": ["I1", "I2"]})
    with pytest.raises(InputError, match="share 1 people"):
        prepare_data(cfg, StandIn(), d / "img", d / "geno", keep, keep[1:])
    data = prepare_data(cfg, StandIn(), d / "img", d / "geno", keep, None)
    with pytest.raises(InputError, match="2 people, fewer than --batch-size 4"):
        train(cfg, StandIn(), data, tmp_path / "x", progress=False)
    with pytest.raises(InputError, match="needs genotypes"):
        prepare_data(cfg, StandIn(), d / "img", None, None, None)


def test_best_checkpoint_is_the_best_validation_epoch(cohort, tmp_path):
    cfg = _cfg(epochs=[4, 2], lr=5e-2)
    train(cfg, StandIn(), _data(cfg, cohort), tmp_path / "r", progress=False)
    h = pl.read_csv(tmp_path / "r" / "history.tsv", separator="\t", null_values="NA")
    # the stand-in has no critic: selection is by validation loss
    e = int(h["VAL_LOSS"].arg_min()) + 1
    best = ckpt_mod.load_checkpoint(tmp_path / "r" / "best.pt")
    assert best["position"]["global_epoch"] == e and best["selection"]["best_epoch"] == e
    assert best["selection"]["best"] == pytest.approx(-h["VAL_LOSS"].min())
    assert len(best["history"]) == e  # the weights and history of that epoch, not the last one
    if e < 6:
        assert not torch.equal(best["modules"]["head.weight"], _weights(tmp_path / "r" / "model.pt")["head.weight"])
    # embed's default for a run folder is best.pt; a file is taken as given
    from gimtool.train.embedding import resolve_checkpoint

    assert resolve_checkpoint(tmp_path / "r") == tmp_path / "r" / "best.pt"
    assert resolve_checkpoint(tmp_path / "r" / "model.pt") == tmp_path / "r" / "model.pt"


class Worsening(StandIn):
    """Validation loss rises after epoch 2 whatever the weights do."""

    def loss(self, modules, batch, stage):
        loss, metrics = super().loss(modules, batch, stage)
        if not modules["encoder"].training:
            loss = loss * 0 + 1.0 + abs(self.epoch - 2)
        return loss, metrics


def test_early_stopping_after_patience_epochs_and_resume_keeps_it(cohort, tmp_path):
    method = Worsening()
    method.epoch = 0

    def tick(e):
        method.epoch = e

    cfg = _cfg(epochs=[4, 4], patience=2)
    tick(1)
    train(cfg, method, _data(cfg, cohort, method), tmp_path / "r", on_epoch_end=lambda e: tick(e + 1), progress=False)
    h = pl.read_csv(tmp_path / "r" / "history.tsv", separator="\t", null_values="NA")
    # best at epoch 2, two epochs without improvement, then the run stops (8 were planned)
    assert h["EPOCH"].to_list() == [1, 2, 3, 4]
    assert ckpt_mod.load_checkpoint(tmp_path / "r" / "best.pt")["selection"]["best_epoch"] == 2
    assert ckpt_mod.load_checkpoint(tmp_path / "r" / "model.pt")["complete"]
    # a resumed run that had stopped early does not train further
    train(cfg, method, _data(cfg, cohort, method), tmp_path / "r", resume=True, progress=False)
    assert pl.read_csv(tmp_path / "r" / "history.tsv", separator="\t")["EPOCH"].to_list() == [1, 2, 3, 4]
