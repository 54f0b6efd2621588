"""What the Llama family and Gemma 3 share: a decoder of grouped-query attention over fused
q | k | v rows, sliding-window layers on ring caches, and a gated MLP over fused gate | up rows,
stored under the tensor names both use (model.layers.N.self_attn.q_proj.weight, ...). Each
architecture adds its config, its norms and its forward()."""

from __future__ import annotations

from collections.abc import Callable

from ..engine.kernels import MAX_HEAD_DIM, WeightArena
from ..engine.kv_cache import KVCache
from ..engine.linear import Embedding, Linear
from ..engine.plan import Buf, Plan
from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import Fields
from ..io.safetensors import Checkpoint
from ..io.weight_map import WeightMap, checkpoint_names, fused, linear, load_into, load_map, vec
from .base import LoadOptions, Transformer


class DecoderConfig:
    """The sizes every decoder's config gives (each architecture reads them its own way)."""

    hidden: int
    inter: int
    n_layer: int
    n_head: int
    n_kv: int
    head_dim: int
    vocab: int
    max_pos: int

    def check_heads(self, f: Fields) -> None:
        """Query heads must share the KV heads evenly, and libq8's attention and RoPE take an even
        head_dim up to Q8_MAX_HEAD_DIM."""
        if self.n_head % self.n_kv != 0:
            raise ModelFormatError(f"{f.where}: {self.n_head} heads cannot share {self.n_kv} KV heads")
        if self.head_dim % 2 != 0 or self.head_dim > MAX_HEAD_DIM:
            raise UnsupportedModelError(f"{f.where}: head_dim {self.head_dim} (even, at most {MAX_HEAD_DIM})")


def layer_map(c: DecoderConfig, qkv_bias: bool = False, o_bias: bool = False) -> WeightMap:
    """A layer's matrices under its prefix, in load order: q/k/v fused (with their biases when
    qkv_bias), o (with its bias when o_bias), gate/up fused, down."""
    D, H, KV, hd, FF = c.hidden, c.n_head, c.n_kv, c.head_dim, c.inter
    qkv = [f"self_attn.{p}_proj" for p in "qkv"]
    return {
        "qkv": fused(
            [p + ".weight" for p in qkv],
            [H * hd, KV * hd, KV * hd],
            D,
            biases=[p + ".bias" for p in qkv] if qkv_bias else None,
        ),
        "o": linear(
            "self_attn.o_proj.weight", D, H * hd, "self_attn.o_proj.bias" if o_bias else None, role="attn_out"
        ),
        "gate_up": fused(["mlp.gate_proj.weight", "mlp.up_proj.weight"], [FF, FF], D),
        "down": linear("mlp.down_proj.weight", D, FF),
    }


class DecoderLayer:
    window: int  # 0: full attention
    cap: int  # KV positions: a ring of window + prefill chunk on sliding layers, else the context
    qkv: Linear  # (H*hd + 2*KV*hd, D): q | k | v rows fused (+ their biases where the model has them)
    o: Linear  # (D, H*hd) (+ bias where the model has one)
    gate_up: Linear  # (2I, D): gate | up rows fused
    down: Linear  # (D, I)
    norms: dict[str, Buf]  # by the keys of the architecture's norm map
    kv: KVCache  # (slots, KV, cap, hd) each

    @property
    def sliding(self) -> bool:
        return self.window > 0


