"""LD clumping and locus counts (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool clump is not built yet in this version")
