"""A small raster plotter for the figures drawn once per phenotype (Manhattan, QQ): the look of
matplotlib's defaults (DejaVu Sans, 0.8 pt spines and ticks, AutoLocator ticks, 100 dpi) drawn
straight into a numpy image with Pillow, without importing matplotlib (0.4-0.8 s of a gwas run)
or paying its per-figure cost (~100 ms).

Points are drawn at the resolution they are shown: each becomes an anti-aliased disc of its
marker's diameter; :func:`thin_points` keeps one point per pixel (they would cover the same
pixels) except the points that must each be seen (small P), which are drawn one by one at their
exact sub-pixel position.
"""

from __future__ import annotations

import importlib.util
import math
import os
from functools import lru_cache

import numpy as np

DPI = 100
PT = DPI / 72.0  # pixels per point


def _speedups():
    """gimtool._speedups when it was built (its splat and composite), else None: numpy does it."""
    try:
        from gimtool import _speedups
    except ImportError:
        return None
    return _speedups


def hex_rgb(colour: str) -> np.ndarray:
    c = colour.lstrip("#")
    return np.array([int(c[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


@lru_cache(maxsize=None)
def font(size_pt: float):
    """DejaVu Sans (matplotlib's default font, found inside the installed matplotlib package
    without importing it) at `size_pt`; Pillow's built-in font if it is not there."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
        if os.path.isfile(path):
            return ImageFont.truetype(path, size=round(size_pt * PT))
    return ImageFont.load_default(size=round(size_pt * PT))


def nice_ticks(vmin: float, vmax: float, axis_len_px: float, label_pt: float, per_label: float) -> np.ndarray:
    """Tick positions of matplotlib's AutoLocator (MaxNLocator with steps 1, 2, 2.5, 5, 10 and as
    many bins as labels of `per_label` x their font size fit along the axis, at most 9)."""
    nbins = int(np.clip(math.floor(axis_len_px / PT / (label_pt * per_label)), 1, 9))
    dv = vmax - vmin
    if not dv > 0:
        return np.array([vmin])
    scale = 10.0 ** math.floor(math.log10(dv / nbins))
    stairs = np.array([0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20]) * scale
    raw = dv / nbins
    step = stairs[np.flatnonzero(stairs >= raw * (1 - 1e-10))[0]]
    lo = math.floor(vmin / step + 1e-10)
    hi = math.ceil(vmax / step - 1e-10)
    t = np.arange(lo, hi + 1) * step
    return t[(t >= vmin - 1e-10 * dv) & (t <= vmax + 1e-10 * dv)]


def tick_labels(ticks: np.ndarray) -> list[str]:
    """ScalarFormatter's labels: one number of decimals for all, as few as show every tick."""
    dec = 0
    for t in ticks:
        s = f"{t:.10f}".rstrip("0")
        dec = max(dec, len(s.split(".")[1]) if "." in s else 0)
    return [f"{t:.{dec}f}".replace("-", "\u2212") for t in ticks]


def disc_kernel(diameter_px: float, dx: float = 0.0, dy: float = 0.0) -> tuple[np.ndarray, int]:
    """Coverage of a disc of `diameter_px` centred (dx, dy) from a pixel centre (to 1/8 pixel),
    over a square of pixels around it: (kernel, half-width)."""
    return _disc_kernel(round(diameter_px, 3), round(dx * 8) / 8, round(dy * 8) / 8)


@lru_cache(maxsize=4096)
def _disc_kernel(diameter_px: float, dx: float, dy: float) -> tuple[np.ndarray, int]:
    r = diameter_px / 2.0
    h = int(math.ceil(r + 1))
    y, x = np.mgrid[-h : h + 1, -h : h + 1].astype(np.float32)
    d = np.hypot(x - dx, y - dy)
    return np.clip(r + 0.5 - d, 0.0, 1.0), h


def thin_points(px: np.ndarray, py: np.ndarray, p: np.ndarray, keep_below: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the points to draw: (one per pixel among those with P >= keep_below, every
    point with P < keep_below). px, py: pixel coordinates (floats)."""
    p = np.asarray(p)
    each = np.flatnonzero(p < keep_below)
    rest = np.flatnonzero(~(p < keep_below))
    if len(rest) == 0:
        return rest, each
    ix = np.round(px[rest]).astype(np.int64)
    iy = np.round(py[rest]).astype(np.int64)
    ix -= ix.min()
    iy -= iy.min()
    cell = ix * (int(iy.max()) + 1) + iy
    first = np.full(int(cell.max()) + 1, -1, dtype=np.int64)
    first[cell[::-1]] = rest[::-1]  # the first point of each pixel wins
    return first[first >= 0], each


def write_png(path, rgb: np.ndarray, level: int = 2) -> None:
    """An 8-bit RGB PNG: every row with the 'Sub' filter (flat areas become zeros), deflated at
    `level` by zlib (which releases the GIL). 3x faster than Pillow's writer at a smaller size."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(h, 3 * w)
    f = np.empty((h, 3 * w + 1), dtype=np.uint8)
    f[:, 0] = 1  # filter type Sub: each byte minus the same channel of the pixel to its left
    f[:, 1:4] = raw[:, :3]
    np.subtract(raw[:, 3:], raw[:, :-3], out=f[:, 4:])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, adaptive filtering, no interlace
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(f.tobytes(), level))
                 + chunk(b"IEND", b""))


class Canvas:
    """An RGB image (white) with one axes box; data -> pixel transforms; drawing primitives."""

    def __init__(self, width_in: float, height_in: float, box: tuple[float, float, float, float],
                 xlim: tuple[float, float], ylim: tuple[float, float]):
        self.w, self.h = int(round(width_in * DPI)), int(round(height_in * DPI))
        self.img = np.full((self.h, self.w, 3), 255, dtype=np.uint8)
        left, right, bottom, top = box
        self.x0, self.x1 = left * self.w, right * self.w
        self.y0, self.y1 = (1 - top) * self.h, (1 - bottom) * self.h  # pixel rows of the axes' top and bottom
        self.xlim, self.ylim = xlim, ylim
        self.texts: list[tuple] = []
        # the axes' pixel block, where points are drawn; coverage per colour until it is painted
        self.ax_r0, self.ax_r1 = int(math.floor(self.y0)), int(math.ceil(self.y1))
        self.ax_c0, self.ax_c1 = int(math.floor(self.x0)), int(math.ceil(self.x1))
        self.layers: dict[str, np.ndarray] = {}

    # -- transforms (pixel centres at integer coordinates)
    def px(self, x):
        return self.x0 + (np.asarray(x, dtype=np.float64) - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (self.x1 - self.x0) - 0.5

    def py(self, y):
        return self.y1 - (np.asarray(y, dtype=np.float64) - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (self.y1 - self.y0) - 0.5

    def blend(self, cov: np.ndarray, colour: str, r0: int = 0, c0: int = 0) -> None:
        """Paint `colour` with coverage `cov` (a block of the image at row r0, column c0)."""
        self.flush()
        r0c, c0c = max(r0, 0), max(c0, 0)
        cov = cov[r0c - r0 :, c0c - c0 :][: self.h - r0c, : self.w - c0c]
        rows = np.flatnonzero(cov.any(axis=1))
        if len(rows) == 0:
            return
        lo, hi = rows[0], rows[-1] + 1
        blk = self.img[r0c + lo : r0c + hi, c0c : c0c + cov.shape[1]]
        f = blk.astype(np.float32)
        f += cov[lo:hi, :, None] * (hex_rgb(colour) - f)
        blk[:] = (f + 0.5).astype(np.uint8)

    def flush(self) -> None:
        """Paint the points drawn so far (each colour's layer, in the order first drawn)."""
        layers, self.layers = self.layers, {}
        sp = _speedups()
        for colour, acc in layers.items():
            rows = np.flatnonzero((acc < 0).any(axis=1))
            if len(rows) == 0:
                continue
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            band = np.ascontiguousarray(acc[lo:hi])
            if sp is not None:
                sp.composite(self.img, self.w, band, hi - lo, band.shape[1], self.ax_r0 + lo, self.ax_c0,
                             hex_rgb(colour).astype(np.float64))
            else:
                blk = self.img[self.ax_r0 + lo : self.ax_r0 + hi, self.ax_c0 : self.ax_c1]
                f = blk.astype(np.float32)
                f += -np.expm1(band)[:, :, None] * (hex_rgb(colour) - f)
                blk[:] = (f + 0.5).astype(np.uint8)

    def points(self, x, y, colour: str, diameter_pt: float, exact: bool = False) -> None:
        """Discs at (x, y) (scatter markers of area `diameter_pt`² pt², clipped to the axes).
        exact: each at its sub-pixel position (for few points); otherwise at the nearest pixel
        centre (one per pixel is enough: see thin_points)."""
        fx, fy = self.px(x), self.py(y)
        r0, c0 = self.ax_r0, self.ax_c0
        # per colour, the log of the light the markers let through: overlapping anti-aliased
        # markers compose as matplotlib's 'over' (1 - coverage multiplies)
        acc = self.layers.setdefault(colour, np.zeros((self.ax_r1 - r0, self.ax_c1 - c0), dtype=np.float32))
        diam = math.sqrt(diameter_pt) * PT
        if not exact:
            ix, iy = np.round(fx).astype(np.int64) - c0, np.round(fy).astype(np.int64) - r0
            ok = (ix >= 0) & (ix < acc.shape[1]) & (iy >= 0) & (iy < acc.shape[0])
            if not ok.any():
                return
            k, h = disc_kernel(diam)
            lk = np.log1p(-np.minimum(k, 0.999)).astype(np.float32)
            sp = _speedups()
            if sp is not None:
                occ = np.zeros(acc.shape, dtype=np.uint8)
                occ[iy[ok], ix[ok]] = 1
                sp.splat(occ, acc, acc.shape[0], acc.shape[1], np.ascontiguousarray(lk), 2 * h + 1)
                return
            occ = np.zeros((acc.shape[0] + 2 * h, acc.shape[1] + 2 * h), dtype=np.float32)
            occ[iy[ok] + h, ix[ok] + h] = 1.0
            rows = np.flatnonzero(occ.any(axis=1))  # only the band of rows with points
            lo, hi = max(rows[0] - 2 * h, 0), min(rows[-1] + 1, acc.shape[0])
            for dy in range(2 * h + 1):
                for dx in range(2 * h + 1):
                    if k[dy, dx] > 0:
                        src = occ[lo + 2 * h - dy : hi + 2 * h - dy, 2 * h - dx : 2 * h - dx + acc.shape[1]]
                        acc[lo:hi] += src * lk[dy, dx]
            return
        for cx, cy in zip(fx.tolist(), fy.tolist()):
            ix, iy = round(cx), round(cy)
            k, h = disc_kernel(diam, cx - ix, cy - iy)
            r, c = iy - h - r0, ix - h - c0
            rs, cs = max(r, 0), max(c, 0)
            re, ce = min(r + k.shape[0], acc.shape[0]), min(c + k.shape[1], acc.shape[1])
            if re > rs and ce > cs:
                acc[rs:re, cs:ce] += np.log1p(-np.minimum(k[rs - r : re - r, cs - c : ce - c], 0.999))

    def hline(self, y: float, colour: str, width_pt: float = 0.8, dashed: bool = False) -> None:
        """A horizontal line across the axes (matplotlib's '--' pattern: 3.7 on, 1.6 off, x width)."""
        cy = float(self.py(y))
        half = width_pt * PT / 2
        r0, r1 = int(math.floor(cy - half - 1)), int(math.ceil(cy + half + 1))
        rows = np.arange(r0, r1 + 1, dtype=np.float32)
        vcov = np.clip(np.minimum(rows + 0.5, cy + half) - np.maximum(rows - 0.5, cy - half), 0, 1)
        c0, c1 = int(round(self.x0)), int(round(self.x1))
        hcov = np.ones(c1 - c0, dtype=np.float32)
        if dashed:
            on, off = 3.7 * width_pt * PT, 1.6 * width_pt * PT
            hcov = ((np.arange(c1 - c0) + 0.5) % (on + off) < on).astype(np.float32)
        keep = (rows >= 0) & (rows < self.h) & (rows >= self.y0 - 1) & (rows <= self.y1)
        self.blend((vcov[keep, None] * hcov[None, :]), colour, int(rows[keep][0]) if keep.any() else 0, c0) if keep.any() else None

    def line(self, xa: float, ya: float, xb: float, yb: float, colour: str, width_pt: float = 0.8) -> None:
        """A straight anti-aliased line between two data points, clipped to the axes: only the
        pixels within a few of it are computed."""
        self.flush()
        ax0, ay0, ax1, ay1 = float(self.px(xa)), float(self.py(ya)), float(self.px(xb)), float(self.py(yb))
        dx, dy = ax1 - ax0, ay1 - ay0
        norm = math.hypot(dx, dy) or 1.0
        half = width_pt * PT / 2
        reach = int(math.ceil(half + 1.5))
        steep = abs(dy) > abs(dx)
        lo, hi = (min(ay0, ay1), max(ay0, ay1)) if steep else (min(ax0, ax1), max(ax0, ax1))
        major = np.arange(int(math.floor(lo)) - 1, int(math.ceil(hi)) + 2)
        centre = ax0 + (major - ay0) * dx / dy if steep else ay0 + (major - ax0) * dy / dx if dx else np.full(len(major), ay0)
        minor = np.round(centre).astype(np.int64)[:, None] + np.arange(-reach, reach + 1)[None, :]
        rows, cols = (np.broadcast_to(major[:, None], minor.shape), minor) if steep else (minor, np.broadcast_to(major[:, None], minor.shape))
        dist = np.abs((cols - ax0) * dy - (rows - ay0) * dx) / norm
        along = ((cols - ax0) * dx + (rows - ay0) * dy) / norm
        cov = np.clip(half + 0.5 - dist, 0, 1) * ((along >= -0.5) & (along <= norm + 0.5))
        inside = (rows >= math.floor(self.y0)) & (rows < math.ceil(self.y1)) & (cols >= math.floor(self.x0)) & (cols < math.ceil(self.x1)) & (cov > 0)
        r, c, a = rows[inside], cols[inside], cov[inside].astype(np.float32)[:, None]
        f = self.img[r, c].astype(np.float32)
        self.img[r, c] = (f + a * (hex_rgb(colour) - f) + 0.5).astype(np.uint8)

    def frame(self, xticks, yticks, xlabels=None, ylabels=None, xtick_pt: float = 10, ytick_pt: float = 10) -> None:
        """Spines (0.8 pt, black), outward ticks (3.5 pt) and their labels (pad 3.5 pt)."""
        self.flush()
        top, bot = int(round(self.y0)), int(round(self.y1))
        left, right = int(round(self.x0)), int(round(self.x1))
        ink = np.zeros(3, dtype=np.uint8)
        self.img[top, left : right + 1] = ink
        self.img[bot, left : right + 1] = ink
        self.img[top : bot + 1, left] = ink
        self.img[top : bot + 1, right] = ink
        tick = int(round(3.5 * PT))
        pad = 3.5 * PT
        xl = xlabels if xlabels is not None else tick_labels(np.asarray(xticks))
        yl = ylabels if ylabels is not None else tick_labels(np.asarray(yticks))
        for t, s in zip(self.px(xticks).tolist(), xl):
            c = int(round(t + 0.5))
            if left <= c <= right:
                self.img[bot : bot + tick + 1, c] = ink
                # matplotlib's top of a label is the top of an 'l' (0.76 em), Pillow's ascender 0.93 em
                self.texts.append((c, bot + tick + pad - 0.17 * xtick_pt * PT - 1, s, xtick_pt, "ma", 0))
        for t, s in zip(self.py(yticks).tolist(), yl):
            r = int(round(t + 0.5))
            if top <= r <= bot:
                self.img[r, left - tick : left + 1] = ink
                self.texts.append((left - tick - pad, r, s, ytick_pt, "rm", 0))

    def text(self, x: float, y: float, s: str, size_pt: float, anchor: str, rotate: int = 0) -> None:
        self.texts.append((x, y, s, size_pt, anchor, rotate))

    def labels(self, xlabel: str, ylabel: str, title: str, xtick_pt: float = 10, ytick_pt: float = 10, ytick_width: int = 0) -> None:
        """Axis labels and title where matplotlib puts them (label pad 4 pt beyond the tick labels, title pad 6 pt)."""
        mid_x = (self.x0 + self.x1) / 2
        # the tick labels' box is about 0.93 of their font size tall (measured against matplotlib 3.10)
        below = self.y1 + 3.5 * PT + 3.5 * PT + xtick_pt * PT * 0.93 + 4 * PT - 1
        self.text(mid_x, below, xlabel, 10, "ma")
        self.text(self.x0 - 3.5 * PT - 3.5 * PT - ytick_width - 4 * PT - 5, (self.y0 + self.y1) / 2, ylabel, 10, "ms", 90)
        self.text(mid_x, self.y0 - 6 * PT, title, 12, "ms")

    def legend(self, label: str, colour: str, marker_pt: float, size_pt: float = 10) -> None:
        """matplotlib's legend in the upper left: a white box with a light grey edge (pad 0.5 em
        from the axes), one marker and its label."""
        from PIL import Image, ImageDraw

        em = size_pt * PT
        d = ImageDraw.Draw(Image.new("L", (1, 1)))
        tw = d.textlength(label, font=font(size_pt))
        bx0, by0 = self.x0 + 0.5 * em, self.y0 + 0.5 * em
        bw, bh = 0.4 * em + 2.0 * em + 0.8 * em + tw + 0.4 * em, 0.4 * em + 1.2 * em + 0.4 * em
        r0, r1, c0, c1 = int(round(by0)), int(round(by0 + bh)), int(round(bx0)), int(round(bx0 + bw))
        self.flush()
        box = self.img[r0 : r1 + 1, c0 : c1 + 1]
        box[:] = (box + 0.8 * (255.0 - box) + 0.5).astype(np.uint8)  # white at alpha 0.8
        edge = np.full(3, 204, dtype=np.uint8)
        self.img[r0, c0 : c1 + 1] = edge
        self.img[r1, c0 : c1 + 1] = edge
        self.img[r0 : r1 + 1, c0] = edge
        self.img[r0 : r1 + 1, c1] = edge
        cy = by0 + bh / 2
        k, h = disc_kernel(math.sqrt(marker_pt) * PT)
        mx = int(round(bx0 + 0.4 * em + 1.0 * em))
        self.blend(k, colour, int(round(cy)) - h, mx - h)
        self.text(bx0 + 0.4 * em + 2.0 * em + 0.8 * em, cy, label, size_pt, "lm")

    def save(self, path) -> None:
        """Render the texts and write a PNG (atomically)."""
        from PIL import Image, ImageDraw

        from gimtool.io.atomic import atomic_path

        self.flush()
        im = Image.fromarray(self.img, "RGB")
        draw = ImageDraw.Draw(im)
        for x, y, s, size, anchor, rot in self.texts:
            if not s:
                continue
            f = font(size)
            if rot:
                w = int(draw.textlength(s, font=f)) + 4
                hgt = round(size * PT * 1.4)
                layer = Image.new("L", (w, hgt), 0)
                ImageDraw.Draw(layer).text((w / 2, hgt * 0.78), s, font=f, fill=255, anchor="ms")
                layer = layer.rotate(rot, expand=True)
                im.paste((0, 0, 0), (int(round(x - layer.width * 0.78)), int(round(y - layer.height / 2))), layer)
            else:
                draw.text((x, y), s, font=f, fill=(0, 0, 0), anchor=anchor)
        with atomic_path(path) as tmp:
            write_png(tmp, np.asarray(im))

    def ytick_label_width(self, labels: list[str], size_pt: float = 10) -> int:
        from PIL import ImageDraw, Image

        d = ImageDraw.Draw(Image.new("L", (1, 1)))
        return int(max((d.textlength(s, font=font(size_pt)) for s in labels), default=0))
