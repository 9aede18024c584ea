"""Which factors does gim's MI term push into z? The JSE's gradient into z, factor by factor, on a
simulated cohort with known truth (issue 14: why the subtle factors of the brainlike preset stay out).

For a trained run (its best.pt), the training people are embedded (z, no gradient) and cut into
batches of 12, as in training. In each batch the critic, as saved, scores every pairing, and the
gradient of the JSE with respect to z is taken: -dL/dz_i is the direction the MI term moves person
i's representation in the next step. Reported per factor of the simulation, on the training people:
  - R2_Z: ridge R^2 of the factor's true genetic value from z (what z holds now);
  - R2_PUSH: ridge R^2 of the same from the gradient rows -dL/dz (cross-validated penalty, as in
    diag_gim_training): how much the MI term's push depends on the person's genetic value of that
    factor. A factor with R2_PUSH near 0 is not being pulled into z, whatever z holds of it;
  - R2_V: ridge R^2 of the same from the critic's genetic embedding v(g) (its 16 outputs): which
    factors the critic's genetic side has learned at all.

    python benchmarks/diag_gim_gradient.py --eval-dir <evaluate.py out> --checkpoints RUN/best.pt ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from diag_gim_training import Diagnostics, ridge_r2  # noqa: E402

from gimtool.model.losses import jse_loss  # noqa: E402
from gimtool.train.freq import a1_frequencies  # noqa: E402


def push(diag: Diagnostics, checkpoint: Path, batch: int = 12, seed: int = 0) -> dict:
    from gimtool.train.embedding import embed_volumes, load_model

    dev = torch.device("cpu")
    method, modules, cfg, _ = load_model(checkpoint, dev)
    modules.eval()
    Z = embed_volumes(method, modules, diag.store, diag.img_rows, None, dev, 32, progress=False)
    tr = diag.tr
    geno = diag.G
    pos = {"chrom": torch.as_tensor(diag.positions["chrom"]), "bp": torch.as_tensor(diag.positions["bp"]),
           "cm": torch.as_tensor(diag.positions["cm"], dtype=torch.float32)}
    pos["af"] = torch.as_tensor(a1_frequencies(geno[tr]), dtype=torch.float32)
    stage = method.stages(1)[-1]
    critic = modules["critic"]
    order = np.random.default_rng(seed).permutation(tr)
    grads = np.zeros((len(order), Z.shape[1]))
    vs = np.zeros((len(order), critic.y_head[-1].out_features))
    for b in range(0, len(order) - batch + 1, batch):
        rows = order[b:b + batch]
        z = torch.as_tensor(Z[rows], dtype=torch.float32).requires_grad_(True)
        fields = {"geno": torch.as_tensor(geno[rows]), **pos}
        with torch.no_grad():
            g = method._genetic(modules, fields, stage)
        u, v = critic.project(z, g)  # eval mode: the saved running statistics, no update
        (dz,) = torch.autograd.grad(jse_loss((u @ v.t()) * critic.scale), z)
        grads[b:b + batch] = -dz.double().numpy() * batch  # per-person scale independent of the batch
        vs[b:b + batch] = v.detach().double().numpy()
    used = len(order) - len(order) % batch
    rows, G, V = order[:used], grads[:used], vs[:used]
    # the fit and the test halves of the training people (ridge_r2 takes row indices into its arrays)
    half = np.arange(used)
    fit, held = half[: used // 2], half[used // 2:]
    Y = diag.Y[rows]
    return {
        "CHECKPOINT": str(checkpoint),
        "R2_Z": [round(x, 3) for x in ridge_r2(Z[rows].astype(np.float64), Y, fit, held, per_column=True)],
        "R2_PUSH": [round(x, 3) for x in ridge_r2(G, Y, fit, held, per_column=True)],
        "R2_V": [round(x, 3) for x in ridge_r2(V, Y, fit, held, per_column=True)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", type=Path, required=True)
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    diag = Diagnostics(a.eval_dir)
    for ck in a.checkpoints:
        print(json.dumps(push(diag, ck)), flush=True)


if __name__ == "__main__":
    main()
