"""SIGINT (Ctrl-C) and SIGTERM (what a cluster sends at its time limit): end a command cleanly.

The CLI calls :func:`install`. The first SIGINT or SIGTERM then raises :class:`Interrupted` in the
main thread, so every ``with`` block unwinds: temporary outputs are deleted, ``<out>.log`` is
written with status ``interrupted``, and the CLI prints one line. Signals that arrive during that
cleanup are ignored.

Code that must stop at a safe point runs under :func:`deferred`: a signal then only sets a flag,
which the code polls with :func:`pending` and answers with :func:`interrupt` once its state is
saved (the training loop writes a checkpoint at the next step). A second signal while one is
pending stops at once.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import signal
import sys
import threading
from typing import Iterator

_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal number, as shells report it
_state: dict = {"deferred": 0, "pending": None, "raised": False}


class Interrupted(BaseException):
    """A command stopped by SIGINT or SIGTERM; `detail` says what was saved. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it (and click does not turn it
    into its own "Aborted!")."""

    def __init__(self, signame: str = "SIGINT", detail: str = ""):
        super().__init__(signame, detail)
        self.signame, self.detail = signame, detail

    @property
    def exit_code(self) -> int:
        return _EXIT.get(self.signame, 130)

    def __str__(self) -> str:
        return f"interrupted by {self.signame}" + (f"; {self.detail}" if self.detail else "")


def _handler(signum, frame) -> None:
    name = signal.Signals(signum).name
    if _state["raised"]:
        return  # the first signal's cleanup is under way
    if _state["deferred"] and _state["pending"] is None:
        _state["pending"] = name
        return
    _state["raised"] = True
    raise Interrupted(name)


def install() -> None:
    """Handle SIGINT and SIGTERM as above (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(deferred=0, pending=None, raised=False)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _handler)
    if not any(isinstance(f, _ReclaimAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ReclaimAfterImport())


class _ReclaimAfterImport:
    """Re-installs the handlers right after polars is first imported.

    polars' native module installs a C-level SIGINT handler when it loads, in front of Python's:
    a SIGINT that arrives during a polars call then raises KeyboardInterrupt out of that call,
    whatever Python handler is set. Under :func:`deferred` that broke the training loop's
    promise (a checkpoint at the next step): a Ctrl-C while the epoch's history.tsv was being
    written ended the run at once, and typer turned the KeyboardInterrupt into a silent exit 130
    (tests/test_signals.py saw it in 2 of 6 full runs). gimtool imports polars lazily, after
    :func:`install`; setting the handlers again puts Python's C handler back in front.
    """

    names = ("polars",)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_reclaim(module):
            try:
                exec_module(module)
            finally:
                _reclaim()

        spec.loader.exec_module = exec_then_reclaim
        return spec


def _reclaim() -> None:
    """Set gimtool's handlers again (at the C level too), where they are the ones in place."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(s) is _handler:
            signal.signal(s, _handler)


def pending() -> str | None:
    """The name of a signal received under :func:`deferred` and not yet acted on, or None."""
    return _state["pending"]


def interrupt(detail: str = "") -> None:
    """Act on the pending signal: raise :class:`Interrupted` (`detail`: what was saved)."""
    _state["raised"] = True
    raise Interrupted(_state["pending"] or "SIGINT", detail)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block a signal sets :func:`pending` instead of raising; one still pending when
    the block ends is raised then."""
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
    if _state["pending"] and not _state["deferred"] and not _state["raised"]:
        interrupt()
