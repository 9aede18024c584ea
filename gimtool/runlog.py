"""The `<out>.log` every command writes.

Usage in a pipeline::

    with RunLog(out, "gwas") as log:
        log.input("bfile", prefix + ".bed")
        log.info("kept 4,981 of 5,000 samples")
        with log.timed("association scan"):
            ...

The log grows as the command runs (``tail -f`` follows a long run: the header with the real
start time first, then each message), and ends with the timings and the status (ok, failed or
interrupted), also when the block ends in an error, so that a failed run says what it had done
and why it stopped. A command that succeeds ends with its :meth:`RunLog.summary`, one line on
stderr and in the log (`gwas: wrote 10 sumstats files (PC1..PC10) to out.*`).
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
from gimtool.io.atomic import make_dir
from gimtool.signals import Interrupted

logger = logging.getLogger("gimtool")


def span(names: list[str]) -> str:
    """`PC1..PC10` for a summary line (the names as given when there are one or two)."""
    return ", ".join(names) if len(names) <= 2 else f"{names[0]}..{names[-1]}"


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
        self._started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._timings: list[tuple[str, float]] = []
        self._n_written = 0  # lines already in the file
        self._summary: str | None = None
        self.path.write_text("\n".join(self._head()) + "\n")

    def _append(self) -> None:
        """Write the lines recorded since the last call to the end of the file."""
        new = self.lines[self._n_written:]
        if new:
            with open(self.path, "a") as fh:
                fh.write("\n".join(new) + "\n")
            self._n_written += len(new)

    # -- recording -------------------------------------------------------------
    def info(self, msg: str) -> None:
        self.lines.append(msg)
        self._append()
        logger.info(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        self.lines.append(f"Warning: {msg}")
        self._append()
        print(f"Warning: {msg}", file=sys.stderr)

    def input(self, label: str, path: str | os.PathLike) -> None:
        p = Path(path)
        size = _human_size(p.stat().st_size) if p.is_file() else ("directory" if p.is_dir() else "missing")
        self.info(f"input {label}: {p} ({size})")

    def output(self, label: str, path: str | os.PathLike) -> None:
        self.info(f"output {label}: {path}")

    def summary(self, msg: str) -> None:
        """What the command wrote, in one line: the last line of the log's messages and of stderr
        when the command ends well (nothing is claimed when it fails afterwards)."""
        self._summary = msg

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
    def _head(self) -> list[str]:
        return [
            f"gimtool v{__version__} {self.command}",
            f"command: {shlex.join(sys.argv) if sys.argv else self.command}",
            f"started: {self._started}  host: {platform.node()}  python: {platform.python_version()}",
            "",
        ]

    def _tail(self, status: str) -> list[str]:
        timing = [f"time {name}: {dt:.2f} s" for name, dt in self._timings]
        total = time.perf_counter() - self._t0
        return ["", *timing, f"total time: {total:.2f} s", f"warnings: {len(self.warnings)}", f"status: {status}", ""]

    def render(self, status: str) -> str:
        """The whole log as it reads when the command ends with `status`."""
        return "\n".join(self._head() + self.lines + self._tail(status))

    def write(self, status: str = "ok") -> None:
        """End the log: the lines not yet written, the timings and the status."""
        self._append()
        with open(self.path, "a") as fh:
            fh.write("\n".join(self._tail(status)))

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            if self._summary is not None:
                self.lines.append(self._summary)
                print(self._summary, file=sys.stderr, flush=True)
            self.write("ok")
        elif isinstance(exc, (KeyboardInterrupt, Interrupted)):
            self.lines.append(f"Interrupted: {exc if isinstance(exc, Interrupted) else 'interrupted by SIGINT'}")
            self.write("interrupted")
        else:
            self.lines.append(f"Error: {exc}")
            self.write("failed")
        return False