class Decoder(Transformer):
    layers: list[DecoderLayer]
    embed_table: Linear  # (V, D)
    embed: Embedding
    final_norm: Buf  # (D)
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
    act: Buf  # (I) the gated activation's output

    def load_decoder(
        self,
        c: DecoderConfig,
        ckpt: Checkpoint,
        opts: LoadOptions,
        layer: WeightMap,
        norms: WeightMap,
        windows: list[int],
        *,
        prefix: str = "model.",
        head: str = "lm_head.weight",
        load_head: bool,
        allowed: tuple[str, ...] = (),
        skipped: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """The weights under prefix (embed_tokens, layers.N. by `layer` and `norms`, norm) and
        each layer's KV cache (windows[i]: its attention window, 0 for full); set_sizes and
        prefill_chunk must come first. head: the lm_head's full name, read when load_head (else
        the embedding is the head); allowed: names a layer may carry that are never read;
        skipped: tensors never read. Any other tensor is refused."""
        D = c.hidden
        plan = opts.plan
        arena = WeightArena()  # every Q8_0 matrix in huge-page slabs, in load order
        names = set(ckpt.names())
        top: WeightMap = {"embed_table": linear("embed_tokens.weight", c.vocab, D, role="embed")}
        heads: WeightMap = {"lm_head": linear(head, c.vocab, D, role="lm_head")}
        final: WeightMap = {"final_norm": vec("norm.weight", D)}
        load_into(self, top, ckpt, prefix, plan=plan, arena=arena)
        self.lm_head = self.embed_table
        if load_head:
            load_into(self, heads, ckpt, "", plan=plan, arena=arena)
        self.embed = Embedding(self.embed_table)
        self.layers = []
        known = checkpoint_names(top, prefix) | checkpoint_names(heads) | checkpoint_names(final, prefix)
        for i in range(c.n_layer):
            n = f"{prefix}layers.{i}."
            L = DecoderLayer()
            L.window = windows[i]
            # A ring must still hold the window behind the first query of a prefill chunk.
            L.cap = min(self.ctx, L.window + self.prefill_chunk) if L.window else self.ctx
            load_into(L, layer, ckpt, n, plan=plan, arena=arena)
            L.norms = {key: Buf.of(w) for key, w in load_map(norms, ckpt, n, plan=plan, arena=arena).items()}
            L.kv = KVCache(c.n_kv, L.cap, c.head_dim, self.slots, f"layer {i}")
            self.layers.append(L)
            known |= checkpoint_names(layer, n) | checkpoint_names(norms, n) | {n + s for s in allowed}
        self.final_norm = Buf.of(load_map(final, ckpt, prefix, plan=plan, arena=arena)["final_norm"])
        self.refuse_unknown(ckpt.source, names - set(skipped), known)
        self.n_matrices = 4 * c.n_layer + (2 if self.lm_head is not self.embed_table else 1)
        self.n_projections = 7 * c.n_layer + 1  # q, k, v, o, gate, up, down; lm_head
        self.fusions = {"qkv": c.n_layer, "gate+up": c.n_layer}

    def alloc_activations(self, c: DecoderConfig) -> None:
        """The activation buffers forward() runs through (build_plan comes after)."""
        qd, kd = c.n_head * c.head_dim, c.n_kv * c.head_dim
        self.x, self.h, self.tmp = (self.buf(c.hidden) for _ in range(3))
        self.qkv = self.buf(qd + 2 * kd)
        self.q, self.att = self.buf(qd), self.buf(qd)
        self.k, self.v = self.buf(kd), self.buf(kd)
        self.gu = self.buf(2 * c.inter)
        self.act = self.buf(c.inter)

    def ring(self) -> tuple[int, int]:
        # Every sliding layer has the same ring (one window per config): window + prefill_chunk
        # positions, unless the whole context fits, when it is no ring at all.
        rings = {(L.cap, L.window) for L in self.layers if L.sliding and L.cap < self.ctx}
        return min(rings, default=(0, 0))

    def layer_weights(self) -> list[tuple[list[Linear], list[Linear]]]:
        return [([L.qkv, L.o], [L.gate_up, L.down]) for L in self.layers]

    def layer_kv(self) -> list[tuple[int, int]]:
        return [(L.kv.row_bytes, L.window) for L in self.layers]

    def gated_mlp(self, ops: Plan, L: DecoderLayer, glu: Callable[[Buf, int, int, Buf], None]) -> None:
        """The feed-forward core, normed input h to output tmp: fused gate|up -> glu (the
        architecture's gated activation, ops.swiglu_rows or ops.geglu_rows) -> down."""
        ops.matmul(L.gate_up, self.h, self.gu)
        glu(self.gu, 1, self.act.width, self.act)
        ops.matmul(L.down, self.act, self.tmp)
