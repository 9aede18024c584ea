"""Genotype QC and preparation (not built yet)."""

from __future__ import annotations

from gimtool.errors import NotBuiltError


def command() -> None:
    raise NotBuiltError("gimtool prep-geno is not built yet in this version")
