"""Gemma 3 text models (model_type "gemma3_text", Gemma3ForCausalLM; google/gemma-3-1b-it).

Every quirk in code: embedding x sqrt(hidden); RMSNorm scales by (1 + w) in float32, also as
per-head q_norm / k_norm; four norms per layer (input, post-attention, pre- and post-feedforward);
grouped-query attention; head_dim from config; attention scale query_pre_attn_scalar^-0.5;
sliding-window attention on local layers (a ring cache), full attention on global ones, with
RoPE base rope_local_base_freq (local) and rope_theta (global); GeGLU with gelu tanh; tied
lm_head; optional final and attention logit softcapping; RoPE scaling (`linear`, Gemma 3 4B+:
x8) on the global layers only, through a frequency table (models/rope.py), never on the local
ones. Config: the 4.x keys real checkpoints carry (rope_theta, rope_scaling, rope_local_base_freq,
sliding_window_pattern) and the transformers 5 keys (rope_parameters, layer_types) are both read.
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.plan import Buf, Plan
from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import F32_MAX, F32_TINY, MAX_LAYERS, Fields, refuse_unsupported
from ..io.safetensors import Checkpoint
from ..io.weight_map import WeightMap, vec
from ..io.weights import lm_head_is_stored
from .base import PREFILL_CHUNK, LoadOptions, Transformer
from .decoder import Decoder, DecoderConfig, layer_map
from .rope import Rope, check_theta, parse_rope

SLIDING = "sliding_attention"
FULL = "full_attention"

# Every config.json key that changes the computation is either read (CONFIG_KEYS_READ) or refused
# unless it holds one of its accepted values (CONFIG_KEYS_REFUSED): never silently ignored.
CONFIG_KEYS_READ = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps", "max_position_embeddings",
    "query_pre_attn_scalar", "sliding_window", "final_logit_softcapping", "attn_logit_softcapping",
    "hidden_activation", "layer_types", "sliding_window_pattern", "rope_parameters", "rope_theta",
    "rope_local_base_freq", "rope_scaling", "tie_word_embeddings",
)  # fmt: skip
CONFIG_KEYS_REFUSED: dict[str, tuple[object, ...]] = {
    "use_bidirectional_attention": (False,),  # EmbeddingGemma: no causal mask
    "attention_bias": (False,),  # q/k/v/o biases
    "partial_rotary_factor": (1.0,),  # RoPE on part of each head
    "is_encoder_decoder": (False,),
    "add_cross_attention": (False,),
    "scale_embeddings": (True,),  # not a Gemma 3 key; a config turning the sqrt(hidden) off
}
# The RMSNorm epsilon stabilizes a mean square: above 1 it would dominate it (1e300 is inf as a
# float32, which made the model emit one token forever).
MAX_EPS = 1.0


class Gemma3Config(DecoderConfig):
    eps: float
    scale: float
    window: int
    layer_types: list[str]
    theta_local: float
    theta_global: float
    global_inv_freq: np.ndarray | None  # the global layers' scaled RoPE table (4B+: linear x8)
    final_softcap: float
    attn_softcap: float
    tie_word_embeddings: bool

    def __init__(self, f: Fields) -> None:
        refuse_unsupported(f, CONFIG_KEYS_REFUSED)
        self.hidden = f.int_("hidden_size")
        self.inter = f.int_("intermediate_size")
        self.n_layer = f.int_("num_hidden_layers", maximum=MAX_LAYERS)
        self.n_head = f.int_("num_attention_heads")
        self.n_kv = f.int_("num_key_value_heads", self.n_head)
        self.head_dim = f.int_("head_dim", self.hidden // self.n_head)
        self.vocab = f.int_("vocab_size")
        self.eps = f.float32_("rms_norm_eps", 1e-6, high=MAX_EPS)
        self.max_pos = f.int_("max_position_embeddings", 32768)
        # The score scale is what libq8 gets, as a float32: scalar^-0.5 must be finite there too.
        scalar = f.float32_("query_pre_attn_scalar", float(self.head_dim))
        self.scale = scalar**-0.5
        if not F32_TINY <= self.scale <= F32_MAX:
            raise ModelFormatError(
                f"{f.where}: 'query_pre_attn_scalar' {scalar!r} gives a score scale outside float32's range"
            )
        self.window = f.int_("sliding_window", 4096)
        self.final_softcap = f.opt_float32("final_logit_softcapping") or 0.0
        self.attn_softcap = f.opt_float32("attn_logit_softcapping") or 0.0
        self.tie_word_embeddings = f.bool_("tie_word_embeddings", True)
        act = f.str_("hidden_activation", "gelu_pytorch_tanh")
        if act not in ("gelu_pytorch_tanh", "gelu_tanh", "gelu_new"):
            raise UnsupportedModelError(f"{f.where}: hidden_activation {act!r} is not supported")
        self.check_heads(f)
        self.layer_types = _layer_types(f, self.n_layer)
        self.theta_local, self.theta_global, scaled = _rope_bases(f)
        self.global_inv_freq = None if scaled is None else scaled.inv_freq(self.head_dim)


def _layer_types(f: Fields, n_layer: int) -> list[str]:
    lt = f.data.get("layer_types")
    if lt is not None:  # transformers 5
        if not isinstance(lt, list) or len(lt) != n_layer or any(t not in (SLIDING, FULL) for t in lt):
            raise ModelFormatError(f"{f.where}: layer_types must list {n_layer} of {SLIDING!r}/{FULL!r}")
        return [str(t) for t in lt]
    pattern = f.int_("sliding_window_pattern", 6)  # 4.x: every pattern-th layer is global
    return [FULL if (i + 1) % pattern == 0 else SLIDING for i in range(n_layer)]


# A RoPE base at or below 1 makes every rotation frequency >= 1 radian per position (a base of
# 1e-300 reached libq8 as garbage); no model uses one.
# Keys a RoPE parameter object may carry without changing the computation of rope_type "default".
_ROPE_INERT = {"rope_type", "type", "rope_theta", "factor"}  # default RoPE ignores factor


def _rope_theta(f: Fields, where: str, v: object) -> float:
    return check_theta(f.where, where, v)


def _rope_entry(
    f: Fields, where: str, p: object, default: float, scalable: bool
) -> tuple[float, Rope | None]:
    """One RoPE parameter object: its base, and its scaling where the layers take one (the global
    layers: linear or llama3, by models/rope.py, which refuses the rest); a local layer's scaling,
    or an unknown key, is refused rather than ignored."""
    if not isinstance(p, dict):
        raise ModelFormatError(f"{f.where}: {where} is not an object")
    rtype = p.get("rope_type", p.get("type", "default"))
    if rtype != "default":
        if not scalable:
            raise UnsupportedModelError(f"{f.where}: {where} rope_type {str(rtype)[:40]!r} is not supported")
        rope = parse_rope(Fields({"rope_parameters": p}, f"{f.where} {where}"), default)
        return _rope_theta(f, f"{where}['rope_theta']", rope.theta), rope
    extra = sorted(set(p) - _ROPE_INERT)
    if extra:
        listed = ", ".join(map(str, extra))[:80]
        raise UnsupportedModelError(f"{f.where}: {where} sets {listed}, not supported")
    return _rope_theta(f, f"{where}['rope_theta']", p.get("rope_theta", default)), None


def _rope_bases(f: Fields) -> tuple[float, float, Rope | None]:
    """(local base, global base, the global layers' scaling or None). Scaling (Gemma 3 4B+:
    linear x8) applies to the global layers only; the local ones are never scaled. transformers 5
    writes rope_parameters per layer type; a flat rope_parameters object (the global layers'
    setting) and 4.x's rope_scaling are read too."""
    params = f.data.get("rope_parameters")
    scaling = f.data.get("rope_scaling")
    local_default = f.data.get("rope_local_base_freq", 10000.0)
    if params is not None:
        if not isinstance(params, dict):
            raise ModelFormatError(f"{f.where}: rope_parameters is not an object")
        if SLIDING in params or FULL in params:  # transformers 5, per layer type
            extra = sorted(set(params) - {SLIDING, FULL})
            if extra:
                listed = ", ".join(map(str, extra))[:80]
                raise UnsupportedModelError(
                    f"{f.where}: rope_parameters mixes per-layer-type entries with {listed}"
                )
            local, _ = _rope_entry(
                f, f"rope_parameters[{SLIDING!r}]", params.get(SLIDING, {}), 10000.0, False
            )
            full, rope = _rope_entry(f, f"rope_parameters[{FULL!r}]", params.get(FULL, {}), 1000000.0, True)
            return local, full, rope
        # Flat: one setting for the global layers; the local ones keep rope_local_base_freq.
        full, rope = _rope_entry(f, "rope_parameters", params, 1000000.0, True)
        return _rope_theta(f, "'rope_local_base_freq'", local_default), full, rope
    local = _rope_theta(f, "'rope_local_base_freq'", local_default)
    if scaling is not None:  # 4.x: rope_scaling with the top-level rope_theta, for the global layers
        if not isinstance(scaling, dict):
            raise ModelFormatError(f"{f.where}: rope_scaling is not an object")
        entry = {**scaling, "rope_theta": f.data.get("rope_theta", 1000000.0)}
        full, rope = _rope_entry(f, "rope_scaling", entry, 1000000.0, True)
        return local, full, rope
    return local, _rope_theta(f, "'rope_theta'", f.data.get("rope_theta", 1000000.0)), None


