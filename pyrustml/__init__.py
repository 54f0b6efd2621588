"""pyrustml: Hugging Face language models on a CPU, from Python, with libq8 underneath.

The public names load lazily (PEP 562): `import pyrustml.cli` (pyrustml-infer, python -m
pyrustml) then costs no numpy or libq8 import, so a Ctrl-C in the first instant reaches the
CLI's handler instead of interrupting an import."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import errors, kernels
    from .engine.pool import RuntimeConfig
    from .errors import PyrustmlError
    from .generate.result import Usage
    from .model import Generation, Model, Submission, TextStream, load

_WHERE = {
    "Generation": "model",
    "Model": "model",
    "Submission": "model",
    "TextStream": "model",
    "Usage": "generate.result",
    "load": "model",
    "PyrustmlError": "errors",
    "RuntimeConfig": "engine.pool",
}
_MODULES = ("errors", "kernels")

__all__ = [
    "Generation",
    "Model",
    "PyrustmlError",
    "RuntimeConfig",
    "Submission",
    "TextStream",
    "Usage",
    "errors",
    "kernels",
    "load",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
