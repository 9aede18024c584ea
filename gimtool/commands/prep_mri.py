"""NIfTI ingestion and the image store (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool prep-mri is not built yet in this version")
