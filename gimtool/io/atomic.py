"""Atomic outputs: every file or folder is built under a temporary name beside its final path
and renamed into place only when complete, so an interrupted command never leaves a
half-written output under the final name.

Two forms:

* :func:`atomic_path` (a context manager) for outputs written in one block::

      with atomic_path(out + ".summary.tsv") as tmp:
          df.write_csv(tmp, separator="\\t")

* :class:`TempNameWriter`, the base of the streaming writers (:class:`gimtool.io.plink.BedWriter`,
  :class:`gimtool.io.genostore.GenoStoreWriter`), which fill their output chunk by chunk and
  rename it on :meth:`~TempNameWriter.close`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Iterator


def temp_name(path: str | os.PathLike, per_thread: bool = False) -> Path:
    """The hidden temporary name beside `path`: ``.NAME.tmpPID`` (``.tmpPID.TID`` per thread)."""
    final = Path(path)
    tag = f"{os.getpid()}.{threading.get_ident()}" if per_thread else f"{os.getpid()}"
    return final.with_name(f".{final.name}.tmp{tag}")


def make_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create the folder `path` (and its parents) for outputs; an InputError naming `what` when it
    cannot be (a file in the way, no permission)."""
    from gimtool.errors import InputError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{what}: {path} is a file, not a folder") from None
    except OSError as e:
        raise InputError(f"{what}: cannot create the folder {path}: {e.strerror}") from None
    return path


def remove(path: Path) -> None:
    """Delete a file or a folder tree if it exists."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def replace_into_place(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; a folder already at `final` is replaced."""
    if final.is_dir() and tmp.is_dir():
        shutil.rmtree(final)
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Works for files and for folders (the temporary name is then a folder the caller creates).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # process and thread in the name: threads of one command may write the same path
    tmp = temp_name(final, per_thread=True)
    try:
        yield tmp
        replace_into_place(tmp, final)
    finally:
        remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class TempNameWriter:
    """Base of the streaming writers: the output grows under :func:`temp_name` and is renamed
    into place by :meth:`close`; :meth:`abort` (or an exception inside ``with``) deletes it.

    Subclasses open their handles in ``__init__`` after calling this one (with ``folder=True``
    the temporary folder is created, emptied first), and implement :meth:`_finish` (flush and
    close, write trailing files; may raise to refuse an incomplete output) and :meth:`_release`
    (close handles without writing more).
    """

    def __init__(self, path: str | os.PathLike, folder: bool = False):
        self.path = Path(path)
        self.tmp = temp_name(self.path)
        if folder:
            remove(self.tmp)
            self.tmp.mkdir(parents=True)

    def _finish(self) -> None:
        """Complete the temporary output (subclasses)."""

    def _release(self) -> None:
        """Close open handles without completing the output (subclasses)."""

    def close(self) -> None:
        self._finish()
        replace_into_place(self.tmp, self.path)

    def abort(self) -> None:
        self._release()
        remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
