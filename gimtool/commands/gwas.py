"""Multi-phenotype association scan (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool gwas is not built yet in this version")
