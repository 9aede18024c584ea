"""Can gim's image encoder carry the subtle factors at all? A diagnostic that uses the truth.

gim's z and the autoencoder's hold about the same ridge R^2 of the true genetic values, factor by
factor, and on brainlike both hold far less of the subtle factors (F3-F6) than a ridge on the
voxels does (benchmarks/results/gim_critic_snps.md). This separates the two possible causes:

  - the architecture (width, the 4x4x4 pooling before the dense layer): train the same image
    encoder *supervised*, on the true genetic values of the training people (MSE on the
    standardized values), and report the test R^2 of a ridge from its z. If that stays near the
    autoencoder's, no objective can put more into this encoder's z at this N;
  - the objective: if the supervised encoder holds much more, the encoder can carry the signal and
    what is missing is a training signal that points at it.

Also reports, on the same people, a ridge on the top voxel PCs (the images' linear content).
Every fit uses the training people only; R^2 on the test people, factor by factor.

    python benchmarks/diag_encoder_capacity.py --eval-dir <evaluate.py out> --epochs 10 \
        [--model 'conv_channels=[8,16,32]'] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from diag_gim_training import ridge_r2  # noqa: E402

from gimtool.io.imagestore import ImageStore  # noqa: E402
from gimtool.io.tables import align, read_ids, read_table  # noqa: E402
from gimtool.model.config import ModelConfig  # noqa: E402
from gimtool.model.mri import MRIEncoder  # noqa: E402


def load(eval_dir: Path):
    c = eval_dir / "cohort"
    store = ImageStore(eval_dir / "mri")
    people = store.samples
    truth = read_table(c / "truth" / "genetic.tsv")
    al = align(people, truth)
    keep = al.ref_index
    Y = truth.select(truth.columns[2:]).to_numpy()[al.table_index].astype(np.float64)
    people = people[keep]
    X = np.stack([store.volume(int(i)) for i in keep]).astype(np.float32)
    tr = align(people, read_ids(c / "train.ids")).ref_index
    te = align(people, read_ids(c / "test.ids")).ref_index
    return X, Y, tr, te, truth.columns[2:], people


def top_pcs(flat: np.ndarray, tr, k: int) -> np.ndarray:
    """(n, k) scores of every row of `flat` (people x voxels) on the top k PCs fit on rows tr."""
    mu = flat[tr].mean(0)
    _, _, vt = np.linalg.svd(flat[tr] - mu, full_matrices=False)
    return (flat - mu) @ vt[:k].T


def voxel_ridge(X: np.ndarray, Y: np.ndarray, tr, te, k: int) -> list[float]:
    P = top_pcs(X.reshape(X.shape[0], -1).astype(np.float64), tr, k)
    return ridge_r2(P, Y, tr, te, per_column=True)


def supervised(X, Y, tr, te, cfg: ModelConfig, epochs: int, batch: int, lr: float, seed: int, targets=None):
    """Train the encoder by regression on `targets` (default: Y, the truth) of the training people;
    report the R^2 of Y from z on the test people after every epoch."""
    torch.manual_seed(seed)
    targets = Y if targets is None else targets
    enc = MRIEncoder(cfg, attentive=False)
    head = torch.nn.Linear(cfg.repr_dim, targets.shape[1])
    mu, sd = targets[tr].mean(0), targets[tr].std(0) + 1e-12
    T = torch.as_tensor((targets - mu) / sd, dtype=torch.float32)
    Xt = torch.as_tensor(X).unsqueeze(1)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=lr)
    rng = np.random.default_rng(seed)
    per_epoch = []
    for e in range(epochs):
        enc.train()
        t0, tot = time.time(), 0.0
        for b in np.array_split(rng.permutation(tr), max(1, len(tr) // batch)):
            loss = torch.nn.functional.mse_loss(head(enc.embed(Xt[b])), T[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        enc.eval()
        with torch.no_grad():
            Z = torch.cat([enc.embed(Xt[i:i + 64]) for i in range(0, len(Xt), 64)]).double().numpy()
        r2 = ridge_r2(Z, Y, tr, te, per_column=True)
        per_epoch.append({"epoch": e + 1, "train_mse": round(tot / len(tr), 4), "r2_z": [round(x, 3) for x in r2],
                          "seconds": round(time.time() - t0, 1)})
        print(json.dumps(per_epoch[-1]), flush=True)
    return per_epoch, Z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", action="append", default=[], help="ModelConfig override, TOML 'key = value'")
    ap.add_argument("--voxel-pcs", type=int, default=1000, help="0: skip the voxel ridge")
    ap.add_argument("--targets", type=Path, default=None,
                    help="train on these per-person targets (FID IID t1..) instead of the truth: a genotype-derived "
                         "target made without the truth, e.g. a critic's genetic embedding; R2 is still of the truth")
    ap.add_argument("--embeddings", type=Path, default=None,
                    help="write the last epoch's z of every person here (FID IID z1.., as `gimtool embed`), for "
                         "`evaluate.py --embeddings NAME=TSV`: the loci this encoder finds when trained on the truth (or --targets)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from evaluate import CONFIGS

    model = tomllib.loads(CONFIGS["cpu"]["model_toml"]).get("model", {})
    model.update(tomllib.loads("\n".join(a.model)))
    cfg = ModelConfig(**model)
    X, Y, tr, te, names, people = load(a.eval_dir)
    print(json.dumps({"people": len(X), "train": len(tr), "test": len(te), "grid": list(X.shape[1:]),
                      "factors": list(names), "model": model}), flush=True)
    if a.voxel_pcs:
        print(json.dumps({"voxel_pcs": a.voxel_pcs, "r2": [round(x, 3) for x in voxel_ridge(X, Y, tr, te, a.voxel_pcs)]}), flush=True)
    targets = None
    if a.targets is not None:
        t = read_table(a.targets)
        al = align(people, t)
        if al.n_matched != people.height:
            raise SystemExit(f"{a.targets}: {people.height - al.n_matched} people of the image store have no target")
        targets = t.select(t.columns[2:]).to_numpy()[al.table_index].astype(np.float64)
    _, Z = supervised(X, Y, tr, te, cfg, a.epochs, a.batch_size, a.lr, a.seed, targets)
    if a.embeddings is not None:
        import polars as pl

        from gimtool.io.tables import write_table

        cols = {f"z{j + 1}": pl.Series(Z[:, j].astype(np.float32)) for j in range(Z.shape[1])}
        write_table(people.select(people.columns[:2]).with_columns(**cols), a.embeddings)


if __name__ == "__main__":
    main()
