"""Does a training run put genetic signal into z, and does a readout keep it? Per-epoch diagnostics
on a simulated cohort with known truth (issue 14, item 7).

After every epoch the run's last.pt embeds every person, and on the test people (never seen in
training) this reports:
  - R2_Z: ridge R^2 of the true genetic values (truth/genetic.tsv) from all of z, fit on the
    training people (mean over factors): what z holds, whatever the readout;
  - R2_PCA10 / R2_GUIDED10: the same from the 10 dimensions of the paper's readout (PCs of z fit on
    the training people) and of the genotype-guided readout (stats.guided, fit on the training
    people's genotypes; *_GUIDED10_VARIMAX: the same span varimax-rotated, --guided-rotation varimax);
  - LOCI_PCA10 / LOCI_GUIDED10: true loci recovered / false loci of a quick association scan of
    those 10 dimensions on the test people (P < 5e-9, no covariates, SNPs merged into loci
    within 250 kb): a proxy for the full evaluation in evaluate.py;
  - R2_Z_BY_FACTOR: R2_Z factor by factor (major factors first in the brainlike preset);
  - LEADS_IN_TOP16/32/64: how many true loci's lead SNPs are among the 16/32/64 SNPs with the
    largest multiple R^2 on z over the training people, the SNPs the critic's selection can see;
  - the run's own training JSE and validation MI (history.tsv).

    python benchmarks/diag_gim_training.py --eval-dir benchmarks/out/eval_cpu-large --name gim \
        --method gim --epochs 0,0,8 --config extra.toml

With --checkpoints it trains nothing and diagnoses finished runs instead (one line each):

    python benchmarks/diag_gim_training.py --eval-dir benchmarks/out/eval_cpu-large \
        --checkpoints benchmarks/out/eval_cpu-large/runs/{gim,autoencoder}/best.pt
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

from gimtool.io.genostore import GenoStore  # noqa: E402
from gimtool.io.imagestore import ImageStore  # noqa: E402
from gimtool.io.tables import align, read_ids, read_table  # noqa: E402
from gimtool.stats import guided, pca  # noqa: E402

GWS = 5e-9


def _ridge_fit(Xs: np.ndarray, Y: np.ndarray, rows: np.ndarray, alpha: float) -> np.ndarray:
    A = Xs[rows].T @ Xs[rows] + alpha * len(rows) * np.eye(Xs.shape[1])
    return np.linalg.solve(A, Xs[rows].T @ (Y[rows] - Y[rows].mean(0)))


def _r2(Y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over columns of the squared correlation: the test people are one ancestry group and
    the training people two, so an intercept fit on the latter would count against 1 - SS/SS."""
    return float(np.mean([np.corrcoef(Y[:, j], pred[:, j])[0, 1] ** 2 for j in range(Y.shape[1])]))


def ridge_r2(X: np.ndarray, Y: np.ndarray, tr: np.ndarray, te: np.ndarray,
             alphas=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), per_column: bool = False):
    """Mean over columns of Y of the test R^2 (squared correlation) of a ridge fit on rows tr (X standardized on tr),
    the penalty chosen by 5-fold cross-validation within tr. (z's columns are nearly collinear and
    its genetic signal lies in low-variance directions: a fixed penalty of 1e-2 hid most of it.)"""
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-12
    Xs = (X - mu) / sd
    folds = np.array_split(np.random.default_rng(0).permutation(tr), 5)
    best = max(alphas, key=lambda a: np.mean([
        _r2(Y[f], Xs[f] @ _ridge_fit(Xs, Y, np.setdiff1d(tr, f), a) + Y[np.setdiff1d(tr, f)].mean(0)) for f in folds]))
    pred = Xs[te] @ _ridge_fit(Xs, Y, tr, best) + Y[tr].mean(0)
    if per_column:
        return [_r2(Y[te][:, [j]], pred[:, [j]]) for j in range(Y.shape[1])]
    return _r2(Y[te], pred)


