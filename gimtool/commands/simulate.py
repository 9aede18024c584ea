"""Synthetic cohorts with known genetic truth (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool simulate is not built yet in this version")
