"""Held-out mutual information between representations and genotypes (paper, appendix A).

A fresh JSE critic D(z, g) = <u(z), v(enc(g))> / sqrt(k) (an MLP u on the representation, the
paper's genetic encoder, or an MLP on allele counts, under v) is trained on (representation,
genotype) pairs of one part of the given people (estimator-train) until its loss on the other
part (estimator-validation) has not improved for `patience` epochs. With the converged JSE loss
L = mean sp(-T_pos) + mean sp(T_neg), the estimate is 2 ln 2 - L: 0 for a critic that cannot tell
pairs from non-pairs, at most 2 ln 2. It is reported on both parts at the epoch of the best
validation loss: the validation figure is the honest one (pairs the critic never saw), the
training figure is the paper's (the critic trained on the very pairs it is scored on).

Losses reported per epoch are evaluated on a whole part at once, every other person of the part
serving as a negative, so that they do not depend on how the people were batched. The
separable critic makes that an (n, k) x (k, n) product, done in row blocks.

Library only: arrays in, arrays and frames out; no paths, no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gimtool.model.config import ModelConfig
from gimtool.model.critic import SeparableCritic
from gimtool.model.genetic import build_genetic_encoder
from gimtool.model.losses import jse_loss, jse_loss_separable, jse_mi
from gimtool.train.freq import a1_frequencies

LN2 = math.log(2.0)
MAX_MI = 2 * LN2
ENCODERS = ("transformer", "mlp", "linear")
MIN_PER_PART = 4  # a JSE loss needs at least 2 people, and an estimate worth the name more


@dataclass
class MISettings:
    """How the estimator is trained. Defaults follow the paper (Adam, lr 1e-3) where it says."""

    encoder: str = "transformer"
    val_frac: float = 0.3
    max_epochs: int = 200
    patience: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    # > 0: the critic sees only the select_snps SNPs with the largest multiple R^2 on the
    # representation, chosen on the estimator-train people of each repeat (never the validation
    # people, so the validation estimate stays honest). With hundreds of people and thousands of
    # SNPs a critic over all SNPs memorizes before it generalizes (README, "GIM in practice").
    select_snps: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    eval_block: int = 4096  # rows of the score matrix evaluated at once

    def validate(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"genetic encoder {self.encoder!r}: expected one of {', '.join(ENCODERS)}")
        if not 0.0 < self.val_frac < 1.0:
            raise ValueError(f"val_frac = {self.val_frac}: expected a fraction strictly between 0 and 1")
        if self.select_snps < 0:
            raise ValueError(f"select_snps = {self.select_snps}: expected 0 (all SNPs) or a positive number")
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 2:
            raise ValueError("max_epochs and patience must be >= 1 and batch_size >= 2")


@dataclass
class MIRun:
    """One estimator run (one seed).

    curves: per epoch, dicts with EPOCH, BATCH_LOSS (mean minibatch loss during the epoch),
    TRAIN_LOSS, VAL_LOSS (whole-part JSE losses after the epoch), MI_TRAIN, MI_VAL.
    """

    mi_val: float
    mi_train: float
    best_epoch: int
    n_train: int
    n_val: int
    curves: list[dict]
    snps: np.ndarray | None = None  # store columns the critic saw when SNPs were selected


@dataclass
class MIResult:
    runs: list[MIRun]

    @staticmethod
    def _mean_se(x: list[float]) -> tuple[float, float]:
        a = np.asarray(x, dtype=np.float64)
        se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
        return float(a.mean()), se

    @property
    def mi_val(self) -> tuple[float, float]:
        """(mean, standard error over repeats; NaN for one repeat)."""
        return self._mean_se([r.mi_val for r in self.runs])

    @property
    def mi_train(self) -> tuple[float, float]:
        return self._mean_se([r.mi_train for r in self.runs])


def split_people(n: int, val_frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random split of n people into (estimator-train, estimator-validation) index arrays (sorted)."""
    n_val = int(round(n * val_frac))
    if n_val < MIN_PER_PART or n - n_val < MIN_PER_PART:
        raise ValueError(
            f"{n} people with val_frac {val_frac} leave {n - n_val} for training and {n_val} for validation; "
            f"each part needs at least {MIN_PER_PART}"
        )
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def even_snp_subset(n_snps: int, n: int | None) -> np.ndarray:
    """Indices of `n` SNPs evenly spread over the array (all when n is None or >= n_snps)."""
    if n is None or n >= n_snps:
        return np.arange(n_snps)
    if n < 1:
        raise ValueError(f"SNP subsample {n}: expected at least 1")
    return np.unique(np.linspace(0, n_snps - 1, n).round().astype(np.int64))


