"""Gemma 3 4B, 12B and 27B (model_type "gemma3", Gemma3ForConditionalGeneration): pyrustml runs
their language model, a Gemma 3 text model (models/gemma3.py), on text.

Quirks:
- The text model's config is `text_config`; real checkpoints list only what differs from
  Gemma3TextConfig's defaults (e.g. 4B: hidden_size, intermediate_size, num_hidden_layers,
  rope_scaling, sliding_window), so the defaults below fill the rest, as transformers does.
- `rope_scaling` {"rope_type": "linear", "factor": 8} applies to the global layers only; the local
  ones keep rope_local_base_freq unscaled (models/gemma3.py).
- Key layouts: `language_model.model.*` (files saved by transformers 4.x, the hub's) and
  `model.language_model.*` (saved by 5.x); the lm_head is tied to the embedding (a stored
  `language_model.lm_head.weight` / `lm_head.weight` is read when present).
- The vision tower and the projector (`vision_tower.*`, `multi_modal_projector.*`, and under
  `model.` in the 5.x layout) are skipped: never read, converted or checked. `vision_config` and
  the image token ids are not read.
"""

from __future__ import annotations

from typing import Any, Final

from ..errors import ModelFormatError
from ..io.config import Fields
from ..io.safetensors import Checkpoint
from .base import LoadOptions, Transformer
from .gemma3 import Gemma3

# Gemma3TextConfig's defaults (transformers 4.57), for keys a text_config leaves out.
TEXT_DEFAULTS: Final[dict[str, Any]] = {
    "vocab_size": 262208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "sliding_window_pattern": 6,
}
# (text model prefix, lm_head name) per layout
LAYOUTS: Final = (
    ("language_model.model.", "language_model.lm_head.weight"),
    ("model.language_model.", "lm_head.weight"),
)
SKIPPED: Final = (
    "vision_tower.",
    "multi_modal_projector.",
    "model.vision_tower.",
    "model.multi_modal_projector.",
)


def text_fields(f: Fields) -> Fields:
    """The language model's config: text_config over Gemma3TextConfig's defaults."""
    tc = f.data.get("text_config")
    if not isinstance(tc, dict):
        raise ModelFormatError(f"{f.where}: a gemma3 checkpoint needs a 'text_config' object")
    merged = {**TEXT_DEFAULTS, **{k: v for k, v in tc.items() if v is not None or k not in TEXT_DEFAULTS}}
    return Fields(merged, f"{f.where} text_config")


def build(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    names = set(ckpt.names())
    for prefix, head in LAYOUTS:
        if prefix + "embed_tokens.weight" in names:
            skipped = {n for n in names if n.startswith(SKIPPED)}
            return Gemma3(text_fields(f), ckpt, opts, prefix=prefix, lm_head=head, skipped=skipped)
    raise ModelFormatError(
        f"{ckpt.source}: no language model weights (language_model.model.* or model.language_model.*)"
    )