def quick_loci(P: np.ndarray, G: np.ndarray, bp: np.ndarray, chrom: np.ndarray, truth: pl.DataFrame) -> tuple[int, int]:
    """(true loci recovered, false loci) of a marginal scan of each column of P (n, k) on G (n, m)."""
    from scipy.stats import t as t_dist

    Gs = pca.standardize_genotypes(G)[0]
    Gs = Gs / np.maximum(Gs.std(0), 1e-12)  # unit variance: r below is a correlation
    n = G.shape[0]
    Ps = (P - P.mean(0)) / P.std(0)
    r = Ps.T @ Gs / n  # (k, m)
    t = r * np.sqrt((n - 2) / np.maximum(1 - r**2, 1e-12))
    sig = (2 * t_dist.sf(np.abs(t), n - 2) < GWS).any(0)
    hits = np.flatnonzero(sig)
    tc, ts, te = truth["CHR"].to_numpy(), truth["START"].to_numpy(), truth["END"].to_numpy()
    found = np.zeros(truth.height, dtype=bool)
    false, last = 0, None
    for j in hits:  # SNPs sorted by position: merge within 250 kb into loci
        if last is not None and chrom[j] == chrom[last] and bp[j] - bp[last] <= 250_000:
            last = j
            continue
        last = j
        hit = (tc == chrom[j]) & (ts <= bp[j]) & (te >= bp[j])
        found |= hit
        false += int(not hit.any())
    return int(found.sum()), false


