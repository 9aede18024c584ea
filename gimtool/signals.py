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
import signal
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
