"""pyrustml: Hugging Face language models on a CPU, from Python, with libq8 underneath."""

from . import errors, kernels
from .errors import PyrustmlError
from .runtime import RuntimeConfig

__all__ = ["PyrustmlError", "RuntimeConfig", "errors", "kernels"]
__version__ = "0.1.0"
