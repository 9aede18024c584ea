"""`torchrun --nproc_per_node 2 -m gimtool train` (gloo, CPU) gives the weights of one process
with the same global batch: data sharded by rank, JSE negatives gathered across ranks,
GroupNorm, gradients averaged by DistributedDataParallel, checkpoints by rank 0."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import polars as pl
import pytest
import torch

from gimtool.train import checkpoint as ckpt_mod
from tests.conftest import gimtool
from tests.train.test_train_data import ids_of, make_geno_store, make_image_store, write_ids
from tests.train.test_train_methods import SMALL_MODEL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# gim-guided: the critic's guided directions (critic_guided_dims) with warm-up and ramp; a 16-dim z
# so that the directions start within the test's 6 steps (they wait for more rows than z has dimensions),
# on gimtool's co-training schedule
GUIDED = {"repr_dim": 16, "critic_guided_dims": 4, "critic_snps": 32, "critic_warmup_steps": 2, "critic_ramp_steps": 2}


@pytest.mark.slow
@pytest.mark.parametrize("method, epochs", [("gim", "1,1,1"), ("gim-guided", "0,0,3"), ("simclr", "3")])
def test_two_gloo_processes_equal_one(tmp_path, method, epochs):
    # gim: JSE negatives gathered across ranks; simclr: two-view augmentations seeded per person
    ids = ids_of(20)
    make_image_store(tmp_path / "img", ids, shape=(8, 10, 8))
    make_geno_store(tmp_path / "geno", ids, n_snps=120)
    write_ids(tmp_path / "train.ids", ids[:16])
    write_ids(tmp_path / "val.ids", ids[16:])
    guided = method == "gim-guided"
    method = "gim" if guided else method
    # lambda_recon 1: the critic's SNP selection (the top 64 of 120 SNPs by R^2 on z) is a discrete
    # choice, and with 32 rows of moments on a 128-dim z every score is near 1. At lambda 10 the
    # 64th and 65th scores at step 4 were 1.0e-6 apart in one process and 5.7e-6 under DDP (their
    # sums rounded in another order): the two picked different SNPs, and all weights drifted apart
    # from that step (after the first stage's 2 steps they agreed to 3e-6). At lambda 1 no such near-tie is met.
    model = "\n".join(f"{k} = {v}" for k, v in {**SMALL_MODEL, "lambda_recon": 1.0, **(GUIDED if guided else {})}.items())
    (tmp_path / "c.toml").write_text(f"batch_size = 8\ncrop_mm = 24.0\nlr = 1e-3\n\n[model]\n{model}\n")
    args = ["train", "--images", tmp_path / "img", "--geno", tmp_path / "geno", "--keep", tmp_path / "train.ids",
            "--val-keep", tmp_path / "val.ids", "--method", method, "--config", tmp_path / "c.toml",
            "--epochs", epochs, "--seed", "7", "--no-progress"]
    gimtool(*args, "--out", tmp_path / "one")
    torchrun = shutil.which("torchrun") or None
    cmd = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([*cmd, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "gimtool",
                        *map(str, args), "--out", str(tmp_path / "two")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a = ckpt_mod.load_checkpoint(tmp_path / "one" / "model.pt")
    b = ckpt_mod.load_checkpoint(tmp_path / "two" / "model.pt")
    # Adam divides by sqrt(v): an element whose gradient is ~0 moves by up to lr per step on the
    # sign of float rounding noise, so a few single elements may differ by O(lr); all else agrees
    # the critic's running statistics (its standardizers' moments, the SNP selector's cross-moments,
    # O(1) averages of products over the gathered batch) are sums taken in another order under DDP,
    # and of a z from encoder weights that may differ in a few elements as above: checked relative to
    # the size of each tensor (element by element, the near-zero products of zz missed 1e-5 by 3e-5
    # when 5 encoder weights differed by up to 1.2e-4: 1.2e-5 of zz's largest entry)
    if guided:  # the guided directions were in use, and agree
        assert a["modules"]["critic.directions"].abs().sum() > 0
    # (the critic's running buffers only: encoder.final_norm's weight and bias are learned, and are
    # checked with the other weights below)
    stats = [k for k in a["modules"] if k.startswith("critic.") and (".selector." in k or "_norm." in k)]
    for k in stats:
        sa, sb = a["modules"][k].double(), b["modules"][k].double()
        err, size = float((sb - sa).abs().max()), float(sa.abs().max())
        assert err <= 1e-4 * size + 1e-5, f"{k}: max difference {err:.3g}, largest entry {size:.3g}"
    weights = [k for k in a["modules"] if k not in stats]
    wa = torch.cat([a["modules"][k].flatten().double() for k in weights])
    wb = torch.cat([b["modules"][k].flatten().double() for k in weights])
    diff = (wa - wb).abs()
    assert (diff > 1e-5).float().mean() < 1e-3, int((diff > 1e-5).sum())
    assert diff.max() < 6 * 1e-3  # 6 steps at lr 1e-3
    assert diff.median() < 1e-7
    # the genetic encoder trained in the last stage, so the cross-rank gather was exercised
    ha = pl.read_csv(tmp_path / "one" / "history.tsv", separator="\t")
    hb = pl.read_csv(tmp_path / "two" / "history.tsv", separator="\t")
    # the losses and MI of a model whose weights differ as above (MI near 0: an absolute bound; one
    # value differed by 1.3e-6 when 5 encoder weights differed by up to 1.2e-4)
    for c in ("TRAIN_LOSS", "VAL_LOSS") + (("TRAIN_MI", "VAL_MI") if method == "gim" else ()):
        torch.testing.assert_close(torch.tensor(ha[c].to_numpy()), torch.tensor(hb[c].to_numpy()), rtol=1e-5, atol=1e-5)
    log = (tmp_path / "two" / "train.log").read_text()
    assert "status: ok" in log and log.count("epoch 3 (") == 1
