"""Errors a user can act on.

Library code raises :class:`GimtoolError` (or a subclass) with one line that names the file,
the line or field, and what was expected. The CLI prints it as ``Error: ...`` and exits 1
(2 for an :class:`OptionError`, as for typer's usage errors); it never shows a traceback for
these (use ``-v`` to see one).
"""

from __future__ import annotations


class GimtoolError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    exit_code = 1


class InputError(GimtoolError):
    """A bad input file or value."""


class OptionError(InputError):
    """An option value out of its range, or options that contradict each other: a usage error,
    exit 2 as for typer's own range checks."""

    exit_code = 2


class MissingProgramError(GimtoolError):
    """An external program (plink2, bolt, ldsc.py) that was asked for is not on PATH."""


class NotBuiltError(GimtoolError):
    """A subcommand that is not implemented yet."""

    exit_code = 2
