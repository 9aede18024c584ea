"""Figures as PNG with matplotlib's Agg backend: Manhattan, QQ, and a PCA spectrum (scree).

Each function takes arrays or a frame and a path, writes the file atomically, and returns
nothing. Dense points are thinned to one per output pixel before drawing, which leaves the
picture unchanged while keeping a 650k-SNP Manhattan plot fast.
"""

from __future__ import annotations

import os

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    _pyplot().close(fig)


def _thin(x: np.ndarray, y: np.ndarray, nx: int, ny: int, xmax: float, ymax: float) -> np.ndarray:
    """Indices of one point per (nx × ny) pixel cell; all points if fewer than cells."""
    if len(x) <= 20_000:
        return np.arange(len(x))
    ix = np.clip((x / max(xmax, 1e-12) * nx).astype(np.int64), 0, nx)
    iy = np.clip((y / max(ymax, 1e-12) * ny).astype(np.int64), 0, ny)
    _, first = np.unique(ix * (ny + 1) + iy, return_index=True)
    return np.sort(first)


def _chrom_key(c: str):
    c = str(c)
    return (0, int(c)) if c.isdigit() else (1, c)


def manhattan(chrom, bp, p, path: str | os.PathLike, title: str = "", lines=(5e-8,)) -> None:
    """Manhattan plot: −log10 P along the genome, chromosomes in alternating colours."""
    plt = _pyplot()
    chrom = np.asarray(chrom).astype(str)
    bp = np.asarray(bp, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p) & (p >= 0)
    chrom, bp, p = chrom[ok], bp[ok], p[ok]
    y = -np.log10(np.maximum(p, 1e-320))
    x = np.zeros_like(bp)
    ticks, labels = [], []
    offset = 0.0
    colour = np.zeros(len(bp), dtype=np.int64)
    for i, c in enumerate(sorted(set(chrom.tolist()), key=_chrom_key)):
        sel = chrom == c
        lo, hi = bp[sel].min(), bp[sel].max()
        x[sel] = bp[sel] - lo + offset
        ticks.append(offset + (hi - lo) / 2)
        labels.append(c)
        colour[sel] = i % 2
        offset += (hi - lo) + max(1.0, 0.02 * (hi - lo + 1))
    fig, ax = plt.subplots(figsize=(12, 4))
    ymax = max(float(y.max()) if len(y) else 1.0, -np.log10(min(lines)) if lines else 1.0) * 1.05
    keep = _thin(x, y, 1200, 400, max(offset, 1.0), ymax)
    for parity, col in enumerate(("#1f4e79", "#7aa6d6")):  # one colour per call: no per-point colour parsing
        sel = keep[colour[keep] == parity]
        ax.scatter(x[sel], y[sel], s=3, color=col, linewidths=0, rasterized=True)
    for ln in lines:
        ax.axhline(-np.log10(ln), color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlim(0, max(offset, 1.0))
    ax.set_ylim(0, ymax)
    ax.set_xlabel("chromosome")
    ax.set_ylabel("−log10 P")
    ax.set_title(title)
    fig.subplots_adjust(left=0.055, right=0.99, bottom=0.12, top=0.92)  # fixed: tight_layout costs a draw
    _save(fig, path)


def qq(p, path: str | os.PathLike, title: str = "", lambda_gc: float | None = None) -> None:
    """QQ plot of −log10 P against the uniform expectation, with the λGC in the legend."""
    plt = _pyplot()
    p = np.asarray(p, dtype=np.float64)
    p = np.sort(p[np.isfinite(p)])
    n = len(p)
    obs = -np.log10(np.maximum(p, 1e-320))
    exp = -np.log10((np.arange(1, n + 1) - 0.5) / max(n, 1))
    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(float(obs.max()) if n else 1.0, float(exp.max()) if n else 1.0) * 1.05
    keep = _thin(exp, obs, 500, 500, top, top)
    label = f"λGC = {lambda_gc:.3f}" if lambda_gc is not None and np.isfinite(lambda_gc) else None
    ax.scatter(exp[keep], obs[keep], s=4, color="#1f4e79", linewidths=0, rasterized=True, label=label)
    ax.plot([0, top], [0, top], color="#c0392b", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("expected −log10 P")
    ax.set_ylabel("observed −log10 P")
    ax.set_title(title)
    if label:
        ax.legend(loc="upper left")
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.1, top=0.93)
    _save(fig, path)


def scree(explained, path: str | os.PathLike, title: str = "", cumulative: bool = True) -> None:
    """Explained variance ratio per component (bars) and its cumulative sum (line)."""
    plt = _pyplot()
    v = np.asarray(explained, dtype=np.float64)
    k = np.arange(1, len(v) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(k, v, color="#7aa6d6", label="per component")
    if cumulative:
        ax.plot(k, np.cumsum(v), color="#1f4e79", marker="o", ms=3, label="cumulative")
    ax.set_xlabel("component")
    ax.set_ylabel("explained variance ratio")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def mi_curves(curves, path, max_mi: float) -> None:
    """Per-epoch MI estimates and JSE losses of `gimtool mi`, one row of two panels per model.

    `curves`: a frame with NAME, REPEAT (0-based), EPOCH, MI_VAL, MI_TRAIN, VAL_LOSS, TRAIN_LOSS;
    the best validation epoch of each seed is marked with a dot."""
    import polars as pl

    plt = _pyplot()
    names = curves["NAME"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        sub = curves.filter(pl.col("NAME") == name)
        for r in sub["REPEAT"].unique(maintain_order=True).to_list():
            c = sub.filter(pl.col("REPEAT") == r)
            ep = c["EPOCH"].to_numpy()
            col = f"C{r % 10}"
            row[0].plot(ep, c["MI_VAL"].to_numpy(), "-", color=col, label=f"validation, seed {r + 1}")
            row[0].plot(ep, c["MI_TRAIN"].to_numpy(), "--", color=col, label=f"training, seed {r + 1}")
            b = int(np.argmin(c["VAL_LOSS"].to_numpy()))
            row[0].plot([ep[b]], [c["MI_VAL"][b]], "o", color=col, ms=5)
            row[1].plot(ep, c["VAL_LOSS"].to_numpy(), "-", color=col)
            row[1].plot(ep, c["TRAIN_LOSS"].to_numpy(), "--", color=col)
        row[0].axhline(0.0, color="grey", lw=0.5)
        row[0].set(xlabel="epoch", ylabel="JSE MI estimate (nats)", title=f"{name}: MI (max {max_mi:.3f})")
        row[0].legend(fontsize=7, title="dot: best validation epoch", title_fontsize=7)
        row[1].set(xlabel="epoch", ylabel="JSE loss", title=f"{name}: loss (solid validation, dashed training)")
    fig.tight_layout()
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
