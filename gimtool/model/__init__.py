"""The PyTorch model core: MRI encoder/decoder, genetic encoders, critics, losses, methods.

The names below are loaded on first use, so that `gimtool.model.config` (plain dataclasses) can be
imported without importing torch: the training config and the CLI's start-up need only that.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {"ModelConfig": ".config", "METHODS": ".methods", "LossModule": ".methods", "Method": ".methods",
         "Stage": ".methods", "get_method": ".methods"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
