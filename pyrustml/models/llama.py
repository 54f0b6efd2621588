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
Refused (UnsupportedModelError): rope types yarn, longrope, dynamic (and any other);
partial_rotary_factor != 1; hidden_act other than silu; mlp_bias; head_dim odd or above 512 (Q8_MAX_HEAD_DIM).
Tensors outside the list above are refused (ModelFormatError), except rotary_emb.inv_freq buffers.
"""

from __future__ import annotations

import numpy as np

from ..engine.kernels import MAX_HEAD_DIM, WeightArena
from ..engine.kv_cache import KVCache
from ..engine.linear import Embedding, Linear
from ..engine.plan import Buf, Plan
from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import MAX_LAYERS, Fields
from ..io.safetensors import Checkpoint
from ..io.weights import load_fused, load_linear, vector
from .base import PREFILL_CHUNK, LoadOptions, Transformer
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
        if self.head_dim % 2 != 0 or self.head_dim > MAX_HEAD_DIM:
            raise UnsupportedModelError(f"{f.where}: head_dim {self.head_dim} (even, at most {MAX_HEAD_DIM})")
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


def _linear(
    ckpt: Checkpoint, name: str, n: int, k: int, bias: str | None, fmt: str, arena: WeightArena
) -> Linear:
    """An nn.Linear weight (out, in) and its optional bias."""
    return load_linear(ckpt, name, bias, n, k, transposed=False, fmt=fmt, arena=arena)


class LlamaLayer:
    window: int  # 0: full attention
    cap: int  # KV positions: a ring of window + prefill chunk for sliding layers
    qkv: Linear  # (H*hd + 2*KV*hd, D): q | k | v rows fused (+ q|k|v biases for qwen2)
    o: Linear  # (D, H*hd) (+ bias with attention_bias)
    gate_up: Linear  # (2I, D): gate | up rows fused
    down: Linear  # (D, I)
    norms: dict[str, Buf]  # input, post_attention (D); qwen3: q, k (hd)
    kv: KVCache  # (slots, KV, cap, hd) each


class Llama(Transformer):
    cfg: LlamaConfig
    layers: list[LlamaLayer]
    embed_table: Linear  # (V, D)
    embed: Embedding
    final_norm: Buf  # (D)
    inv_freq: Buf  # (hd / 2) the RoPE table (models/rope.py)
    scale: float  # head_dim^-0.5
    # activations, (PREFILL_CHUNK rows, width) each, allocated once
    x: Buf  # (D) the residual stream
    h: Buf  # (D) normed input of a block
    qkv: Buf  # (H*hd + 2*KV*hd) fused q | k | v
    q: Buf  # (H*hd)
    k: Buf  # (KV*hd)
    v: Buf  # (KV*hd)
    att: Buf  # (H*hd) attention output
    tmp: Buf  # (D) a block's output before the residual add
    gu: Buf  # (2I) fused gate | up
    act: Buf  # (I) SwiGLU output

    def __init__(self, f: Fields, ckpt: Checkpoint, opts: LoadOptions, family: str) -> None:
        cfg = LlamaConfig(f, family)
        plan = opts.plan  # the weight format of each role (embed, lm_head, attn_out, matrix)
        mat = plan.fmt("matrix")
        self.cfg = cfg
        arena = WeightArena()  # every Q8_0 matrix in huge-page slabs, in load order
        self.model_type = family
        windows = [w for w in cfg.windows if w > 0]
        # Prefill chunks no longer than the window keep each ring at window + chunk positions
        # while a chunk's first query still sees its window.
        self.prefill_chunk = min([PREFILL_CHUNK, *windows])
        self.vocab_size = cfg.vocab
        self.n_layers = cfg.n_layer
        self.hidden_size = cfg.hidden
        self.max_positions = cfg.max_pos
        self.ctx = opts.context(cfg.max_pos)
        self.slots = opts.slots
        self.final_softcap = 0.0
        self.scale = cfg.head_dim**-0.5
        D, H, KV, hd, FF = cfg.hidden, cfg.n_head, cfg.n_kv, cfg.head_dim, cfg.inter
        names = set(ckpt.names())
        self.embed_table = _linear(
            ckpt, "model.embed_tokens.weight", cfg.vocab, D, None, plan.fmt("embed"), arena
        )
        # Tied: the embedding is the head (a stored lm_head.weight is ignored, as transformers
        # ties over it). Untied: lm_head.weight must be there.
        if cfg.tied:
            self.lm_head = self.embed_table
        else:
            self.lm_head = _linear(ckpt, "lm_head.weight", cfg.vocab, D, None, plan.fmt("lm_head"), arena)
        self.embed = Embedding(self.embed_table)
        self.inv_freq = Buf.of(cfg.inv_freq)
        self.layers = []
        for i in range(cfg.n_layer):
            n = f"model.layers.{i}.self_attn."
            m = f"model.layers.{i}."
            L = LlamaLayer()
            L.window = cfg.windows[i]
            # A ring must still hold the window behind the first query of a prefill chunk.
            L.cap = min(self.ctx, L.window + self.prefill_chunk) if L.window else self.ctx
            L.qkv = load_fused(
                ckpt,
                [n + "q_proj.weight", n + "k_proj.weight", n + "v_proj.weight"],
                [H * hd, KV * hd, KV * hd],
                D,
                fmt=mat,
                arena=arena,
                biases=[n + "q_proj.bias", n + "k_proj.bias", n + "v_proj.bias"] if cfg.qkv_bias else None,
            )
            o_bias = n + "o_proj.bias" if cfg.o_bias else None
            L.o = _linear(ckpt, n + "o_proj.weight", D, H * hd, o_bias, plan.fmt("attn_out"), arena)
            L.gate_up = load_fused(
                ckpt,
                [m + "mlp.gate_proj.weight", m + "mlp.up_proj.weight"],
                [FF, FF],
                D,
                fmt=mat,
                arena=arena,
            )
            L.down = _linear(ckpt, m + "mlp.down_proj.weight", D, FF, None, mat, arena)
            L.norms = {
                "input": Buf.of(vector(ckpt, m + "input_layernorm.weight", D)),
                "post_attention": Buf.of(vector(ckpt, m + "post_attention_layernorm.weight", D)),
            }
            if cfg.qk_norm:
                L.norms["q"] = Buf.of(vector(ckpt, n + "q_norm.weight", hd))
                L.norms["k"] = Buf.of(vector(ckpt, n + "k_norm.weight", hd))
            L.kv = KVCache(KV, L.cap, hd, self.slots, f"layer {i}")
            self.layers.append(L)
        self.final_norm = Buf.of(vector(ckpt, "model.norm.weight", D))
        self.refuse_unknown(ckpt.source, names, self._known())
        self.n_matrices = 4 * cfg.n_layer + (1 if cfg.tied else 2)
        self.n_projections = 7 * cfg.n_layer + 1  # q, k, v, o, gate, up, down; lm_head
        self.fusions = {"qkv": cfg.n_layer, "gate+up": cfg.n_layer}
        self._alloc()

    def _known(self) -> set[str]:
        c = self.cfg
        known = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
        per_layer = [
            "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
            "input_layernorm.weight", "post_attention_layernorm.weight",
            # a buffer some exporters save: recomputed from the config, never read
            "self_attn.rotary_emb.inv_freq",
        ]  # fmt: skip
        if c.qkv_bias:
            per_layer += ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]
        if c.o_bias:
            per_layer.append("self_attn.o_proj.bias")
        if c.qk_norm:
            per_layer += ["self_attn.q_norm.weight", "self_attn.k_norm.weight"]
        for i in range(c.n_layer):
            known |= {f"model.layers.{i}.{s}" for s in per_layer}
        return known

    def ring(self) -> tuple[int, int]:
        # Every sliding layer has the same ring (one sliding_window per config): window +
        # prefill_chunk positions, unless the whole context fits.
        rings = {(L.cap, L.window) for L in self.layers if L.window and L.cap < self.ctx}
        return min(rings, default=(0, 0))

    def _alloc(self) -> None:
        c = self.cfg
        qd, kd = c.n_head * c.head_dim, c.n_kv * c.head_dim
        self.x, self.h, self.tmp = (self.buf(c.hidden) for _ in range(3))
        self.qkv = self.buf(qd + 2 * kd)
        self.q, self.att = self.buf(qd), self.buf(qd)
        self.k, self.v = self.buf(kd), self.buf(kd)
        self.gu = self.buf(2 * c.inter)
        self.act = self.buf(c.inter)
        self.build_plan()

    def layer_weights(self) -> list[tuple[list[Linear], list[Linear]]]:
        return [([L.qkv, L.o], [L.gate_up, L.down]) for L in self.layers]

    def layer_kv(self) -> list[tuple[int, int]]:
        return [(L.kv.row_bytes, L.window) for L in self.layers]

    def forward(self, ops: Plan) -> None:
        c = self.cfg
        D, H, KV, hd, FF = c.hidden, c.n_head, c.n_kv, c.head_dim, c.inter
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
            ops.matmul(L.gate_up, h, self.gu)
            ops.swiglu_rows(self.gu, 1, FF, self.act)
            ops.matmul(L.down, self.act, tmp)
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
