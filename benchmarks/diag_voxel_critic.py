"""A critic on the voxels: does its genetic side learn the factors that gim's critic on z does not?
(issue 14; benchmarks/results/gim_subtle_factors.md)

gim's critic, the SeparableCritic with the linear genetic encoder on the critic_snps SNPs of most
multiple R^2, is trained alone (batch 12, AdamW 1e-3, weight decay 0.01, its image head on whitened
input) on the training people, with one of two image sides:
  - `--image-side voxel`: the top --pcs voxel PCs of the training people's volumes (the images'
    linear content);
  - `--image-side TSV`: an embeddings table (FID IID z1..), e.g. a trained run's `embed` output.
`--snps-from voxel` chooses the critic's SNPs by their multiple R^2 on the voxel PCs whatever the
image side is. After every epoch it reports the held-out MI on 300 test people. It also reports
R2_V, the ridge R^2 (fit on the training people, test people) of each simulated factor's true
genetic value from the critic's genetic embedding v(g): which factors' polygenic scores it has
learned. The truth is used only in that report.

`--write-v TSV` writes v(g) of every person after the last epoch. It is a function of the
genotypes alone, learned without the truth, and can serve as a regression target for the image
encoder (`diag_encoder_capacity.py --targets TSV --embeddings OUT`, then `evaluate.py --embeddings
NAME=OUT`): a prototype of an image encoder taught by a genetic side that learned from the voxels.

    python benchmarks/diag_voxel_critic.py --eval-dir <evaluate.py out> --image-side voxel --epochs 6 \
        --write-v v.tsv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from diag_encoder_capacity import top_pcs  # noqa: E402
from diag_gim_critic_fixed_z import critic_step  # noqa: E402
from diag_gim_training import Diagnostics, ridge_r2  # noqa: E402

from gimtool.io.tables import align, read_table, write_table  # noqa: E402
from gimtool.model.config import ModelConfig  # noqa: E402
from gimtool.model.critic import RunningStandardize, SeparableCritic, SnpSelector  # noqa: E402
from gimtool.model.genetic import build_genetic_encoder  # noqa: E402
from gimtool.model.losses import jse_loss, jse_mi  # noqa: E402
from gimtool.train.freq import a1_frequencies  # noqa: E402


def voxel_pcs(D: Diagnostics, k: int) -> np.ndarray:
    X = np.stack([np.asarray(D.store.volume(int(i)), dtype=np.float32).ravel() for i in D.img_rows])
    return top_pcs(X, D.tr, k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", type=Path, required=True)
    ap.add_argument("--image-side", default="voxel", help="'voxel' or an embeddings TSV")
    ap.add_argument("--snps-from", choices=("image", "voxel"), default="image")
    ap.add_argument("--pcs", type=int, default=128)
    ap.add_argument("--snps", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-v", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    D = Diagnostics(a.eval_dir)
    tr, te = D.tr, D.te
    people = D.store.samples[D.img_rows]
    vox = voxel_pcs(D, a.pcs) if (a.image_side == "voxel" or a.snps_from == "voxel") else None
    if a.image_side == "voxel":
        Z = vox
    else:
        emb = read_table(a.image_side)
        al = align(people, emb)
        if al.n_matched != people.height:
            raise SystemExit(f"{a.image_side}: {people.height - al.n_matched} people have no row")
        Z = emb.select(emb.columns[2:]).to_numpy()[al.table_index]
    Z = torch.tensor(Z, dtype=torch.float32)
    sel_side = torch.tensor(vox, dtype=torch.float32) if a.snps_from == "voxel" else None
    G = torch.tensor(D.G)
    L = G.shape[1]
    af = torch.tensor(a1_frequencies(D.G[tr]), dtype=torch.float32)
    pos = D.positions
    chrom, bp = torch.tensor(pos["chrom"]), torch.tensor(pos["bp"])
    cm = torch.tensor(pos["cm"], dtype=torch.float32)
    cfg = ModelConfig(critic_snps=a.snps, critic_whiten_ridge=0.01, genetic_dims=(8, 16, 32))
    torch.manual_seed(a.seed)
    enc = build_genetic_encoder(cfg, L)
    critic = SeparableCritic(cfg, Z.shape[1], cfg.genetic_out_dim, n_snps=L)
    sel_norm = None
    if sel_side is not None:  # the SNPs by their multiple R^2 on the voxel PCs
        critic.selector = SnpSelector(L, sel_side.shape[1], a.snps)
        sel_norm = RunningStandardize(sel_side.shape[1])
        critic.whiten_ridge = 0.0  # the selector's covariance is the voxel PCs', not the image side's
    opt = torch.optim.AdamW([*enc.parameters(), *critic.parameters()], lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(a.seed)
    held = torch.as_tensor(te[:300])
    for ep in range(a.epochs):
        critic.train()
        enc.train()
        t0 = time.time()
        perm = rng.permutation(tr)
        for b in range(0, len(perm) - 11, 12):
            k = torch.as_tensor(perm[b:b + 12])
            select_on = None
            if sel_norm is not None:
                sel_norm(sel_side[k])
                select_on = sel_norm.peek(sel_side[k])
            critic_step(critic, enc, opt, Z[k], G[k], (chrom, bp, cm), af, select_on)
        critic.eval()
        enc.eval()
        with torch.no_grad():
            mask = critic.selector.mask()
            V = torch.cat([critic.y_head(critic.y_norm(enc(G[i:i + 256], chrom, bp, cm, mask, af)))
                           for i in range(0, G.shape[0], 256)]).double().numpy()
            mi = float(jse_mi(jse_loss(critic(Z[held], enc(G[held], chrom, bp, cm, mask, af)))))
        r2v = ridge_r2(V, D.Y, tr, te, per_column=True)
        print(json.dumps({"image_side": a.image_side, "snps_from": a.snps_from, "epoch": ep + 1, "heldout_mi_300": round(mi, 3),
                          "R2_V": [round(x, 3) for x in r2v], "seconds": round(time.time() - t0, 1)}), flush=True)
    if a.write_v is not None:
        cols = {f"v{j + 1}": pl.Series(V[:, j].astype(np.float32)) for j in range(V.shape[1])}
        write_table(people.select(people.columns[:2]).with_columns(**cols), a.write_v)


if __name__ == "__main__":
    main()
