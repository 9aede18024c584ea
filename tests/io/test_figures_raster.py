"""The Manhattan and QQ figures drawn at the resolution shown (gimtool.io.rasterplot): the thinning
keeps every point with P < 1e-3 and every pixel the others cover; the figures look like
matplotlib's drawing of the same data (the renderer they replace); the PNG writer is lossless."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gimtool.io import figures
from gimtool.io.rasterplot import Canvas, nice_ticks, thin_points, write_png


def _gwas_like(m=60_000, seed=0):
    rng = np.random.default_rng(seed)
    chrom = np.repeat(np.arange(1, 23), int(np.ceil(m / 22)))[:m].astype(str)
    bp = (np.arange(m) % (m // 22 + 1)) * 10_000 + 1
    p = rng.random(m)
    p[1000:1012] = 10.0 ** -rng.uniform(4, 14, 12)  # a peak
    p[rng.choice(m, 40, replace=False)] = 10.0 ** -rng.uniform(3, 5, 40)  # scattered small P
    p[7] = np.nan  # untested
    return chrom, bp, p


def test_thinning_keeps_small_p_and_pixel_coverage():
    chrom, bp, p = _gwas_like()
    ok = np.isfinite(p)
    x, parity, *_ , length = figures.genome_positions(chrom, bp)
    x, p = x[ok], p[ok]
    y = -np.log10(p)
    cv = Canvas(12, 4, (0.055, 0.99, 0.12, 0.92), (0.0, length), (0.0, y.max() * 1.05))
    px, py = cv.px(x), cv.py(y)
    rest, each = thin_points(px, py, p, 1e-3)
    # every point with P < 1e-3, each on its own
    np.testing.assert_array_equal(np.sort(each), np.flatnonzero(p < 1e-3))
    # the others: one per pixel, covering exactly the pixels all of them cover
    others = np.flatnonzero(p >= 1e-3)
    cells = lambda idx: set(zip(np.round(px[idx]).astype(int).tolist(), np.round(py[idx]).astype(int).tolist()))
    assert cells(rest) == cells(others)
    assert len(cells(rest)) == len(rest)  # no pixel twice
    assert len(rest) < 0.8 * len(others)  # it does thin
    # and drawing the kept points gives the same picture as drawing them all
    imgs = []
    for idx in (others, rest):
        c = Canvas(12, 4, (0.055, 0.99, 0.12, 0.92), (0.0, length), (0.0, y.max() * 1.05))
        c.points(x[idx], y[idx], "#1f4e79", 3)
        c.flush()
        imgs.append(c.img)
    np.testing.assert_array_equal(imgs[0], imgs[1])


def test_every_small_p_point_is_drawn(tmp_path):
    """A lone point far above the rest shows in the Manhattan and the QQ figure where it belongs."""
    chrom, bp, p = _gwas_like()
    p[30_000] = 1e-20
    figures.manhattan(chrom, bp, p, tmp_path / "m.png", title="T", lines=(5e-8,))
    figures.qq(p, tmp_path / "q.png", title="T", lambda_gc=1.01)
    m = np.asarray(Image.open(tmp_path / "m.png").convert("RGB")).astype(int)
    q = np.asarray(Image.open(tmp_path / "q.png").convert("RGB")).astype(int)
    assert m.shape == (400, 1200, 3) and q.shape == (500, 500, 3)
    ok = np.isfinite(p)
    x, *_ , length = figures.genome_positions(chrom[ok], bp[ok])
    ymax = 20 * 1.05
    cv = Canvas(12, 4, (0.055, 0.99, 0.12, 0.92), (0.0, length), (0.0, ymax))
    i = int(np.flatnonzero(np.flatnonzero(ok) == 30_000)[0])
    r, c = int(round(float(cv.py(20.0)))), int(round(float(cv.px(x[i]))))
    blue = np.abs(m[r - 1 : r + 2, c - 1 : c + 2] - np.array([0x1F, 0x4E, 0x79])).sum(axis=2).min()
    light = np.abs(m[r - 1 : r + 2, c - 1 : c + 2] - np.array([0x7A, 0xA6, 0xD6])).sum(axis=2).min()
    assert min(blue, light) < 60
    # nothing else that high: the rows above the peak's are white inside the axes
    assert (m[34 : r - 3, 70:1185] > 250).all()
    # QQ: the top right-most point is the 1e-20 one, at observed 20
    cq = Canvas(5, 5, (0.13, 0.97, 0.1, 0.93), (0.0, 21.0), (0.0, 21.0))
    rq = int(round(float(cq.py(20.0))))
    assert (np.abs(q[rq - 2 : rq + 3, 66:480] - np.array([0x1F, 0x4E, 0x79])).sum(axis=2) < 60).any()


def _matplotlib_reference(chrom, bp, p, path_m, path_q, lam):
    """The matplotlib drawing these figures replace (gimtool before issue 15), for comparison."""
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    ok = np.isfinite(p)
    x, parity, ticks, labels, length = figures.genome_positions(chrom[ok], bp[ok])
    y = -np.log10(p[ok])
    fig, ax = plt.subplots(figsize=(12, 4))
    ymax = max(y.max(), -np.log10(5e-8)) * 1.05
    for par, col in enumerate(("#1f4e79", "#7aa6d6")):
        ax.scatter(x[parity == par], y[parity == par], s=3, color=col, linewidths=0, rasterized=True)
    ax.axhline(-np.log10(5e-8), color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlim(0, length)
    ax.set_ylim(0, ymax)
    ax.set_xlabel("chromosome")
    ax.set_ylabel("\u2212log10 P")
    ax.set_title("T")
    fig.subplots_adjust(left=0.055, right=0.99, bottom=0.12, top=0.92)
    fig.savefig(path_m, dpi=100)
    plt.close(fig)
    ps = np.sort(p[ok])
    n = len(ps)
    obs, exp = -np.log10(ps), -np.log10((np.arange(1, n + 1) - 0.5) / n)
    top = max(obs.max(), exp.max()) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(exp, obs, s=4, color="#1f4e79", linewidths=0, rasterized=True, label=f"\u03bbGC = {lam:.3f}")
    ax.plot([0, top], [0, top], color="#c0392b", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("expected \u2212log10 P")
    ax.set_ylabel("observed \u2212log10 P")
    ax.set_title("T")
    ax.legend(loc="upper left")
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.1, top=0.93)
    fig.savefig(path_q, dpi=100)
    plt.close(fig)


def test_figures_look_like_matplotlibs(tmp_path):
    chrom, bp, p = _gwas_like()
    figures.manhattan(chrom, bp, p, tmp_path / "m.png", title="T", lines=(5e-8,))
    figures.qq(p, tmp_path / "q.png", title="T", lambda_gc=1.013)
    _matplotlib_reference(chrom, bp, p, tmp_path / "rm.png", tmp_path / "rq.png", 1.013)
    for ours, ref in (("m.png", "rm.png"), ("q.png", "rq.png")):
        a = np.asarray(Image.open(tmp_path / ours).convert("RGB")).astype(int)
        b = np.asarray(Image.open(tmp_path / ref).convert("RGB")).astype(int)
        assert a.shape == b.shape
        d = np.abs(a - b).max(axis=2)
        # measured: mean 2-4 (of 255), 0.5-0.8% of pixels off by more than half the range
        assert np.abs(a - b).mean() < 6, ours
        assert (d > 128).mean() < 0.015, ours
        # the same ink in each band of rows (title, plot, tick labels, axis label) within 2 rows
        ink_a = (a.min(axis=2) < 128).sum(axis=1)
        ink_b = (b.min(axis=2) < 128).sum(axis=1)
        for r in np.flatnonzero(ink_b > 5):
            assert ink_a[max(r - 2, 0) : r + 3].max() > 0, (ours, r)


def test_nice_ticks_are_matplotlibs():
    # AutoLocator on a 320-px axis with 10-pt labels (what matplotlib chose for these limits)
    assert nice_ticks(0, 12.3, 320, 10, 2).tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert nice_ticks(0, 8.9, 320, 10, 2).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert nice_ticks(0, 2.4, 320, 10, 2).tolist() == [0, 0.5, 1.0, 1.5, 2.0]
    assert nice_ticks(0, 31.0, 420, 10, 3).tolist() == [0, 5, 10, 15, 20, 25, 30]


def test_png_writer_is_lossless(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    img[5:20, 10:40] = 255
    write_png(tmp_path / "x.png", img)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png").convert("RGB")), img)


def test_compiled_and_numpy_layers_agree(monkeypatch, tmp_path):
    """The compiled splat/composite and the numpy shifted adds draw the same figure (to rounding)."""
    from gimtool.io import rasterplot

    if rasterplot._speedups() is None:
        pytest.skip("gimtool._speedups not built")
    chrom, bp, p = _gwas_like()
    figures.manhattan(chrom, bp, p, tmp_path / "c.png", title="T")
    monkeypatch.setattr(rasterplot, "_speedups", lambda: None)
    figures.manhattan(chrom, bp, p, tmp_path / "n.png", title="T")
    a = np.asarray(Image.open(tmp_path / "c.png").convert("RGB")).astype(int)
    b = np.asarray(Image.open(tmp_path / "n.png").convert("RGB")).astype(int)
    assert np.abs(a - b).max() <= 2
