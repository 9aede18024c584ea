"""The `<out>.log` every command writes.

Usage in a pipeline::

    with RunLog(out, "gwas") as log:
        log.input("bfile", prefix + ".bed")
        log.info("kept 4,981 of 5,000 samples")
        with log.timed("association scan"):
            ...

The log is written (atomically, like every output) when the block ends, also when it ends in
an error, so that a failed run says what it had done and why it stopped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Iterator

from gimtool import __version__
from gimtool.io.atomic import atomic_write_text, make_dir
from gimtool.signals import Interrupted

logger = logging.getLogger("gimtool")


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class RunLog:
    """Collects what a command did and writes it to `<out>.log`.

    Messages also go to stderr (warnings always, info with -v), PLINK-style.
    """

    def __init__(self, out: str | os.PathLike, command: str, log_path: str | os.PathLike | None = None):
        self.out = str(out)
        self.command = command
        self.path = Path(log_path) if log_path is not None else Path(f"{self.out}.log")
        # outputs go beside the log: make the folder of --out now, as PLINK does not but users expect
        make_dir(self.path.parent, f"--out {out}")
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self._t0 = time.perf_counter()
        self._timings: list[tuple[str, float]] = []

    # -- recording -------------------------------------------------------------
    def info(self, msg: str) -> None:
        self.lines.append(msg)
        logger.info(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        self.lines.append(f"Warning: {msg}")
        print(f"Warning: {msg}", file=sys.stderr)

    def input(self, label: str, path: str | os.PathLike) -> None:
        p = Path(path)
        size = _human_size(p.stat().st_size) if p.is_file() else ("directory" if p.is_dir() else "missing")
        self.info(f"input {label}: {p} ({size})")

    def output(self, label: str, path: str | os.PathLike) -> None:
        self.info(f"output {label}: {path}")

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t
            self._timings.append((step, dt))
            logger.info(f"{step}: {dt:.2f} s")

    # -- writing ---------------------------------------------------------------
    def render(self, status: str) -> str:
        now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        head = [
            f"gimtool v{__version__} {self.command}",
            f"command: {shlex.join(sys.argv) if sys.argv else self.command}",
            f"started: {now}  host: {platform.node()}  python: {platform.python_version()}",
            "",
        ]
        timing = [f"time {name}: {dt:.2f} s" for name, dt in self._timings]
        total = time.perf_counter() - self._t0
        tail = ["", *timing, f"total time: {total:.2f} s", f"warnings: {len(self.warnings)}", f"status: {status}", ""]
        return "\n".join(head + self.lines + tail)

    def write(self, status: str = "ok") -> None:
        atomic_write_text(self.path, self.render(status))

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.write("ok")
        elif isinstance(exc, (KeyboardInterrupt, Interrupted)):
            self.lines.append(f"Interrupted: {exc if isinstance(exc, Interrupted) else 'interrupted by SIGINT'}")
            self.write("interrupted")
        else:
            self.lines.append(f"Error: {exc}")
            self.write("failed")
        return False
