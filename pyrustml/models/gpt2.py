"""GPT-2 (model_type "gpt2"): pre-norm blocks with LayerNorm, learned positions, fused QKV,
GELU-tanh MLP, lm_head tied to the token embedding.

Checkpoint quirks handled here: HF Conv1D weights are stored [in, out] (transposed while
quantizing); openai-community/gpt2 has no "transformer." prefix and no lm_head; the
attn.bias / attn.masked_bias buffers are causal masks, not weights.
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.kernels import MAX_HEAD_DIM, WeightArena
from ..engine.kv_cache import KVCache
from ..engine.linear import Embedding, Linear
from ..engine.plan import Buf, Plan
from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import MAX_LAYERS, Fields, refuse_unsupported
from ..io.safetensors import Checkpoint
from ..io.weight_map import WeightMap, checkpoint_names, linear, load_into, mat, vec
from ..io.weights import lm_head_is_stored
from .base import PREFILL_CHUNK, LoadOptions, Transformer

# Every config.json key that changes the computation is either read (CONFIG_KEYS_READ) or refused
# unless it holds one of its accepted values (CONFIG_KEYS_REFUSED): never silently ignored.
CONFIG_KEYS_READ = (
    "n_layer", "n_embd", "n_head", "n_positions", "n_ctx", "vocab_size", "n_inner",
    "layer_norm_epsilon", "scale_attn_weights", "activation_function", "tie_word_embeddings",
)  # fmt: skip
CONFIG_KEYS_REFUSED: dict[str, tuple[object, ...]] = {
    "scale_attn_by_inverse_layer_idx": (False,),
    "reorder_and_upcast_attn": (False,),
    "add_cross_attention": (False,),
    "is_encoder_decoder": (False,),
    "rope_scaling": (),  # GPT-2 has learned positions: a RoPE setting means another model
    "rope_parameters": (),
    "use_bidirectional_attention": (False,),
}
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
# per-layer causal-mask buffers that some GPT-2 exports carry: not weights, allowed and not read
CAUSAL_MASKS = ("attn.bias", "attn.masked_bias")
# LayerNorm's epsilon stabilizes a variance: above 1 it would dominate it (and 1e300 is inf in
# float32, which made the model emit one token forever).
MAX_EPS = 1.0


class GPT2Config:
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    vocab_size: int
    n_inner: int
    eps: float
    scale_attn: bool
    tie_word_embeddings: bool

    def __init__(self, f: Fields) -> None:
        refuse_unsupported(f, CONFIG_KEYS_REFUSED)
        self.n_layer = f.int_("n_layer", maximum=MAX_LAYERS)
        self.n_embd = f.int_("n_embd")
        self.n_head = f.int_("n_head")
        self.n_positions = f.int_("n_positions", f.data.get("n_ctx"))
        self.vocab_size = f.int_("vocab_size")
        self.n_inner = f.int_("n_inner") if f.has("n_inner") else 4 * self.n_embd
        self.eps = f.float32_("layer_norm_epsilon", 1e-5, high=MAX_EPS)
        self.scale_attn = f.bool_("scale_attn_weights", True)
        self.tie_word_embeddings = f.bool_("tie_word_embeddings", True)
        act = f.str_("activation_function", "gelu_new")
        if act not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedModelError(f"{f.where}: activation_function {act!r} is not supported")
        if self.n_embd % self.n_head != 0:
            raise ModelFormatError(
                f"{f.where}: n_embd {self.n_embd} is not divisible by n_head {self.n_head}"
            )
        if self.n_embd // self.n_head > MAX_HEAD_DIM:
            raise UnsupportedModelError(
                f"{f.where}: head size {self.n_embd // self.n_head} exceeds {MAX_HEAD_DIM}"
            )


class GPT2Block:
    ln1_w: np.ndarray  # (D,)
    ln1_b: np.ndarray
    attn: Linear  # (3D, D): rows q | k | v
    proj: Linear  # (D, D)
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    fc: Linear  # (I, D)
    fc_proj: Linear  # (D, I)
    kv: KVCache  # (slots, H, ctx, hd) each


class GPT2(Transformer):
    cfg: GPT2Config
    blocks: list[GPT2Block]
    wte: Linear  # (V, D): embedding rows and the tied lm_head
    wpe: np.ndarray  # (P, D)
    lnf_w: np.ndarray
    lnf_b: np.ndarray
    embed: Embedding
    # activations, (PREFILL_CHUNK rows, width) each, allocated once
    x: Buf  # (D) the residual stream
    h: Buf  # (D) normed input of a block
    qkv: Buf  # (3D) fused q | k | v
    q: Buf  # (D)
    k: Buf  # (D)
    v: Buf  # (D)
    att: Buf  # (D) attention output
    tmp: Buf  # (D) a block's output before the residual add
    ff: Buf  # (I) MLP hidden
    wpe_buf: Buf  # the position table (P, D) as a plan operand
    norm_bufs: list[tuple[Buf, Buf, Buf, Buf]]  # per block: ln1 w, b, ln2 w, b
    lnf: tuple[Buf, Buf]

    def __init__(self, f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> None:
        cfg = GPT2Config(f)
        plan = opts.plan
        self.cfg = cfg
        arena = WeightArena()  # every Q8_0 matrix in huge-page slabs, in load order
        self.model_type = "gpt2"
        self.prefill_chunk = PREFILL_CHUNK
        self.set_sizes(cfg.vocab_size, cfg.n_layer, cfg.n_embd, cfg.n_positions, opts)
        self.final_softcap = 0.0
        names = set(ckpt.names())
        pre = "transformer." if "transformer.wte.weight" in names else ""
        D, V, P, F = cfg.n_embd, cfg.vocab_size, cfg.n_positions, cfg.n_inner
        H = cfg.n_head
        hd = D // H
        # The checkpoint's tensors: name, shape, what each becomes. Conv1D weights are [in, out]:
        # transposed=True gives the (out, in) rows we stream.
        top: WeightMap = {"wte": linear("wte.weight", V, D, role="embed"), "wpe": mat("wpe.weight", P, D)}
        # lm_head: read when untied (io.weights.lm_head_is_stored)
        head: WeightMap = {"lm_head": linear("lm_head.weight", V, D, role="lm_head")}
        block: WeightMap = {
            "ln1_w": vec("ln_1.weight", D),
            "ln1_b": vec("ln_1.bias", D),
            "attn": linear("attn.c_attn.weight", 3 * D, D, "attn.c_attn.bias", transposed=True),
            "proj": linear("attn.c_proj.weight", D, D, "attn.c_proj.bias", transposed=True, role="attn_out"),
            "ln2_w": vec("ln_2.weight", D),
            "ln2_b": vec("ln_2.bias", D),
            "fc": linear("mlp.c_fc.weight", F, D, "mlp.c_fc.bias", transposed=True),
            "fc_proj": linear("mlp.c_proj.weight", D, F, "mlp.c_proj.bias", transposed=True),
        }
        final: WeightMap = {"lnf_w": vec("ln_f.weight", D), "lnf_b": vec("ln_f.bias", D)}
        # Token embedding, also the lm_head (tied) unless the checkpoint carries its own.
        load_into(self, top, ckpt, pre, plan=plan, arena=arena)
        self.lm_head = self.wte
        if lm_head_is_stored(cfg.tie_word_embeddings, ckpt, pre + "wte.weight", "lm_head.weight", f.where):
            load_into(self, head, ckpt, "", plan=plan, arena=arena)
        self.embed = Embedding(self.wte)
        self.blocks = []
        known = checkpoint_names(top, pre) | checkpoint_names(head) | checkpoint_names(final, pre)
        for i in range(cfg.n_layer):
            b = GPT2Block()
            load_into(b, block, ckpt, f"{pre}h.{i}.", plan=plan, arena=arena)
            b.kv = KVCache(H, self.ctx, hd, self.slots, f"layer {i}")
            self.blocks.append(b)
            # the causal-mask buffers some exports carry are not weights
            known |= checkpoint_names(block, f"{pre}h.{i}.") | {f"{pre}h.{i}.{s}" for s in CAUSAL_MASKS}
        load_into(self, final, ckpt, pre, plan=plan, arena=arena)
        self.refuse_unknown(ckpt.source, names, known)
        self.n_matrices = 4 * cfg.n_layer + (2 if self.lm_head is not self.wte else 1)
        self.n_projections = 6 * cfg.n_layer + 1  # q, k, v (c_attn), c_proj, c_fc, mlp c_proj; lm_head
        self.fusions = {"qkv": cfg.n_layer}
        self._alloc()

    def _alloc(self) -> None:
        D, F = self.cfg.n_embd, self.cfg.n_inner
        self.x, self.h, self.tmp, self.att = (self.buf(D) for _ in range(4))
        self.qkv = self.buf(3 * D)
        self.q, self.k, self.v = (self.buf(D) for _ in range(3))
        self.ff = self.buf(F)
        self.wpe_buf = Buf.of(self.wpe)
        self.norm_bufs = [
            (Buf.of(b.ln1_w), Buf.of(b.ln1_b), Buf.of(b.ln2_w), Buf.of(b.ln2_b)) for b in self.blocks
        ]
        self.lnf = (Buf.of(self.lnf_w), Buf.of(self.lnf_b))
        self.build_plan()

    def layer_weights(self) -> list[tuple[list[Linear], list[Linear]]]:
        return [([b.attn, b.proj], [b.fc, b.fc_proj]) for b in self.blocks]

    def layer_kv(self) -> list[tuple[int, int]]:
        return [(b.kv.row_bytes, 0) for b in self.blocks]

    def forward(self, ops: Plan) -> None:
        cfg = self.cfg
        D, H = cfg.n_embd, cfg.n_head
        hd = D // H
        scale = 1.0 / math.sqrt(hd) if cfg.scale_attn else 1.0
        x, h, tmp = self.x, self.h, self.tmp
        # Embedding: token row + learned position row.
        ops.embed(self.embed, x)
        ops.add_pos_row(self.wpe_buf, cfg.n_positions, D, x, x)
        ops.mark_embedding()
        for i, (b, (ln1_w, ln1_b, ln2_w, ln2_b)) in enumerate(zip(self.blocks, self.norm_bufs, strict=True)):
            # Attention: LayerNorm -> fused QKV (3D) -> q | k | v -> cache write -> causal
            # attention -> proj -> residual.
            ops.layernorm(x, ln1_w, ln1_b, 1, D, cfg.eps, h)
            ops.matmul(b.attn, h, self.qkv)
            ops.split(self.qkv, [self.q, self.k, self.v])
            ops.kv_write(self.k, self.v, b.kv)
            ops.attention(self.q, b.kv, H, 0, scale, 0.0, self.att)
            ops.matmul(b.proj, self.att, tmp)
            ops.add(x, tmp, D, x)
            ops.mark_attention(i)
            # MLP: LayerNorm -> fc (I) -> GELU tanh -> proj (D) -> residual.
            ops.layernorm(x, ln2_w, ln2_b, 1, D, cfg.eps, h)
            ops.matmul(b.fc, h, self.ff)
            ops.gelu(self.ff, cfg.n_inner, self.ff)
            ops.matmul(b.fc_proj, self.ff, tmp)
            ops.add(x, tmp, D, x)
            ops.mark_ffn(i)
        ops.layernorm(x, self.lnf[0], self.lnf[1], 1, D, cfg.eps, self.final_buf)
        ops.mark_norm()


def build(f: Fields, ckpt: Checkpoint, opts: LoadOptions) -> Transformer:
    return GPT2(f, ckpt, opts)
