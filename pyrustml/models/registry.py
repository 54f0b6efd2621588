"""model_type -> builder. A new architecture registers here; the loader does not change."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnsupportedModelError
from ..io.config import Fields
from ..io.safetensors import Checkpoint
from . import gemma3, gemma3_multimodal, gpt2, llama
from .base import LoadOptions, Transformer

Builder = Callable[[Fields, Checkpoint, LoadOptions], Transformer]

REGISTRY: dict[str, Builder] = {
    "gpt2": gpt2.build,
    "gemma3_text": gemma3.build,
    "gemma3": gemma3_multimodal.build,
    "llama": llama.build_llama,
    "mistral": llama.build_mistral,
    "qwen2": llama.build_qwen2,
    "qwen3": llama.build_qwen3,
}


def builder_for(model_type: str, where: str) -> Builder:
    b = REGISTRY.get(model_type)
    if b is None:
        supported = ", ".join(sorted(REGISTRY))
        raise UnsupportedModelError(
            f"{where}: model_type {model_type!r} is not supported (supported: {supported})"
        )
    return b
