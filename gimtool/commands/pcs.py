"""Principal components of embeddings or genotypes (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool pcs is not built yet in this version")
