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
- tie_word_embeddings: the lm_head is the embedding table (a stored lm_head.weight must then
  equal it); otherwise lm_head.weight is required (io.weights.lm_head_is_stored).
- Sliding windows: mistral's sliding_window on every layer when set (4096 when the key is absent,
  as transformers defaults it; null: none); qwen2/qwen3's use_sliding_window with sliding_window
  on layers i >= max_window_layers; transformers 5's layer_types when present. Sliding layers
  keep a ring cache of window + prefill chunk positions.

Config keys read: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
num_key_value_heads, head_dim, vocab_size, rms_norm_eps, max_position_embeddings,
tie_word_embeddings, hidden_act, attention_bias, mlp_bias, sliding_window, use_sliding_window,
max_window_layers, layer_types, rope_theta, rope_scaling, rope_parameters, partial_rotary_factor.
Refused (UnsupportedModelError): rope types yarn, longrope, dynamic (and any other);
partial_rotary_factor != 1; hidden_act other than silu; mlp_bias; head_dim odd or above 512 (Q8_MAX_HEAD_DIM).
Tensors outside the list above are refused (ModelFormatError), except rotary_emb.inv_freq buffers.
"""

from __future__ import annotations

import numpy as np

from ..engine.plan import Buf, Plan
from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import MAX_LAYERS, Fields
from ..io.safetensors import Checkpoint
from ..io.weight_map import WeightMap, vec
from ..io.weights import lm_head_is_stored
from .base import PREFILL_CHUNK, LoadOptions, Transformer
from .decoder import Decoder, DecoderConfig, layer_map
from .rope import parse_rope

SLIDING = "sliding_attention"
FULL = "full_attention"
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


class LlamaConfig(DecoderConfig):
    family: str
    eps: float
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
        self.check_heads(f)
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


class Llama(Decoder):
    cfg: LlamaConfig
    inv_freq: Buf  # (hd / 2) the RoPE table (models/rope.py)
    scale: float  # head_dim^-0.5

    def __init__(self, f: Fields, ckpt: Checkpoint, opts: LoadOptions, family: str) -> None:
        cfg = LlamaConfig(f, family)
        self.cfg = cfg
        self.model_type = family
        # Prefill chunks no longer than the window keep each ring at window + chunk positions
        # while a chunk's first query still sees its window.
        self.prefill_chunk = min([PREFILL_CHUNK, *(w for w in cfg.windows if w > 0)])
        self.set_sizes(cfg.vocab, cfg.n_layer, cfg.hidden, cfg.max_pos, opts)
        self.final_softcap = 0.0
        self.scale = cfg.head_dim**-0.5
        self.inv_freq = Buf.of(cfg.inv_freq)
        D, hd = cfg.hidden, cfg.head_dim
        norms: WeightMap = {
            "input": vec("input_layernorm.weight", D),
            "post_attention": vec("post_attention_layernorm.weight", D),
        }
        if cfg.qk_norm:
            norms |= {"q": vec("self_attn.q_norm.weight", hd), "k": vec("self_attn.k_norm.weight", hd)}
        self.load_decoder(
            cfg,
            ckpt,
            opts,
            layer_map(cfg, cfg.qkv_bias, cfg.o_bias),
            norms,
            cfg.windows,
            load_head=lm_head_is_stored(
                cfg.tied, ckpt, "model.embed_tokens.weight", "lm_head.weight", f.where
            ),
            # a buffer some exporters save: recomputed from the config, never read
            allowed=("self_attn.rotary_emb.inv_freq",),
        )
        self.alloc_activations(cfg)
        self.build_plan()

    def forward(self, ops: Plan) -> None:
        c = self.cfg
        D, H, KV, hd = c.hidden, c.n_head, c.n_kv, c.head_dim
        x, h, tmp, q, k = self.x, self.h, self.tmp, self.q, self.k
        # Embedding rows (no scaling in this family).
        ops.embed(self.embed, x)
        ops.mark_embedding()
        for i, L in enumerate(self.layers):
            n = L.norms
            # Attention: norm -> fused QKV (+ biases) -> q | k | v -> (qwen3: q/k norms) ->
            # RoPE from the table -> cache -> attention (window on sliding layers) -> o -> residual.
            ops.rmsnorm(x, n["input"], 1, D, c.eps, 0.0, h)
            ops.matmul(L.qkv, h, self.qkv)
            ops.split(self.qkv, [q, k, self.v])
            if c.qk_norm:
                ops.rmsnorm(q, n["q"], H, hd, c.eps, 0.0, q)
                ops.rmsnorm(k, n["k"], KV, hd, c.eps, 0.0, k)
            ops.rope_freq(q, H, hd, self.inv_freq)
            ops.rope_freq(k, KV, hd, self.inv_freq)
            ops.kv_write(k, self.v, L.kv)
            ops.attention(q, L.kv, H, L.window, self.scale, 0.0, self.att)
            ops.matmul(L.o, self.att, tmp)
            ops.add(x, tmp, D, x)
            ops.mark_attention(i)
            # Feed-forward: norm -> fused gate|up -> SwiGLU -> down -> residual.
            ops.rmsnorm(x, n["post_attention"], 1, D, c.eps, 0.0, h)
            self.gated_mlp(ops, L, ops.swiglu_rows)
            ops.add(x, tmp, D, x)
            ops.mark_ffn(i)
        ops.rmsnorm(x, self.final_norm, 1, D, c.eps, 0.0, self.final_buf)
        ops.mark_norm()


def build_llama(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    return Llama(f, ckpt, opts, "llama")


def build_mistral(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    return Llama(f, ckpt, opts, "mistral")


def build_qwen2(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    return Llama(f, ckpt, opts, "qwen2")


def build_qwen3(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    return Llama(f, ckpt, opts, "qwen3")
