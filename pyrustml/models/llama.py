"""The Llama family, one decoder: model_type "llama" (Llama 3.x, SmolLM2, TinyLlama), "mistral",
"qwen2" (Qwen2.5) and "qwen3" (dense). They differ in a handful of switches the config decides.

Every quirk in code:
- RMSNorm with a plain weight (x / rms * w, not Gemma's 1 + w), eps from rms_norm_eps; two per
  layer (input, post_attention) and a final one.
- Grouped-query attention; head_dim from the config when given (Qwen3: 128 when absent, as
  transformers defaults it), else hidden_size / num_attention_heads; scale head_dim^-0.5.
- RoPE on the half-split ("rotate half") layout, from a precomputed inv_freq table
  (models/rope.py: default, linear, llama3; yarn, longrope, dynamic refused).
- Biases: qwen2 always has q/k/v biases and none on o; llama and qwen3 have q/k/v/o biases when
  attention_bias is true; mlp_bias is refused.
- Qwen3: per-head q_norm / k_norm (plain RMSNorm weight of head_dim) before RoPE.
- SwiGLU MLP: down(silu(gate(x)) * up(x)), gate|up fused; hidden_act must be silu.
- tie_word_embeddings: the lm_head is the embedding table (a checkpoint's own lm_head.weight is
  then ignored, as transformers ties over it); otherwise lm_head.weight is required.
- Sliding windows: mistral's sliding_window on every layer when set (4096 when the key is absent,
  as transformers defaults it; null: none); qwen2/qwen3's use_sliding_window with sliding_window
  on layers i >= max_window_layers; transformers 5's layer_types when present. Sliding layers
  keep a ring cache of window + prefill chunk positions.

Config keys read: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
num_key_value_heads, head_dim, vocab_size, rms_norm_eps, max_position_embeddings,
tie_word_embeddings, hidden_act, attention_bias, mlp_bias, sliding_window, use_sliding_window,
max_window_layers, layer_types, rope_theta, rope_scaling, rope_parameters, partial_rotary_factor.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import MAX_LAYERS, Fields
from .rope import parse_rope

SLIDING = "sliding_attention"
FULL = "full_attention"
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


class LlamaConfig:
    family: str
    hidden: int
    inter: int
    n_layer: int
    n_head: int
    n_kv: int
    head_dim: int
    vocab: int
    eps: float
    max_pos: int
    tied: bool
    qkv_bias: bool
    o_bias: bool
    qk_norm: bool
    windows: list[int]  # per layer: 0 = full attention, else the window
    inv_freq: np.ndarray  # (head_dim / 2,) float32
    rope_kind: str

    def __init__(self, f: Fields, family: str) -> None:
        if family not in FAMILIES:
            raise UnsupportedModelError(f"{f.where}: model_type {family!r} is not of the Llama family")
        self.family = family
        self.hidden = f.int_("hidden_size")
        self.inter = f.int_("intermediate_size")
        self.n_layer = f.int_("num_hidden_layers", maximum=MAX_LAYERS)
        self.n_head = f.int_("num_attention_heads")
        self.n_kv = f.int_("num_key_value_heads", self.n_head)
        default_hd = 128 if family == "qwen3" else self.hidden // self.n_head
        self.head_dim = f.int_("head_dim", default_hd) if f.has("head_dim") else default_hd
        self.vocab = f.int_("vocab_size")
        self.eps = f.float_("rms_norm_eps", 1e-6)
        self.max_pos = f.int_("max_position_embeddings", 2048)
        self.tied = f.bool_("tie_word_embeddings", False)
        act = f.str_("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedModelError(f"{f.where}: hidden_act {act!r} is not supported (silu only)")
        if f.bool_("mlp_bias", False):
            raise UnsupportedModelError(f"{f.where}: mlp_bias=true is not supported")
        attention_bias = f.bool_("attention_bias", False) if family in ("llama", "qwen3") else False
        self.qkv_bias = family == "qwen2" or attention_bias
        self.o_bias = attention_bias
        self.qk_norm = family == "qwen3"
        if self.n_head % self.n_kv != 0:
            raise ModelFormatError(f"{f.where}: {self.n_head} heads cannot share {self.n_kv} KV heads")
        if self.head_dim % 2 != 0 or self.head_dim > 512:
            raise UnsupportedModelError(f"{f.where}: head_dim {self.head_dim} (even, at most 512)")
        self.windows = _windows(f, family, self.n_layer)
        rope = parse_rope(f, 10000.0)
        self.rope_kind = rope.kind
        self.inv_freq = rope.inv_freq(self.head_dim)


def _windows(f: Fields, family: str, n_layer: int) -> list[int]:
    """Each layer's attention window (0: full), as transformers 4.57 and 5 decide it."""
    if family == "llama":
        return [0] * n_layer
    if family == "mistral":
        # The key absent means transformers' default of 4096; null means full attention.
        w = f.data.get("sliding_window", 4096)
        if w is None:
            return [0] * n_layer
        return [f.int_("sliding_window")] * n_layer
    # qwen2 / qwen3: sliding_window counts only with use_sliding_window (transformers sets it to
    # None otherwise, and sliding layers then attend to everything).
    window = f.int_("sliding_window", 4096) if f.bool_("use_sliding_window", False) else 0
    lt = f.data.get("layer_types")
    if lt is not None:  # transformers 5 (and 4.57 when written out)
        if not isinstance(lt, list) or len(lt) != n_layer or any(t not in (SLIDING, FULL) for t in lt):
            raise ModelFormatError(f"{f.where}: layer_types must list {n_layer} of {SLIDING!r}/{FULL!r}")
        return [window if t == SLIDING else 0 for t in lt]
    first = f.int_("max_window_layers", 28, minimum=0)
    return [window if i >= first else 0 for i in range(n_layer)]