def standardize_columns(Z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Centre and scale Z (n, d) by the mean and SD of the rows `ref` (estimator-train only)."""
    mu = Z[ref].mean(0)
    sd = Z[ref].std(0)
    sd[sd == 0] = 1.0
    return ((Z - mu) / sd).astype(np.float32)


class JSECritic(nn.Module):
    """z (B, d) and genotypes (B, L) -> (B, B) scores; the genetic encoder is fresh."""

    def __init__(self, cfg: ModelConfig, encoder: str, z_dim: int, n_snps: int):
        super().__init__()
        self.genetic = build_genetic_encoder(cfg.replace(genetic_encoder=encoder), n_snps)
        self.critic = SeparableCritic(cfg, z_dim, cfg.genetic_out_dim)

    def heads(self, z: torch.Tensor, geno: torch.Tensor, pos: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) projections u(z), v(enc(g)) whose scaled products are the scores."""
        g = self.genetic(geno, pos["chrom"], pos["bp"], pos["cm"], None, pos.get("af"))
        return self.critic.project(z, g)

    def forward(self, z: torch.Tensor, geno: torch.Tensor, pos: dict[str, torch.Tensor]) -> torch.Tensor:
        g = self.genetic(geno, pos["chrom"], pos["bp"], pos["cm"], None, pos.get("af"))
        return self.critic(z, g)


def multiple_r2(Z: np.ndarray, geno: "GenotypeRows", rows: np.ndarray, af: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(L,) multiple R^2 of each SNP's standardized genotypes on the columns of Z, over people `rows`.

    Z (n, d) is centred and whitened on `rows` (directions of negligible variance dropped), so that
    R^2_j = |Zw' x_j|^2 / (n x_j' x_j); genotypes (g - 2f)/sd with f = af (the frequencies of the
    same people, so x is centred on them), missing calls at the mean.
    Reads `chunk` people at a time: memory O(d L).
    """
    from gimtool.stats.pca import standardize_genotypes

    rows = np.asarray(rows)
    zc = Z[rows] - Z[rows].mean(0)
    lam, U = np.linalg.eigh(zc.T @ zc / rows.size)
    keep = lam > 1e-8 * max(float(lam.max()), 1e-300)
    zw = zc @ (U[:, keep] / np.sqrt(lam[keep]))
    b = np.zeros((zw.shape[1], len(af)))
    ss = np.zeros(len(af))
    for a in range(0, rows.size, chunk):
        x, _ = standardize_genotypes(geno[rows[a:a + chunk]], af)
        b += zw[a:a + chunk].T @ x
        ss += (x * x).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = (b * b).sum(0) / (rows.size * ss)
    return np.where(np.isfinite(r2), r2, 0.0)


class GenotypeRows:
    """Genotypes of the given people, SNP columns `cols`: held in memory (int8) when they fit
    `max_bytes`, else read from the (memory-mapped) store batch by batch."""

    def __init__(self, genotypes: np.ndarray, rows: np.ndarray, cols: np.ndarray, max_bytes: int = 2 << 30):
        self.src, self.rows, self.cols = genotypes, np.asarray(rows), np.asarray(cols)
        self.full_cols = self.cols.size == genotypes.shape[1]
        self.cache = self._read(np.arange(self.rows.size)) if self.rows.size * self.cols.size <= max_bytes else None

    def _read(self, k: np.ndarray) -> np.ndarray:
        r = self.rows[k]
        order = np.argsort(r, kind="stable")  # a sorted read is sequential on a memmap
        g = np.asarray(self.src[r[order]])
        if not self.full_cols:
            g = g[:, self.cols]
        out = np.empty_like(g)
        out[order] = g
        return out

    def __getitem__(self, k: np.ndarray) -> np.ndarray:
        """People k (positions in `rows`) -> (len(k), n_cols) int8."""
        k = np.asarray(k)
        return self.cache[k] if self.cache is not None else self._read(k)

    def __len__(self) -> int:
        return self.rows.size


def _positions_t(positions: dict[str, np.ndarray], cols: np.ndarray, device) -> dict[str, torch.Tensor]:
    return {
        "chrom": torch.as_tensor(np.asarray(positions["chrom"])[cols], dtype=torch.long, device=device),
        "bp": torch.as_tensor(np.asarray(positions["bp"])[cols], dtype=torch.float64, device=device),
        "cm": torch.as_tensor(np.asarray(positions["cm"])[cols], dtype=torch.float32, device=device),
    }


@torch.no_grad()
def _part_loss(model: JSECritic, Z_t: torch.Tensor, geno: GenotypeRows, idx: np.ndarray, pos, batch: int, block: int) -> float:
    model.eval()
    us, vs = [], []
    for a in range(0, idx.size, max(batch, 256)):
        k = idx[a : a + max(batch, 256)]
        g = torch.as_tensor(geno[k], device=Z_t.device)
        u, v = model.heads(Z_t[torch.as_tensor(k, device=Z_t.device)], g, pos)
        us.append(u.float())
        vs.append(v.float())
    model.train()
    return float(jse_loss_separable(torch.cat(us), torch.cat(vs), model.critic.scale, block))


def _select(Z: np.ndarray, geno, tr: np.ndarray, af: np.ndarray, k: int) -> np.ndarray | None:
    """Sorted local columns of the k SNPs with the largest multiple R^2 on Z over people tr, or
    None when every SNP is used (k = 0 or k >= the SNP count)."""
    if not 0 < k < af.size:
        return None
    return np.sort(np.argsort(-multiple_r2(Z, geno, tr, af), kind="stable")[:k])


def estimate_once(
    Z: np.ndarray,
    geno: GenotypeRows,
    positions: dict[str, np.ndarray],
    cols: np.ndarray,
    settings: MISettings,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[dict], None] | None = None,
) -> MIRun:
    """Train one fresh critic on a random split of the people (seed) and return its estimates.

    Z: (n, d) representations of the people of `geno` (same order), no missing values.
    positions: chrom, bp, cm arrays over all SNPs of the store; `cols` the SNP columns used.
    """
    settings.validate()
    n, d = Z.shape
    if len(geno) != n:
        raise ValueError(f"{n} representation rows but {len(geno)} genotype rows")
    if not np.isfinite(Z).all():
        raise ValueError("representations contain missing or non-finite values")
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    tr, va = split_people(n, settings.val_frac, rng)
    torch.manual_seed(seed)
    Z_t = torch.as_tensor(standardize_columns(Z, tr), device=device)
    # standardized genotypes use the frequencies of the estimator-train people only
    af = a1_frequencies(geno[tr])
    selected = _select(Z, geno, tr, af, settings.select_snps)
    if selected is not None:
        geno, cols, af = GenotypeRows(geno.src, geno.rows, geno.cols[selected]), cols[selected], af[selected]
    pos = _positions_t(positions, cols, device)
    pos["af"] = torch.as_tensor(af, dtype=torch.float32, device=device)
    model = JSECritic(settings.model, settings.encoder, d, cols.size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    bs = min(settings.batch_size, tr.size)

    def evaluate() -> tuple[float, float]:
        return (_part_loss(model, Z_t, geno, tr, pos, bs, settings.eval_block),
                _part_loss(model, Z_t, geno, va, pos, bs, settings.eval_block))

    curves: list[dict] = []
    best = (math.inf, 0, math.nan, math.nan)  # val loss, epoch, mi_val, mi_train
    tl0, vl0 = evaluate()
    curves.append({"EPOCH": 0, "BATCH_LOSS": math.nan, "TRAIN_LOSS": tl0, "VAL_LOSS": vl0,
                   "MI_TRAIN": jse_mi(tl0), "MI_VAL": jse_mi(vl0)})
    best = (vl0, 0, jse_mi(vl0), jse_mi(tl0))
    since = 0
    for epoch in range(1, settings.max_epochs + 1):
        perm = tr[rng.permutation(tr.size)]
        # a last batch of one person has no negative: fold it into the previous one
        bounds = list(range(0, perm.size, bs))
        if perm.size - bounds[-1] < 2 and len(bounds) > 1:
            bounds.pop()
        total, count = 0.0, 0
        for j, a in enumerate(bounds):
            k = perm[a : bounds[j + 1]] if j + 1 < len(bounds) else perm[a:]
            z = Z_t[torch.as_tensor(k, device=device)]
            g = torch.as_tensor(geno[k], device=device)
            loss = jse_loss(model(z, g, pos))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * k.size
            count += k.size
        tl, vl = evaluate()
        row = {"EPOCH": epoch, "BATCH_LOSS": total / count, "TRAIN_LOSS": tl, "VAL_LOSS": vl,
               "MI_TRAIN": jse_mi(tl), "MI_VAL": jse_mi(vl)}
        curves.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if vl < best[0]:
            best = (vl, epoch, jse_mi(vl), jse_mi(tl))
            since = 0
        else:
            since += 1
            if since >= settings.patience:
                break
    return MIRun(mi_val=best[2], mi_train=best[3], best_epoch=best[1], n_train=tr.size, n_val=va.size, curves=curves,
                 snps=cols.copy() if selected is not None else None)


def estimate_mi(
    Z: np.ndarray,
    geno: GenotypeRows,
    positions: dict[str, np.ndarray],
    cols: np.ndarray,
    settings: MISettings,
    repeats: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, dict], None] | None = None,
) -> MIResult:
    """`repeats` independent estimators (seeds seed, seed+1, ...: new split, new initialisation)."""
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}: expected at least 1")
    runs = []
    for r in range(repeats):
        cb = (lambda row, r=r: on_epoch(r, row)) if on_epoch is not None else None
        runs.append(estimate_once(Z, geno, positions, cols, settings, seed + r, device, cb))
    return MIResult(runs)


@dataclass
class PairedPeople:
    """People with both a complete representation and genotypes.

    Z: (n, d) float64 representations; store_rows: (n,) rows of the genotype store (same people).
    counts: what was matched and dropped, for the log.
    """

    Z: np.ndarray
    store_rows: np.ndarray
    fid: list[str]
    iid: list[str]
    counts: dict[str, int]


def pair_people(store_samples, store_mask: np.ndarray, table, columns: list[str]) -> PairedPeople:
    """Match a representation table (FID IID columns...) with the selected store samples.

    store_samples: (FID, IID) frame of the store; store_mask: bool over it (--keep/--remove).
    People missing any of `columns` are dropped. Order follows the store.
    """
    from gimtool.io.tables import align

    sel = np.flatnonzero(store_mask)
    al = align(store_samples[sel], table)
    Z = table.select(columns).to_numpy().astype(np.float64)[al.table_index]
    complete = np.isfinite(Z).all(1)
    rows = sel[al.ref_index][complete]
    ids = store_samples[rows]
    return PairedPeople(
        Z=Z[complete], store_rows=rows, fid=ids["FID"].to_list(), iid=ids["IID"].to_list(),
        counts={"table": table.height, "selected": int(sel.size), "matched": al.n_matched,
                "incomplete": int((~complete).sum()), "used": int(complete.sum())},
    )


def small_transformer_config(**changes) -> ModelConfig:
    """A genetic transformer small enough for tests and CPU runs (same architecture, narrower)."""
    base = dict(genetic_dims=(16, 32), window=4, pool_rate=4, heads=2, pos_dim=16, pos_proj_dim=4,
                rbf_centres=4, genetic_out_dim=32, critic_hidden=(64,), critic_dim=32, mlp_hidden=64)
    base.update(changes)
    return ModelConfig(**base)


__all__ = [
    "MAX_MI", "MISettings", "MIRun", "MIResult", "JSECritic", "GenotypeRows", "multiple_r2", "split_people", "even_snp_subset",
    "standardize_columns", "jse_loss_separable", "PairedPeople", "pair_people", "estimate_once", "estimate_mi", "small_transformer_config",
]
