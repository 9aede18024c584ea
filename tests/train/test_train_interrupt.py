"""SIGTERM/SIGINT during training: last.pt at the next step, and --resume gives the uninterrupted
result (library level, with the loop's stand-in method); the CLI's handling is in
tests/test_signals.py."""

from __future__ import annotations

import os
import signal

import numpy as np
import polars as pl
import pytest
import torch

from gimtool import signals
from gimtool.train import checkpoint as ckpt_mod
from gimtool.train.loop import train
from tests.train.test_train_loop import StandIn, _cfg, _data, _weights, cohort  # noqa: F401  (cohort: a fixture)


class SignalAt(StandIn):
    """The stand-in method, sending this process `sig` at its `at`-th training step."""

    def __init__(self, sig, at):
        self.sig, self.at, self.calls = sig, at, 0

    def loss(self, modules, batch, stage):
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), self.sig)
        return super().loss(modules, batch, stage)


@pytest.fixture
def handlers():
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signals.install()
    yield
    for s, h in old.items():
        signal.signal(s, h)


@pytest.mark.parametrize("sig, at", [(signal.SIGTERM, 7), (signal.SIGINT, 2)])
def test_signal_checkpoints_at_next_step_and_resume_is_exact(cohort, tmp_path, handlers, sig, at):  # noqa: F811
    cfg = _cfg(epochs=[1, 2])  # 16 people, batch 4: 4 steps per epoch; step 7 is inside stage 2's first epoch
    data = _data(cfg, cohort)
    train(cfg, StandIn(), data, tmp_path / "full", progress=False)
    with pytest.raises(signals.Interrupted) as e:
        train(cfg, SignalAt(sig, at), data, tmp_path / "part", progress=False)
    assert e.value.signame == signal.Signals(sig).name and "rerun with --resume" in str(e.value)
    assert not (tmp_path / "part" / "model.pt").exists()
    pos = ckpt_mod.load_checkpoint(tmp_path / "part" / "last.pt")["position"]
    assert pos["partial"]["step"] == (at - 1) % 4 + 1 and pos["global_epoch"] == (at - 1) // 4
    signals.install()  # a new command
    torch.rand(100)  # resume must not depend on the RNG of this process
    train(cfg, StandIn(), data, tmp_path / "part", resume=True, progress=False)
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "part" / "model.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    ha = pl.read_csv(tmp_path / "full" / "history.tsv", separator="\t")
    hb = pl.read_csv(tmp_path / "part" / "history.tsv", separator="\t")
    for col in ("TRAIN_LOSS", "VAL_LOSS", "LR"):
        np.testing.assert_allclose(ha[col].to_numpy(), hb[col].to_numpy(), rtol=1e-6)
