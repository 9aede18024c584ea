"""Write embeddings from a trained checkpoint (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool embed is not built yet in this version")
