"""Held-out mutual information estimate (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool mi is not built yet in this version")
