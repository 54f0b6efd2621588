"""Gemma 3 text models (model_type "gemma3_text", Gemma3ForCausalLM; google/gemma-3-1b-it).

Every quirk in code: embedding x sqrt(hidden); RMSNorm scales by (1 + w) in float32, also as
per-head q_norm / k_norm; four norms per layer (input, post-attention, pre- and post-feedforward);
grouped-query attention; head_dim from config; attention scale query_pre_attn_scalar^-0.5;
sliding-window attention on local layers (a ring cache), full attention on global ones, with
RoPE base rope_local_base_freq (local) and rope_theta (global); GeGLU with gelu tanh; tied
lm_head; optional final and attention logit softcapping. Config: the 4.x keys real checkpoints
carry (rope_theta, rope_local_base_freq, sliding_window_pattern) and the transformers 5 keys
(rope_parameters, layer_types) are both read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..engine._ffi import ffi
from ..engine.kernels import WeightArena
from ..engine.kv_cache import KVCache
from ..engine.linear import Embedding, Linear
from ..engine.plan import Ops
from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import FLOAT_MAX, MAX_LAYERS, Fields
from ..io.safetensors import Checkpoint
from ..io.weights import QuantPlan, load_fused, load_linear, vector
from .base import PREFILL_CHUNK, Transformer

SLIDING = "sliding_attention"
FULL = "full_attention"


class Gemma3Config:
    hidden: int
    inter: int
    n_layer: int
    n_head: int
    n_kv: int
    head_dim: int
    vocab: int
    eps: float
    max_pos: int
    scale: float
    window: int
    layer_types: list[str]
    theta_local: float
    theta_global: float
    final_softcap: float
    attn_softcap: float

    def __init__(self, f: Fields) -> None:
        self.hidden = f.int_("hidden_size")
        self.inter = f.int_("intermediate_size")
        self.n_layer = f.int_("num_hidden_layers", maximum=MAX_LAYERS)
        self.n_head = f.int_("num_attention_heads")
        self.n_kv = f.int_("num_key_value_heads", self.n_head)
        self.head_dim = f.int_("head_dim", self.hidden // self.n_head)
        self.vocab = f.int_("vocab_size")
        self.eps = f.float_("rms_norm_eps", 1e-6)
        self.max_pos = f.int_("max_position_embeddings", 32768)
        self.scale = f.float_("query_pre_attn_scalar", float(self.head_dim)) ** -0.5
        self.window = f.int_("sliding_window", 4096)
        self.final_softcap = f.opt_float("final_logit_softcapping") or 0.0
        self.attn_softcap = f.opt_float("attn_logit_softcapping") or 0.0
        act = f.str_("hidden_activation", "gelu_pytorch_tanh")
        if act not in ("gelu_pytorch_tanh", "gelu_tanh", "gelu_new"):
            raise UnsupportedModelError(f"{f.where}: hidden_activation {act!r} is not supported")
        if self.n_head % self.n_kv != 0:
            raise ModelFormatError(f"{f.where}: {self.n_head} heads cannot share {self.n_kv} KV heads")
        if self.head_dim % 2 != 0 or self.head_dim > 512:
            raise UnsupportedModelError(f"{f.where}: head_dim {self.head_dim} (even, at most 512)")
        self.layer_types = _layer_types(f, self.n_layer)
        self.theta_local, self.theta_global = _rope_bases(f)


def _layer_types(f: Fields, n_layer: int) -> list[str]:
    lt = f.data.get("layer_types")
    if lt is not None:  # transformers 5
        if not isinstance(lt, list) or len(lt) != n_layer or any(t not in (SLIDING, FULL) for t in lt):
            raise ModelFormatError(f"{f.where}: layer_types must list {n_layer} of {SLIDING!r}/{FULL!r}")
        return [str(t) for t in lt]
    pattern = f.int_("sliding_window_pattern", 6)  # 4.x: every pattern-th layer is global
    return [FULL if (i + 1) % pattern == 0 else SLIDING for i in range(n_layer)]


def _rope_bases(f: Fields) -> tuple[float, float]:
    params = f.data.get("rope_parameters")
    if isinstance(params, dict) and (SLIDING in params or FULL in params):  # transformers 5
        bases = []
        for kind, default in ((SLIDING, 10000.0), (FULL, 1000000.0)):
            p = params.get(kind, {})
            if not isinstance(p, dict):
                raise ModelFormatError(f"{f.where}: rope_parameters[{kind!r}] is not an object")
            rtype = p.get("rope_type", "default")
            if rtype != "default":
                raise UnsupportedModelError(f"{f.where}: rope_type {rtype!r} for {kind} is not supported")
            theta = p.get("rope_theta", default)
            if isinstance(theta, bool) or not isinstance(theta, int | float) or not 0 < theta <= FLOAT_MAX:
                raise ModelFormatError(f"{f.where}: rope_theta for {kind} must be a finite positive number")
            bases.append(float(theta))
        return bases[0], bases[1]
    scaling = f.data.get("rope_scaling")
    scaling_type = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else scaling
    if scaling is not None and scaling_type != "default":
        raise UnsupportedModelError(f"{f.where}: rope_scaling {scaling!r} is not supported")
    return f.float_("rope_local_base_freq", 10000.0), f.float_("rope_theta", 1000000.0)


class Gemma3Layer:
    sliding: bool
    theta: float
    window: int  # 0: full attention
    cap: int  # KV slots: a ring of window + chunk for local layers
    qkv: Linear  # (H*hd + 2*KV*hd, D): q | k | v rows, fused
    o: Linear  # (D, H*hd)
    gate_up: Linear  # (2I, D): gate | up rows, fused
    down: Linear  # (D, I)
    norms: dict[str, np.ndarray]  # input, post_attention, pre_feedforward, post_feedforward, q, k
    kv: KVCache  # (KV, cap, hd) each
    p: dict[str, Any]


class Gemma3(Transformer):
    cfg: Gemma3Config
    layers: list[Gemma3Layer]
    embed_table: Linear
    embed: Embedding
    final_norm: np.ndarray
    x: np.ndarray
    h: np.ndarray
    qkv: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    att: np.ndarray
    tmp: np.ndarray
    gu: np.ndarray
    act: np.ndarray
    ptr: dict[str, Any]
    embed_scale: float

    def __init__(self, f: Fields, ckpt: Checkpoint, plan: QuantPlan) -> None:
        cfg = Gemma3Config(f)
        self.cfg = cfg
        arena = WeightArena()  # every Q8_0 matrix in huge-page slabs, in load order
        self.model_type = "gemma3_text"
        # Prefill chunks no longer than the window keep each local layer's ring at window + chunk
        # slots (at most twice the window) while a chunk's first query still sees its window.
        self.prefill_chunk = min(PREFILL_CHUNK, cfg.window)
        self.vocab_size = cfg.vocab
        self.n_layers = cfg.n_layer
        self.hidden_size = cfg.hidden
        self.max_positions = cfg.max_pos
        self.final_softcap = cfg.final_softcap
        D, H, KV, hd, FF = cfg.hidden, cfg.n_head, cfg.n_kv, cfg.head_dim, cfg.inter
        names = set(ckpt.names())
        self.embed_table = load_linear(
            ckpt,
            "model.embed_tokens.weight",
            None,
            cfg.vocab,
            D,
            transposed=False,
            fmt=plan.fmt("embed"),
            arena=arena,
        )
        self.lm_head = self.embed_table
        if "lm_head.weight" in names:
            self.lm_head = load_linear(
                ckpt,
                "lm_head.weight",
                None,
                cfg.vocab,
                D,
                transposed=False,
                fmt=plan.fmt("lm_head"),
                arena=arena,
            )
        self.embed = Embedding(self.embed_table)
        # The embedding is scaled by sqrt(hidden) rounded to float32, as transformers does.
        self.embed_scale = float(np.float32(math.sqrt(D)))
        self.layers = []
        for i in range(cfg.n_layer):
            n = f"model.layers.{i}."
            L = Gemma3Layer()
            L.sliding = cfg.layer_types[i] == SLIDING
            L.theta = cfg.theta_local if L.sliding else cfg.theta_global
            L.window = cfg.window if L.sliding else 0
            # A ring must still hold the window behind the first query of a prefill chunk.
            L.cap = min(cfg.max_pos, cfg.window + self.prefill_chunk) if L.sliding else cfg.max_pos
            L.qkv = load_fused(
                ckpt,
                [n + "self_attn.q_proj.weight", n + "self_attn.k_proj.weight", n + "self_attn.v_proj.weight"],
                [H * hd, KV * hd, KV * hd],
                D,
                fmt=plan.fmt("matrix"),
                arena=arena,
            )
            L.o = load_linear(
                ckpt,
                n + "self_attn.o_proj.weight",
                None,
                D,
                H * hd,
                transposed=False,
                fmt=plan.fmt("attn_out"),
                arena=arena,
            )
            L.gate_up = load_fused(
                ckpt,
                [n + "mlp.gate_proj.weight", n + "mlp.up_proj.weight"],
                [FF, FF],
                D,
                fmt=plan.fmt("matrix"),
                arena=arena,
            )
            L.down = load_linear(
                ckpt,
                n + "mlp.down_proj.weight",
                None,
                D,
                FF,
                transposed=False,
                fmt=plan.fmt("matrix"),
                arena=arena,
            )
            L.norms = {
                "input": vector(ckpt, n + "input_layernorm.weight", D),
                "post_attention": vector(ckpt, n + "post_attention_layernorm.weight", D),
                "pre_feedforward": vector(ckpt, n + "pre_feedforward_layernorm.weight", D),
                "post_feedforward": vector(ckpt, n + "post_feedforward_layernorm.weight", D),
                "q": vector(ckpt, n + "self_attn.q_norm.weight", hd),
                "k": vector(ckpt, n + "self_attn.k_norm.weight", hd),
            }
            L.kv = KVCache(KV, L.cap, hd, f"layer {i}")
            L.p = {key: ffi.from_buffer("float[]", arr) for key, arr in L.norms.items()}
            self.layers.append(L)
        self.final_norm = vector(ckpt, "model.norm.weight", D)
        self._check_leftovers(ckpt.source, names)
        self.n_matrices = 4 * cfg.n_layer + (2 if self.lm_head is not self.embed_table else 1)
        self.n_projections = 7 * cfg.n_layer + 1  # q, k, v, o, gate, up, down; lm_head
        self.fusions = {"qkv": cfg.n_layer, "gate+up": cfg.n_layer}
        self._alloc()

    def resume_slack(self) -> int:
        # A sliding layer's ring holds cap = window + prefill_chunk slots: resuming at position p
        # after positions up to P were written needs P - p < cap - window + 1.
        rings = [L.cap - L.window for L in self.layers if L.sliding and L.cap < self.cfg.max_pos]
        return min(rings, default=1 << 62)

    def _check_leftovers(self, source: str, names: set[str]) -> None:
        known = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
        per_layer = (
            "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.o_proj.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight",
            "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
            "input_layernorm.weight", "post_attention_layernorm.weight",
            "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight",
        )  # fmt: skip
        for i in range(self.cfg.n_layer):
            known |= {f"model.layers.{i}.{s}" for s in per_layer}
        self.refuse_unknown(source, names, known)

    def _alloc(self) -> None:
        c, T = self.cfg, PREFILL_CHUNK
        qd, kd = c.n_head * c.head_dim, c.n_kv * c.head_dim
        self.x = np.zeros((T, c.hidden), dtype=np.float32)
        self.h = np.zeros((T, c.hidden), dtype=np.float32)
        self.qkv = np.zeros((T, qd + 2 * kd), dtype=np.float32)
        self.q = np.zeros((T, qd), dtype=np.float32)
        self.k = np.zeros((T, kd), dtype=np.float32)
        self.v = np.zeros((T, kd), dtype=np.float32)
        self.att = np.zeros((T, qd), dtype=np.float32)
        self.tmp = np.zeros((T, c.hidden), dtype=np.float32)
        self.gu = np.zeros((T, 2 * c.inter), dtype=np.float32)
        self.act = np.zeros((T, c.inter), dtype=np.float32)
        self.ptr = {}
        for key in ("x", "h", "qkv", "q", "k", "v", "att", "tmp", "gu", "act", "final_norm"):
            self.ptr[key] = ffi.from_buffer("float[]", getattr(self, key))
        self._alloc_head()

    def layer_weights(self) -> list[tuple[list[Linear], list[Linear]]]:
        return [([L.qkv, L.o], [L.gate_up, L.down]) for L in self.layers]

    def layer_kv(self) -> list[tuple[int, int]]:
        return [(L.kv.row_bytes, L.window) for L in self.layers]

    def forward(self, ops: Ops) -> None:
        c = self.cfg
        t = ops.t
        D, H, KV, hd, FF = c.hidden, c.n_head, c.n_kv, c.head_dim, c.inter
        qd, kd = H * hd, KV * hd
        P = self.ptr
        # Embedding rows, scaled by sqrt(hidden).
        ops.embed(self.embed, P["x"])
        ops.scale(P["x"], self.embed_scale, D, P["x"])
        ops.mark_embedding()
        for i, L in enumerate(self.layers):
            p = L.p
            # Attention block: norm -> fused QKV -> q/k norms -> RoPE -> cache -> attention -> o.
            ops.rmsnorm(P["x"], p["input"], 1, D, c.eps, 1.0, P["h"])
            ops.matmul(L.qkv, P["h"], P["qkv"])
            if t == 1:
                q, k, v = P["qkv"], P["qkv"] + qd, P["qkv"] + qd + kd
            else:
                # Several rows (never in a decode plan): contiguous q, k, v.
                self.split_columns(self.qkv, t, [self.q, self.k, self.v])
                q, k, v = P["q"], P["k"], P["v"]
            ops.rmsnorm(q, p["q"], H, hd, c.eps, 1.0, q)
            ops.rmsnorm(k, p["k"], KV, hd, c.eps, 1.0, k)
            ops.rope(q, H, hd, L.theta)
            ops.rope(k, KV, hd, L.theta)
            ops.kv_write(k, v, L.kv)
            ops.attention(q, L.kv, H, L.window, c.scale, c.attn_softcap, P["att"])
            ops.matmul(L.o, P["att"], P["tmp"])
            ops.rmsnorm(P["tmp"], p["post_attention"], 1, D, c.eps, 1.0, P["tmp"])
            ops.add(P["x"], P["tmp"], D, P["x"])
            ops.mark_attention(i)
            # Feed-forward block: norm -> fused gate|up -> GeGLU -> down -> norm -> residual.
            ops.rmsnorm(P["x"], p["pre_feedforward"], 1, D, c.eps, 1.0, P["h"])
            ops.matmul(L.gate_up, P["h"], P["gu"])
            ops.geglu_rows(P["gu"], 1, FF, P["act"])
            ops.matmul(L.down, P["act"], P["tmp"])
            ops.rmsnorm(P["tmp"], p["post_feedforward"], 1, D, c.eps, 1.0, P["tmp"])
            ops.add(P["x"], P["tmp"], D, P["x"])
            ops.mark_ffn(i)
        ops.rmsnorm(P["x"], P["final_norm"], 1, D, c.eps, 1.0, self.final_ptr)
        ops.mark_norm()


def build(f: Fields, ckpt: Checkpoint, plan: QuantPlan) -> Transformer:
    return Gemma3(f, ckpt, plan)
