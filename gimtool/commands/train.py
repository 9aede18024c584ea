"""Train an MRI encoder (Genetic InfoMax and baselines) (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool train is not built yet in this version")
