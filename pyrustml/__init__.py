"""pyrustml: Hugging Face language models on a CPU, from Python, with libq8 underneath."""

from . import errors, kernels
from .errors import PyrustmlError
from .model import Generation, Model, load
from .runtime import RuntimeConfig

__all__ = ["Generation", "Model", "PyrustmlError", "RuntimeConfig", "errors", "kernels", "load"]
__version__ = "0.1.0"
