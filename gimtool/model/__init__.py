"""The PyTorch model core: MRI encoder/decoder, genetic encoders, critics, losses, methods."""

from .config import ModelConfig
from .methods import METHODS, LossModule, Method, Stage, get_method

__all__ = ["ModelConfig", "METHODS", "LossModule", "Method", "Stage", "get_method"]
