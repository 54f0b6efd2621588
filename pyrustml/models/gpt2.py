"""GPT-2 (model_type "gpt2"): pre-norm blocks with LayerNorm, learned positions, fused QKV,
GELU-tanh MLP, lm_head tied to the token embedding.

Checkpoint quirks handled here: HF Conv1D weights are stored [in, out] (transposed while
quantizing); openai-community/gpt2 has no "transformer." prefix and no lm_head; the
attn.bias / attn.masked_bias buffers are causal masks, not weights.
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
from ..io.config import MAX_LAYERS, Fields
from ..io.safetensors import Checkpoint
from ..io.weights import QuantPlan, load_linear, matrix_f32, vector
from .base import PREFILL_CHUNK, Transformer

# Config flags that change the computation and that we do not implement: refused, never ignored.
UNSUPPORTED_FLAGS = {
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")


class GPT2Config:
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    vocab_size: int
    n_inner: int
    eps: float
    scale_attn: bool

    def __init__(self, f: Fields) -> None:
        self.n_layer = f.int_("n_layer", maximum=MAX_LAYERS)
        self.n_embd = f.int_("n_embd")
        self.n_head = f.int_("n_head")
        self.n_positions = f.int_("n_positions", f.data.get("n_ctx"))
        self.vocab_size = f.int_("vocab_size")
        self.n_inner = f.int_("n_inner") if f.has("n_inner") else 4 * self.n_embd
        self.eps = f.float_("layer_norm_epsilon", 1e-5)
        self.scale_attn = f.bool_("scale_attn_weights", True)
        act = f.str_("activation_function", "gelu_new")
        if act not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedModelError(f"{f.where}: activation_function {act!r} is not supported")
        for key, ok_value in UNSUPPORTED_FLAGS.items():
            if f.data.get(key, ok_value) != ok_value:
                raise UnsupportedModelError(f"{f.where}: {key}={f.data[key]!r} is not supported")
        if self.n_embd % self.n_head != 0:
            raise ModelFormatError(
                f"{f.where}: n_embd {self.n_embd} is not divisible by n_head {self.n_head}"
            )
        if self.n_embd // self.n_head > 512:
            raise UnsupportedModelError(f"{f.where}: head size {self.n_embd // self.n_head} exceeds 512")


class GPT2Block:
    ln1_w: np.ndarray  # (D,)
    ln1_b: np.ndarray
    attn: Linear  # (3D, D): rows q | k | v
    proj: Linear  # (D, D)
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    fc: Linear  # (I, D)
    fc_proj: Linear  # (D, I)
    kv: KVCache  # (H, n_positions, hd) each
    p: dict[str, Any]  # libq8 pointers of the arrays above

    def __init__(self) -> None:
        self.p = {}


class GPT2(Transformer):
    cfg: GPT2Config
    blocks: list[GPT2Block]
    wte: Linear  # (V, D): embedding rows and the tied lm_head
    wpe: np.ndarray  # (P, D)
    lnf_w: np.ndarray
    lnf_b: np.ndarray
    embed: Embedding
    # activations, (PREFILL_CHUNK, width) each, allocated once
    x: np.ndarray
    h: np.ndarray
    qkv: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    att: np.ndarray
    tmp: np.ndarray
    ff: np.ndarray
    ptr: dict[str, Any]

    def __init__(self, f: Fields, ckpt: Checkpoint, plan: QuantPlan) -> None:
        cfg = GPT2Config(f)
        self.cfg = cfg
        arena = WeightArena()  # every Q8_0 matrix in huge-page slabs, in load order
        self.model_type = "gpt2"
        self.prefill_chunk = PREFILL_CHUNK
        self.vocab_size = cfg.vocab_size
        self.n_layers = cfg.n_layer
        self.hidden_size = cfg.n_embd
        self.max_positions = cfg.n_positions
        self.final_softcap = 0.0
        names = set(ckpt.names())
        pre = "transformer." if "transformer.wte.weight" in names else ""
        D, V, P, F = cfg.n_embd, cfg.vocab_size, cfg.n_positions, cfg.n_inner
        # Token embedding, also the lm_head (tied) unless the checkpoint carries its own.
        self.wte = load_linear(
            ckpt, pre + "wte.weight", None, V, D, transposed=False, fmt=plan.fmt("embed"), arena=arena
        )
        self.lm_head = self.wte
        if "lm_head.weight" in names:
            self.lm_head = load_linear(
                ckpt, "lm_head.weight", None, V, D, transposed=False, fmt=plan.fmt("lm_head"), arena=arena
            )
        self.embed = Embedding(self.wte)
        self.wpe = matrix_f32(ckpt, pre + "wpe.weight", (P, D))
        self.blocks = []
        H = cfg.n_head
        hd = D // H
        for i in range(cfg.n_layer):
            b = GPT2Block()
            n = f"{pre}h.{i}."
            b.ln1_w = vector(ckpt, n + "ln_1.weight", D)
            b.ln1_b = vector(ckpt, n + "ln_1.bias", D)
            # Conv1D weights are [in, out]: transposed=True gives the (out, in) rows we stream.
            b.attn = load_linear(
                ckpt,
                n + "attn.c_attn.weight",
                n + "attn.c_attn.bias",
                3 * D,
                D,
                transposed=True,
                fmt=plan.fmt("matrix"),
                arena=arena,
            )
            b.proj = load_linear(
                ckpt,
                n + "attn.c_proj.weight",
                n + "attn.c_proj.bias",
                D,
                D,
                transposed=True,
                fmt=plan.fmt("attn_out"),
                arena=arena,
            )
            b.ln2_w = vector(ckpt, n + "ln_2.weight", D)
            b.ln2_b = vector(ckpt, n + "ln_2.bias", D)
            b.fc = load_linear(
                ckpt,
                n + "mlp.c_fc.weight",
                n + "mlp.c_fc.bias",
                F,
                D,
                transposed=True,
                fmt=plan.fmt("matrix"),
                arena=arena,
            )
            b.fc_proj = load_linear(
                ckpt,
                n + "mlp.c_proj.weight",
                n + "mlp.c_proj.bias",
                D,
                F,
                transposed=True,
                fmt=plan.fmt("matrix"),
                arena=arena,
            )
            b.kv = KVCache(H, P, hd, f"layer {i}")
            for key in ("ln1_w", "ln1_b", "ln2_w", "ln2_b"):
                b.p[key] = ffi.from_buffer("float[]", getattr(b, key))
            self.blocks.append(b)
        self.lnf_w = vector(ckpt, pre + "ln_f.weight", D)
        self.lnf_b = vector(ckpt, pre + "ln_f.bias", D)
        self._check_leftovers(ckpt.source, names, pre)
        self.n_matrices = 4 * cfg.n_layer + (2 if self.lm_head is not self.wte else 1)
        self.n_projections = 6 * cfg.n_layer + 1  # q, k, v (c_attn), c_proj, c_fc, mlp c_proj; lm_head
        self.fusions = {"qkv": cfg.n_layer}
        self._alloc()

    def _check_leftovers(self, source: str, names: set[str], pre: str) -> None:
        known = {pre + s for s in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias")} | {
            "lm_head.weight"
        }
        per_layer = (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
            "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
            "mlp.c_proj.weight", "mlp.c_proj.bias", "attn.bias", "attn.masked_bias",
        )  # fmt: skip
        for i in range(self.cfg.n_layer):
            known |= {f"{pre}h.{i}.{s}" for s in per_layer}
        self.refuse_unknown(source, names, known)

    def _alloc(self) -> None:
        D, F, T = self.cfg.n_embd, self.cfg.n_inner, PREFILL_CHUNK
        self.x = np.zeros((T, D), dtype=np.float32)
        self.h = np.zeros((T, D), dtype=np.float32)
        self.qkv = np.zeros((T, 3 * D), dtype=np.float32)
        self.q = np.zeros((T, D), dtype=np.float32)
        self.k = np.zeros((T, D), dtype=np.float32)
        self.v = np.zeros((T, D), dtype=np.float32)
        self.att = np.zeros((T, D), dtype=np.float32)
        self.tmp = np.zeros((T, D), dtype=np.float32)
        self.ff = np.zeros((T, F), dtype=np.float32)
        self.ptr = {}
        for key in ("x", "h", "qkv", "q", "k", "v", "att", "tmp", "ff", "wpe", "lnf_w", "lnf_b"):
            self.ptr[key] = ffi.from_buffer("float[]", getattr(self, key))
        self._alloc_head()

    def layer_weights(self) -> list[tuple[list[Linear], list[Linear]]]:
        return [([b.attn, b.proj], [b.fc, b.fc_proj]) for b in self.blocks]

    def layer_kv(self) -> list[tuple[int, int]]:
        return [(b.kv.row_bytes, 0) for b in self.blocks]

    def forward(self, ops: Ops) -> None:
        cfg = self.cfg
        t = ops.t
        D, H = cfg.n_embd, cfg.n_head
        hd = D // H
        P = self.ptr
        scale = 1.0 / math.sqrt(hd) if cfg.scale_attn else 1.0
        # Embedding: token row + learned position row.
        ops.embed(self.embed, P["x"])
        ops.add_pos_row(P["wpe"], cfg.n_positions, D, P["x"], P["x"])
        ops.mark_embedding()
        for i, b in enumerate(self.blocks):
            bp = b.p
            # Attention: LayerNorm -> fused QKV (3D) -> cache write -> causal attention -> proj.
            ops.layernorm(P["x"], bp["ln1_w"], bp["ln1_b"], 1, D, cfg.eps, P["h"])
            ops.matmul(b.attn, P["h"], P["qkv"])
            if t == 1:
                q, k, v = P["qkv"], P["qkv"] + D, P["qkv"] + 2 * D
            else:
                # Several rows (never in a decode plan): split the fused rows into contiguous
                # q, k, v (t x D each).
                self.split_columns(self.qkv, t, [self.q, self.k, self.v])
                q, k, v = P["q"], P["k"], P["v"]
            ops.kv_write(k, v, b.kv)
            ops.attention(q, b.kv, H, 0, scale, 0.0, P["att"])
            ops.matmul(b.proj, P["att"], P["tmp"])
            ops.add(P["x"], P["tmp"], D, P["x"])
            ops.mark_attention(i)
            # MLP: LayerNorm -> fc (I) -> GELU tanh -> proj (D) -> residual.
            ops.layernorm(P["x"], bp["ln2_w"], bp["ln2_b"], 1, D, cfg.eps, P["h"])
            ops.matmul(b.fc, P["h"], P["ff"])
            ops.gelu(P["ff"], cfg.n_inner, P["ff"])
            ops.matmul(b.fc_proj, P["ff"], P["tmp"])
            ops.add(P["x"], P["tmp"], D, P["x"])
            ops.mark_ffn(i)
        ops.layernorm(P["x"], P["lnf_w"], P["lnf_b"], 1, D, cfg.eps, self.final_ptr)
        ops.mark_norm()


def build(f: Fields, ckpt: Checkpoint, plan: QuantPlan) -> Transformer:
    return GPT2(f, ckpt, plan)
