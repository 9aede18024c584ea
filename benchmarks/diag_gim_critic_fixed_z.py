"""Can gim's training critic learn on a trained representation held fixed? (issue 14)

The critic alone, as gim trains it (batch 12, AdamW lr 1e-3, weight decay 1e-2, the linear
genetic encoder on standardized genotypes, the SNP selector's running moments), on the z of an
evaluate.py run (its embeddings.tsv) for the training people; the held-out MI is the JSE estimate
over every pairing of the test people after each epoch. Each setting is `GUIDED_DIMS:SNPS`
(model.config critic_guided_dims and critic_snps). It separates the critic's ability to read a
signal that z holds from the end-to-end dynamics, where z moves while the critic learns.

    python benchmarks/diag_gim_critic_fixed_z.py --eval-dir benchmarks/out/eval_cpu-large-10 \
        --run autoencoder --settings 0:64,10:64,10:32 --out benchmarks/results/gim_critic_guided.md
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from gimtool.io.genostore import GenoStore
from gimtool.io.tables import read_ids
from gimtool.model.config import ModelConfig
from gimtool.model.critic import SeparableCritic
from gimtool.model.genetic import build_genetic_encoder, standardized_dosage
from gimtool.model.losses import jse_loss, jse_mi


def _keys(df: pl.DataFrame) -> list[str]:
    return [f"{f}\t{i}" for f, i in zip(df["FID"], df["IID"])]


def load(eval_dir: Path, run: str):
    emb = pl.read_csv(eval_dir / "runs" / run / "embeddings.tsv", separator="\t",
                      schema_overrides={"FID": pl.Utf8, "IID": pl.Utf8})
    store = GenoStore(eval_dir / "geno.geno")
    pos = {k: i for i, k in enumerate(_keys(store.samples))}
    keys = _keys(emb)
    Z = torch.tensor(emb.select([c for c in emb.columns if c.startswith("z")]).to_numpy(), dtype=torch.float32)
    G = torch.from_numpy(np.asarray(store.genotypes[np.array([pos[k] for k in keys])]))
    rows = {}
    for part in ("train", "test"):
        want = set(_keys(read_ids(eval_dir / "cohort" / f"{part}.ids")))
        rows[part] = torch.tensor([i for i, k in enumerate(keys) if k in want])
    g = G[rows["train"]].float()
    called = g >= 0
    af = ((g * called).sum(0) / called.sum(0).clamp(min=1) / 2).float()  # A1 frequency of the training people
    return Z, G, af, rows


def crop_embeddings(eval_dir: Path, run: str, keys: list[str], epochs: int, seed: int = 0):
    """z from the run's checkpoint (best.pt, as its embeddings.tsv): the test people's from the
    centre crop, and for each epoch the training people's from a fresh uniformly random crop of
    the size training used, as the training loop draws them. Returns (Z centre, [Z of epoch e])."""
    from gimtool.io.imagestore import ImageStore
    from gimtool.train.embedding import load_model

    method, modules, _, ck = load_model(eval_dir / "runs" / run, torch.device("cpu"))
    store = ImageStore(eval_dir / "mri")
    pos = {k: i for i, k in enumerate(_keys(store.samples))}
    index = np.array([pos[k] for k in keys])
    crop, shape = tuple(int(c) for c in ck["crop"]), store.shape

    @torch.no_grad()
    def embed(starts_of) -> torch.Tensor:
        out = []
        for b in range(0, len(index), 64):
            vols = [store.crop(int(i), starts_of(j), crop) for j, i in enumerate(index[b:b + 64], start=b)]
            out.append(method.embed(modules, torch.from_numpy(np.stack(vols))[:, None]).float())
        return torch.cat(out)

    centre = tuple((n - c) // 2 for n, c in zip(shape, crop))
    Zc = embed(lambda j: centre)
    per_epoch = []
    for e in range(epochs):
        rng = np.random.default_rng([seed, e])
        starts = [tuple(int(rng.integers(0, n - c + 1)) for n, c in zip(shape, crop)) for _ in index]
        per_epoch.append(embed(lambda j: starts[j]))
    return Zc, per_epoch


def critic_step(critic, enc, opt, z, geno, positions, af, select_on=None) -> None:
    """One training step of a critic alone, as gim's loss takes it: the SNP selection's moments
    updated from this batch (from `select_on`, already standardized, instead of the critic's
    standardized z when given), then the JSE over every pairing of the batch."""
    chrom, bp, cm = positions
    sel_z = critic.x_norm.peek(z) if select_on is None else select_on
    critic.selector.update(sel_z, standardized_dosage(geno, af))
    loss = jse_loss(critic(z, enc(geno, chrom, bp, cm, critic.selector.mask(), af)))
    opt.zero_grad()
    loss.backward()
    opt.step()


def held_out_mi(Z, G, af, rows, guided_dims: int, snps: int, epochs: int, seed: int, batch: int = 12,
                train_z=None) -> list[float]:
    """train_z: optional list of per-epoch z (random crops) for the training rows; Z is used otherwise
    and always for the test people."""
    L = G.shape[1]
    cfg = ModelConfig(critic_snps=snps, critic_guided_dims=guided_dims)
    torch.manual_seed(seed)
    enc = build_genetic_encoder(cfg, L)
    critic = SeparableCritic(cfg, Z.shape[1], cfg.genetic_out_dim, n_snps=L)
    opt = torch.optim.AdamW([*enc.parameters(), *critic.parameters()], lr=1e-3, weight_decay=0.01)
    chrom, bp, cm = torch.ones(L, dtype=torch.long), torch.arange(L) * 1000, torch.arange(L) * 1e-3
    tr, te = rows["train"], rows["test"]
    out = []
    for ep in range(epochs):
        critic.train()
        Zt = Z if train_z is None else train_z[ep]
        order = tr[torch.from_numpy(np.random.default_rng(seed * 1000 + ep).permutation(len(tr)))]
        for b in range(0, len(order) - batch + 1, batch):
            k = order[b:b + batch]
            critic_step(critic, enc, opt, Zt[k], G[k], (chrom, bp, cm), af)
        critic.eval()
        with torch.no_grad():
            out.append(float(jse_mi(jse_loss(critic(Z[te], enc(G[te], chrom, bp, cm, critic.selector.mask(), af))))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", type=Path, required=True, help="an evaluate.py output folder")
    ap.add_argument("--run", default="autoencoder", help="the run whose embeddings.tsv is z")
    ap.add_argument("--settings", default="0:64,10:64,10:32,4:16", help="GUIDED_DIMS:SNPS, comma-separated")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="append a markdown section here")
    ap.add_argument("--view", choices=("whole", "centre", "random"), default="whole",
                    help="whole: the run's embeddings.tsv (whole volumes); centre: z of the run's checkpoint from the "
                         "training-size centre crop; random: the same for the test people, and for the training people "
                         "a fresh random crop of that size every epoch, as training draws them")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    Z, G, af, rows = load(a.eval_dir, a.run)
    train_z = None
    if a.view != "whole":
        emb = pl.read_csv(a.eval_dir / "runs" / a.run / "embeddings.tsv", separator="\t", columns=["FID", "IID"],
                          schema_overrides={"FID": pl.Utf8, "IID": pl.Utf8})
        Z, per_epoch = crop_embeddings(a.eval_dir, a.run, _keys(emb), a.epochs if a.view == "random" else 0)
        train_z = per_epoch if a.view == "random" else None
        if train_z:
            zs = torch.stack(per_epoch)[:, rows["train"]]  # (epochs, people, d)
            share = zs.var(0).mean(0) / zs.flatten(0, 1).var(0).clamp(min=1e-12)
            print(f"share of each z feature's variance that is crop position (within person): median "
                  f"{float(share.median()):.2f}, range {float(share.min()):.2f}-{float(share.max()):.2f}", flush=True)
    what = {"whole": "a fixed z (whole volumes)", "centre": "a fixed z (centre crops)",
            "random": "a random crop of each training person each epoch (test: centre crops)"}[a.view]
    lines = [f"### Critic on {what}: `{a.run}` of `{a.eval_dir.name}` ({datetime.date.today()})", "",
             f"{len(rows['train'])} training people (batches of 12), held-out MI over every pairing of "
             f"{len(rows['test'])} test people after each epoch; {a.seeds} seeds.", "",
             "| critic_guided_dims | critic_snps | " + " | ".join(f"MI after epoch {e + 1}" for e in range(a.epochs)) + " |",
             "|---|---|" + "---|" * a.epochs]
    for s in a.settings.split(","):
        r, k = (int(x) for x in s.split(":"))
        t = time.perf_counter()
        runs = [held_out_mi(Z, G, af, rows, r, k, a.epochs, seed, train_z=train_z) for seed in range(a.seeds)]
        cells = [" / ".join(f"{run[e]:+.3f}" for run in runs) for e in range(a.epochs)]
        lines.append(f"| {r} | {k} | " + " | ".join(cells) + " |")
        print(lines[-1], f"({time.perf_counter() - t:.0f} s)", flush=True)
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "a") as fh:
            fh.write("\n" + text)
    print(text)


if __name__ == "__main__":
    main()
