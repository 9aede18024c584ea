"""Can gim's critic see the genetic signal at all? A diagnostic on a simulated cohort.

gim's first stage trains the JSE critic with the genetic encoder frozen at its random
initialisation. This script gives the critic the best possible image side, the simulation's true
genetic factors, and trains it as gim does (batch 12, Adam lr 1e-3) with the genetic encoder
(a) frozen at random init, (b) trained, (c) an MLP encoder, trained; held-out people (30%) tell
whether what it learns generalizes. If (a) stays at MI 0 while (b)/(c) rise, the frozen stage
cannot teach the image encoder anything on this cohort, whatever the image encoder does.

    python benchmarks/diag_gim_critic.py --eval-dir benchmarks/out/eval_cpu-large \
        --out benchmarks/results/gim_critic_diagnostic.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from gimtool.io.genostore import GenoStore
from gimtool.io.tables import read_ids, read_table
from gimtool.model.config import ModelConfig
from gimtool.train import mi as mi_mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", type=Path, required=True, help="an evaluate.py output folder")
    ap.add_argument("--ids", default="train", help="train or all (train + val + test people)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = a.eval_dir
    store = GenoStore(d / "geno.geno")
    parts = ["train"] if a.ids == "train" else ["train", "val", "test"]
    ids = [tuple(r) for p in parts for r in read_ids(d / "cohort" / f"{p}.ids").iter_rows()]
    factors = read_table(d / "cohort" / "truth" / "factors.tsv")
    fmap = {(f, i): k for k, (f, i) in enumerate(zip(factors["FID"], factors["IID"]))}
    smap = {(f, i): k for k, (f, i) in enumerate(zip(store.samples["FID"], store.samples["IID"]))}
    ids = [x for x in ids if x in fmap and x in smap]
    Z = factors.select(factors.columns[2:]).to_numpy()[[fmap[x] for x in ids]].astype(np.float32)
    rows = np.array([smap[x] for x in ids])
    cols = np.arange(store.genotypes.shape[1])
    geno = mi_mod.GenotypeRows(store.genotypes, rows, cols)
    positions = store.positions()
    quarter = ModelConfig.from_dict({"conv_channels": [8, 16, 32], "genetic_dims": [8, 16, 32]})

    variants = {
        "transformer, frozen at random init (gim's first stage)": ("transformer", True),
        "transformer, trained": ("transformer", False),
        "MLP encoder, trained": ("mlp", False),
    }
    original = mi_mod.JSECritic.__init__

    def frozen_init(self, cfg, encoder, z_dim, n_snps):
        original(self, cfg, encoder, z_dim, n_snps)
        for p in self.genetic.parameters():
            p.requires_grad_(False)

    lines = [f"# gim's critic on the true factors: {len(ids)} people ({a.ids}), {len(cols)} SNPs, batch {a.batch_size}",
             "", f"Cohort: {d}; 30% of the people held out; Adam lr 1e-3; up to {a.epochs} epochs, patience 8; "
             f"{a.seeds} seeds; quarter-width model (genetic_dims 8, 16, 32) as in the CPU evaluation. "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| genetic encoder | MI validation (per seed) | MI training (per seed) | best epoch |", "| --- | --- | --- | --- |"]
    for label, (enc, frozen) in variants.items():
        settings = mi_mod.MISettings(encoder=enc, max_epochs=a.epochs, patience=8, batch_size=a.batch_size, model=quarter)
        mi_mod.JSECritic.__init__ = frozen_init if frozen else original
        runs = []
        t0 = time.perf_counter()
        for s in range(a.seeds):
            runs.append(mi_mod.estimate_once(Z, geno, positions, cols, settings, seed=s))
        mi_mod.JSECritic.__init__ = original
        row = (f"| {label} | {', '.join(f'{r.mi_val:.4f}' for r in runs)} | {', '.join(f'{r.mi_train:.4f}' for r in runs)} "
               f"| {', '.join(str(r.best_epoch) for r in runs)} |")
        print(row, f"({time.perf_counter() - t0:.0f} s)", flush=True)
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