class Gemma3(Decoder):
    cfg: Gemma3Config
    embed_scale: float
    global_inv_freq: Buf | None  # the global layers' scaled RoPE table; None: unscaled

    def __init__(
        self,
        f: Fields,
        ckpt: Checkpoint,
        opts: LoadOptions,
        *,
        prefix: str = "model.",
        lm_head: str = "lm_head.weight",
        skipped: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """prefix, lm_head: where the text model's tensors are (Gemma3ForConditionalGeneration
        nests them: models/gemma3_multimodal.py); skipped: tensors never read (its vision tower)."""
        cfg = Gemma3Config(f)
        self.cfg = cfg
        self.model_type = "gemma3_text"
        # Prefill chunks no longer than the window keep each local layer's ring at window + chunk
        # slots (at most twice the window) while a chunk's first query still sees its window.
        self.prefill_chunk = min(PREFILL_CHUNK, cfg.window)
        self.set_sizes(cfg.vocab, cfg.n_layer, cfg.hidden, cfg.max_pos, opts)
        self.final_softcap = cfg.final_softcap
        D, hd = cfg.hidden, cfg.head_dim
        # The embedding is scaled by sqrt(hidden) rounded to float32, as transformers does.
        self.embed_scale = float(np.float32(math.sqrt(D)))
        self.global_inv_freq = None if cfg.global_inv_freq is None else Buf.of(cfg.global_inv_freq)
        norms: WeightMap = {
            "input": vec("input_layernorm.weight", D),
            "post_attention": vec("post_attention_layernorm.weight", D),
            "pre_feedforward": vec("pre_feedforward_layernorm.weight", D),
            "post_feedforward": vec("post_feedforward_layernorm.weight", D),
            "q": vec("self_attn.q_norm.weight", hd),
            "k": vec("self_attn.k_norm.weight", hd),
        }
        windows = [cfg.window if t == SLIDING else 0 for t in cfg.layer_types]
        load_head = lm_head_is_stored(
            cfg.tie_word_embeddings, ckpt, prefix + "embed_tokens.weight", lm_head, f.where
        )
        self.load_decoder(
            cfg,
            ckpt,
            opts,
            layer_map(cfg),
            norms,
            windows,
            prefix=prefix,
            head=lm_head,
            load_head=load_head,
            skipped=skipped,
        )
        self.alloc_activations(cfg)
        self.build_plan()

    def forward(self, ops: Plan) -> None:
        c = self.cfg
        D, H, KV, hd = c.hidden, c.n_head, c.n_kv, c.head_dim
        x, h, tmp = self.x, self.h, self.tmp
        # Embedding rows, scaled by sqrt(hidden).
        ops.embed(self.embed, x)
        ops.scale(x, self.embed_scale, D, x)
        ops.mark_embedding()
        for i, L in enumerate(self.layers):
            n = L.norms
            # Attention block: norm -> fused QKV -> q | k | v -> q/k norms -> RoPE -> cache ->
            # attention -> o -> norm -> residual.
            ops.rmsnorm(x, n["input"], 1, D, c.eps, 1.0, h)
            ops.matmul(L.qkv, h, self.qkv)
            ops.split(self.qkv, [self.q, self.k, self.v])
            ops.rmsnorm(self.q, n["q"], H, hd, c.eps, 1.0, self.q)
            ops.rmsnorm(self.k, n["k"], KV, hd, c.eps, 1.0, self.k)
            if L.sliding or self.global_inv_freq is None:
                theta = c.theta_local if L.sliding else c.theta_global
                ops.rope(self.q, H, hd, theta)
                ops.rope(self.k, KV, hd, theta)
            else:  # scaled global RoPE (4B+: linear x8): a frequency table
                ops.rope_freq(self.q, H, hd, self.global_inv_freq)
                ops.rope_freq(self.k, KV, hd, self.global_inv_freq)
            ops.kv_write(self.k, self.v, L.kv)
            ops.attention(self.q, L.kv, H, L.window, c.scale, c.attn_softcap, self.att)
            ops.matmul(L.o, self.att, tmp)
            ops.rmsnorm(tmp, n["post_attention"], 1, D, c.eps, 1.0, tmp)
            ops.add(x, tmp, D, x)
            ops.mark_attention(i)
            # Feed-forward block: norm -> fused gate|up -> GeGLU -> down -> norm -> residual.
            ops.rmsnorm(x, n["pre_feedforward"], 1, D, c.eps, 1.0, h)
            self.gated_mlp(ops, L, ops.geglu_rows)
            ops.rmsnorm(tmp, n["post_feedforward"], 1, D, c.eps, 1.0, tmp)
            ops.add(x, tmp, D, x)
            ops.mark_ffn(i)
        ops.rmsnorm(x, self.final_norm, 1, D, c.eps, 1.0, self.final_buf)
        ops.mark_norm()


def build(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    return Gemma3(f, ckpt, opts)
