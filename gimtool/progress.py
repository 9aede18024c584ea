"""Progress of long steps, the same in every command.

On a terminal, a tqdm bar on stderr. Without one (a batch job's log, a pipe), plain lines on
stderr, never a carriage return: one when at least :data:`INTERVAL_ENV` seconds (default 30)
have passed since the last line *and* the work has advanced by another 10 % (or has no known
total), and a last one when a step that printed lines ends. ``--no-progress`` (the CLI calls
:func:`set_enabled`) silences both.

Usage::

    with progress.bar(total=n_snps, desc="gwas", unit="SNP") as bar:
        ...
        bar.update(k)

    for chunk in progress.track(chunks, total=n, desc="GRM", unit="chunk"):
        ...
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

INTERVAL_ENV = "GIMTOOL_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
STEP = 0.10  # share of the total between two lines

_state = {"enabled": True}
T = TypeVar("T")


def set_enabled(on: bool) -> None:
    """Turn every progress display of this process on or off (`--no-progress`)."""
    _state["enabled"] = bool(on)


def interval() -> float:
    """Seconds between two progress lines without a terminal ($GIMTOOL_PROGRESS_SECONDS, default 30)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


class Silent:
    """The interface of a tqdm bar, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_postfix(self, **values) -> None:
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Lines(Silent):
    """Progress as plain lines (`gwas: 45,000/100,000 SNP (45%), 31 s, ~38 s left`) for logs."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0, every: float | None = None,
                 stream=None):
        self.total, self.desc, self.unit = (total or None), desc, unit
        self.n = self.last_n = self.n0 = initial
        self.t0 = self.last_t = time.monotonic()
        self.every = interval() if every is None else every
        self.stream = stream
        self.postfix = ""
        self.printed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_t < self.every:
            return
        if self.total and self.n < self.total and self.n - self.last_n < STEP * self.total:
            return
        self._line(now)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def _line(self, now: float) -> None:
        spent = now - self.t0
        done = f"{self.n:,}/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n:,} {self.unit}"
        left = ""
        if self.total and self.n < self.total and self.n > self.n0:
            left = f", ~{spent * (self.total - self.n) / (self.n - self.n0):.0f} s left"
        extra = f" [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {done}, {spent:.0f} s{left}{extra}", file=self.stream or sys.stderr, flush=True)
        self.last_t, self.last_n, self.printed = now, self.n, True

    def close(self) -> None:
        if self.printed and self.n != self.last_n:
            self._line(time.monotonic())
        self.printed = False


def bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0, enabled: bool = True,
        unit_scale: bool = False):
    """A progress display for `total` units: a tqdm bar on a terminal, :class:`Lines` otherwise,
    :class:`Silent` when `enabled` is False or progress is off for the process."""
    if not (enabled and _state["enabled"]):
        return Silent()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, leave=False,
                    file=sys.stderr, dynamic_ncols=True)
    return Lines(total, desc, unit, initial)


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          enabled: bool = True) -> Iterator[T]:
    """Iterate over `items`, one unit of progress per item."""
    with bar(total=total, desc=desc, unit=unit, enabled=enabled) as b:
        for item in items:
            yield item
            b.update(1)
