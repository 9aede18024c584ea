"""What the on-disk stores (the genotype store of prep-geno, the image store of prep-mri) share:
a folder with a meta.json naming its format."""

from __future__ import annotations

import json
from pathlib import Path

from gimtool.errors import InputError


def read_meta(path: Path, fmt: str, kind: str, maker: str) -> dict:
    """The meta.json of the store folder `path`, checked to be of format `fmt`; `kind` and
    `maker` (the command that writes such stores) go into the error."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{path}: not a gimtool {kind} store (no meta.json; make one with gimtool {maker})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != fmt:
        raise InputError(f"{meta_path}: format {meta.get('format')!r}, expected {fmt!r}")
    return meta
