"""Figures as PNG: Manhattan and QQ (one per phenotype: drawn by gimtool.io.rasterplot in the
look of matplotlib's defaults, without matplotlib), a PCA spectrum (scree) and MI curves
(matplotlib's Agg backend).

Each function takes arrays or a frame and a path, writes the file atomically, and returns
nothing. Manhattan and QQ points are drawn at the resolution shown: one per pixel, and every
point with P < 1e-3 on its own, which leaves the picture unchanged while keeping a 650k-SNP
Manhattan plot fast.
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


def _chrom_key(c: str):
    c = str(c)
    return (0, int(c)) if c.isdigit() else (1, c)


def genome_positions(chrom, bp) -> tuple[np.ndarray, np.ndarray, list[float], list[str], float]:
    """x of each SNP along the concatenated chromosomes (in chromosome order, 2% gaps), the
    parity of its chromosome (for the alternating colours), tick positions and labels, and the
    genome's length on that axis. Works on runs of equal chromosome codes (a .bim is sorted by
    chromosome), so 650k SNPs take milliseconds."""
    chrom = np.asarray(chrom)
    bp = np.asarray(bp, dtype=np.float64)
    n = len(bp)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64), [], [], 1.0
    starts = np.r_[0, np.flatnonzero(chrom[1:] != chrom[:-1]) + 1]
    run_names = [str(c) for c in chrom[starts].tolist()]
    names = sorted(set(run_names), key=_chrom_key)
    run_len = np.diff(np.r_[starts, n])
    run_rank = np.array([names.index(c) for c in run_names])
    rank = np.repeat(run_rank, run_len)
    lo = np.full(len(names), np.inf)
    hi = np.full(len(names), -np.inf)
    np.minimum.at(lo, run_rank, np.minimum.reduceat(bp, starts))
    np.maximum.at(hi, run_rank, np.maximum.reduceat(bp, starts))
    gap = np.maximum(1.0, 0.02 * (hi - lo + 1))
    offset = np.r_[0.0, np.cumsum((hi - lo) + gap)]
    x = bp - lo[rank] + offset[rank]
    ticks = (offset[:-1] + (hi - lo) / 2).tolist()
    return x, rank % 2, ticks, names, max(float(offset[-1]), 1.0)


# every point with P below this is drawn on its own; the others one per pixel
EACH_BELOW = 1e-3


def manhattan(chrom, bp, p, path: str | os.PathLike, title: str = "", lines=(5e-8,), positions=None) -> None:
    """Manhattan plot: −log10 P along the genome, chromosomes in alternating colours (12 x 4 in,
    100 dpi), drawn at the resolution shown: one disc per pixel, every point with P < 1e-3.
    positions: genome_positions(chrom, bp), when several phenotypes share the SNPs."""
    from gimtool.io.rasterplot import Canvas, nice_ticks, thin_points, tick_labels

    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p) & (p >= 0)
    x, parity, ticks, labels, length = positions if positions is not None else genome_positions(chrom, bp)
    x, parity, p = x[ok], parity[ok], p[ok]
    y = -np.log10(np.maximum(p, 1e-320))
    ymax = max(float(y.max()) if len(y) else 1.0, -np.log10(min(lines)) if lines else 1.0) * 1.05
    cv = Canvas(12, 4, (0.055, 0.99, 0.12, 0.92), (0.0, length), (0.0, ymax))
    rest, each = thin_points(cv.px(x), cv.py(y), p, EACH_BELOW)
    for par, col in enumerate(("#1f4e79", "#7aa6d6")):  # drawn in this order, as before
        cv.points(x[rest[parity[rest] == par]], y[rest[parity[rest] == par]], col, 3)
        cv.points(x[each[parity[each] == par]], y[each[parity[each] == par]], col, 3, exact=True)
    for ln in lines:
        cv.hline(-np.log10(ln), "#c0392b", 0.8, dashed=True)
    yt = nice_ticks(0.0, ymax, cv.y1 - cv.y0, 10, 2)
    ylab = tick_labels(yt)
    cv.frame(ticks, yt, labels, ylab, xtick_pt=7)
    cv.labels("chromosome", "−log10 P", title, xtick_pt=7, ytick_width=cv.ytick_label_width(ylab))
    cv.save(path)


def qq(p, path: str | os.PathLike, title: str = "", lambda_gc: float | None = None) -> None:
    """QQ plot of −log10 P against the uniform expectation (5 x 5 in), with the λGC in a legend;
    one disc per pixel, every point with P < 1e-3."""
    from gimtool.io.rasterplot import PT, Canvas, nice_ticks, thin_points, tick_labels

    p = np.asarray(p, dtype=np.float64)
    p = np.sort(p[np.isfinite(p)])
    n = len(p)
    obs = -np.log10(np.maximum(p, 1e-320))
    exp = -np.log10((np.arange(1, n + 1) - 0.5) / max(n, 1))
    top = max(float(obs.max()) if n else 1.0, float(exp.max()) if n else 1.0) * 1.05
    cv = Canvas(5, 5, (0.13, 0.97, 0.1, 0.93), (0.0, top), (0.0, top))
    rest, each = thin_points(cv.px(exp), cv.py(obs), p, EACH_BELOW)
    cv.points(exp[rest], obs[rest], "#1f4e79", 4)
    cv.points(exp[each], obs[each], "#1f4e79", 4, exact=True)
    cv.line(0.0, 0.0, top, top, "#c0392b", 0.8)
    xt = nice_ticks(0.0, top, cv.x1 - cv.x0, 10, 3)
    yt = nice_ticks(0.0, top, cv.y1 - cv.y0, 10, 2)
    ylab = tick_labels(yt)
    cv.frame(xt, yt, None, ylab)
    cv.labels("expected −log10 P", "observed −log10 P", title, ytick_width=cv.ytick_label_width(ylab))
    if lambda_gc is not None and np.isfinite(lambda_gc):
        cv.legend(f"λGC = {lambda_gc:.3f}", "#1f4e79", 4)
    cv.save(path)


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