class Diagnostics:
    def __init__(self, eval_dir: Path):
        c = eval_dir / "cohort"
        self.store = ImageStore(eval_dir / "mri")
        geno = GenoStore(eval_dir / "geno.geno")
        truth = read_table(c / "truth" / "genetic.tsv")
        ids = self.store.samples
        al = align(ids, geno.samples)
        self.img_rows = al.ref_index
        self.G = np.asarray(geno.genotypes[al.table_index])
        people = ids[self.img_rows]
        alt = align(people, truth)
        assert alt.n_matched == people.height
        self.Y = truth.select(truth.columns[2:]).to_numpy()[alt.table_index]
        self.tr = align(people, read_ids(c / "train.ids")).ref_index
        self.te = align(people, read_ids(c / "test.ids")).ref_index
        self.positions = geno.positions()  # chrom, bp, cm of every SNP
        self.chrom, self.bp = self.positions["chrom"], self.positions["bp"]
        self.truth_loci = pl.read_csv(c / "truth" / "loci.tsv", separator="\t")
        self.Gtr = pca.standardize_genotypes(self.G[self.tr])[0]
        snp_index = {s: j for j, s in enumerate(geno.snps["SNP"].to_list())}
        self.lead = np.array([snp_index[s] for s in self.truth_loci["SNP"].to_list()])

    def lead_ranks(self, Z: np.ndarray) -> np.ndarray:
        """Rank (0 = first) of each true locus's lead SNP among all SNPs by multiple R^2 on z over
        the training people: what the critic's SNP selection (critic_snps) can see."""
        from gimtool.train import mi as milib
        from gimtool.train.freq import a1_frequencies

        tr = self.tr
        geno = milib.GenotypeRows(self.G, np.arange(self.G.shape[0]), np.arange(self.G.shape[1]))
        r2 = milib.multiple_r2(Z, geno, tr, a1_frequencies(self.G[tr]))
        return np.argsort(np.argsort(-r2, kind="stable"))[self.lead]

    def __call__(self, checkpoint: Path) -> dict:
        from gimtool.train.embedding import embed_volumes, load_model

        method, modules, cfg, ck = load_model(checkpoint, torch.device("cpu"))
        Z = embed_volumes(method, modules, self.store, self.img_rows, None, torch.device("cpu"), 32, progress=False).astype(np.float64)
        tr, te = self.tr, self.te
        out = {"R2_Z": ridge_r2(Z, self.Y, tr, te),
               "R2_Z_BY_FACTOR": [round(x, 3) for x in ridge_r2(Z, self.Y, tr, te, per_column=True)]}
        ranks = self.lead_ranks(Z)
        out.update({f"LEADS_IN_TOP{k}": int((ranks < k).sum()) for k in (16, 32, 64)})
        fit = pca.fit_pca(Z[tr], 10)
        P = pca.apply_pca(Z, fit.mean, fit.components)
        gf = guided.fit_guided(Z[tr], [self.Gtr], 10)
        Q = pca.apply_pca(Z, gf.mean, gf.components)
        gv = guided.fit_guided(Z[tr], [self.Gtr], 10, rotation="varimax")
        Qv = pca.apply_pca(Z, gv.mean, gv.components)
        for name, R in (("PCA10", P), ("GUIDED10", Q), ("GUIDED10_VARIMAX", Qv)):
            out[f"R2_{name}"] = ridge_r2(R, self.Y, tr, te)
            rec, false = quick_loci(R[te], self.G[te], self.bp, self.chrom, self.truth_loci)
            out[f"LOCI_{name}"] = f"{rec}/{self.truth_loci.height} ({false} false)"
        out["GUIDED_SNPS"] = gf.n_selected
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", type=Path, required=True, help="an evaluate.py output folder (cohort, mri, geno)")
    ap.add_argument("--name", help="the training run's name (its folder under EVAL_DIR/diag)")
    ap.add_argument("--checkpoints", type=Path, nargs="+", help="diagnose these finished runs' checkpoints instead of training")
    ap.add_argument("--method", default="gim")
    ap.add_argument("--epochs", default="0,0,6")
    ap.add_argument("--config", type=Path, default=None, help="TOML with overrides (the model table of evaluate.py is added)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=int, default=1, help="diagnose every k-th epoch")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.checkpoints:
        diag = Diagnostics(a.eval_dir)
        for ck in a.checkpoints:
            print(json.dumps({"CHECKPOINT": str(ck), **diag(ck)}), flush=True)
        return
    if not a.name:
        ap.error("--name is required when training (or give --checkpoints)")
    from gimtool.model.methods import get_method
    from gimtool.train.config import load_config, parse_epochs
    from gimtool.train.loop import prepare_data, train

    d = a.eval_dir
    run = d / "diag" / a.name
    run.mkdir(parents=True, exist_ok=True)
    diag = Diagnostics(d)
    cfg = load_config(a.config, {"method": a.method, "epochs": parse_epochs(a.epochs), "batch_size": 12, "threads": a.threads})
    # the model table of evaluate.py's CPU configurations (quarter width), under the --config TOML's
    # own [model] keys, so that a run here is the one evaluate.py would train (before 2026-12-02 it
    # was not added, and runs here trained at full width)
    import tomllib

    from evaluate import CONFIGS

    own = tomllib.loads(a.config.read_text()).get("model", {}) if a.config else {}
    table = tomllib.loads(CONFIGS["cpu"]["model_toml"]).get("model", {})
    cfg.update({"model": {k: v for k, v in table.items() if k not in own}}, source="evaluate.py's CPU model table")
    method = get_method(cfg.method)
    data = prepare_data(cfg, method, d / "mri", d / "geno.geno", read_ids(d / "cohort" / "train.ids"),
                        read_ids(d / "cohort" / "val.ids"))
    rows: list[dict] = []
    t0 = time.time()

    def on_epoch(e: int) -> None:
        if e % a.every:
            return
        hist = pl.read_csv(run / "history.tsv", separator="\t", null_values="NA").row(-1, named=True)
        row = {"EPOCH": e, "STAGE": hist["STAGE"], "TRAIN_JSE": hist.get("TRAIN_JSE"), "VAL_MI": hist.get("VAL_MI"),
               "TRAIN_RECON": hist.get("TRAIN_RECON"), **diag(run / "last.pt"), "MIN": round((time.time() - t0) / 60, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    if method.trains:
        train(cfg, method, data, run, on_epoch_end=on_epoch, progress=False)
    else:
        train(cfg, method, data, run, progress=False)
        row = {"EPOCH": 0, **diag(run / "model.pt")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    pl.DataFrame(rows).write_csv(run / "diag.tsv", separator="\t")


if __name__ == "__main__":
    main()
