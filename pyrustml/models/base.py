"""What every architecture provides to the generation loop (pyrustml.model)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..engine._ffi import ffi, lib
from ..engine.kernels import check, check_greedy
from ..engine.linear import Linear
from ..engine.plan import Buf, Plan
from ..engine.profiler import Profiler
from ..errors import KernelArgumentError, ModelFormatError, OutOfMemoryError
from ..io.weights import QuantPlan

PREFILL_CHUNK = 256  # rows per plan run (a prefill chunk, or a batched step): the buffers' height
DEFAULT_CTX = 4096  # context per sequence when load() is not given one


class LoadOptions:
    """How to build a model: weight formats, context per sequence and KV-cache slots."""

    plan: QuantPlan  # the weight format of each role
    quant: str  # its name: "q8_0", "q4_0", "q4_0-pure" or "f32"
    ctx: int | None  # positions per sequence (None: min(the model's max, DEFAULT_CTX))
    slots: int  # sequences whose KV caches exist at once

    def __init__(self, quant: str | QuantPlan = "q8_0", ctx: int | None = None, slots: int = 1) -> None:
        self.plan = quant if isinstance(quant, QuantPlan) else QuantPlan(quant)
        self.quant = self.plan.name
        self.ctx = ctx
        self.slots = slots

    @property
    def quantize(self) -> bool:
        return self.quant != "f32"

    def context(self, max_positions: int) -> int:
        """The positions each sequence's cache holds: ctx, never past the model's own limit."""
        return min(max_positions, DEFAULT_CTX if self.ctx is None else self.ctx)


class StreamBytes:
    """Bytes a decode step reads, by component; attention includes its KV cache reads."""

    embedding: int
    attention: list[int]  # per layer
    ffn: list[int]  # per layer
    lm_head: int
    kv_cache: int  # the KV cache reads, already inside attention

    def __init__(self) -> None:
        self.kv_cache = 0
        self.embedding = 0
        self.attention = []
        self.ffn = []
        self.lm_head = 0

    @property
    def total(self) -> int:
        return self.embedding + sum(self.attention) + sum(self.ffn) + self.lm_head


class Transformer(ABC):
    """A decoder-only model with its buffers and KV caches (`slots` sequences) allocated once.

    run(t) passes t rows through every layer in one libq8 call (the plan of forward(), recorded
    at load): row j is token tokens[j] of the sequence in slot slots[j] at position pos[j], as
    written into the row arrays. It writes each row's keys and values into its slot's cache and
    leaves the final-normed hidden states in `final` rows 0 .. t - 1; the lm_head methods then
    project rows of it. A row's bits do not depend on the other rows of the run."""

    model_type: str
    prefill_chunk: int  # rows of one sequence per pass (<= PREFILL_CHUNK; rings need it bounded)
    vocab_size: int
    hidden_size: int
    n_layers: int
    max_positions: int  # the architecture's limit
    ctx: int  # positions each sequence's cache holds
    slots: int  # sequences with a KV cache
    row_tokens: np.ndarray  # (PREFILL_CHUNK,) int64: a run's rows, written by the caller
    row_slots: np.ndarray
    row_pos: np.ndarray
    _row_ptrs: tuple[Any, Any, Any]
    lm_head: Linear
    final: np.ndarray  # (PREFILL_CHUNK, hidden) float32
    final_ptr: Any
    logits_buf: np.ndarray  # (vocab,) float32
    logits_ptr: Any
    _argmax_idx: Any  # int64_t * and float * out-parameters of the fused argmax, made once
    _argmax_val: Any
    final_softcap: float  # 0: none
    n_matrices: int  # Q8_0 (or f32) weight matrices, for the load summary
    n_projections: int  # the architecture's projections (q, k, v, ... counted apart) + lm_head
    fusions: dict[str, int]
    prof: Profiler | None  # set only while profiling: forward_chunk laps its components

    plan: Plan  # the ops of forward(), recorded at load
    final_buf: Buf

    def run(self, t: int) -> None:
        """Pass the t rows described by row_tokens/row_slots/row_pos through every layer."""
        pr = self.prof
        tok, slot, pos = self._row_ptrs
        marks = self.plan.run(t, tok, slot, pos, pr is not None)
        if pr is not None:
            pr.lap_marks(marks)

    def forward_chunk(self, ids: list[int], pos0: int, slot: int = 0) -> None:
        """One sequence's tokens ids (at most prefill_chunk) at positions pos0.. in `slot`: the
        single-sequence path of tools and tests (the engine fills the row arrays itself)."""
        t = len(ids)
        if not 0 < t <= self.prefill_chunk:
            raise KernelArgumentError(f"a chunk holds 1..{self.prefill_chunk} tokens, not {t}")
        self.row_tokens[:t] = ids
        self.row_slots[:t] = slot
        self.row_pos[:t] = np.arange(pos0, pos0 + t)
        self.run(t)

    @abstractmethod
    def forward(self, ops: Plan) -> None:
        """The forward pass, issued op by op with per-row sizes (see pyrustml.engine.plan), with
        the profiler marks after the embedding, each layer's attention and feed-forward blocks,
        and the final norm. Only Plan calls: it is recorded once, at load."""

    @abstractmethod
    def layer_weights(self) -> list[tuple[list[Linear], list[Linear]]]:
        """Each layer's weight matrices: (attention block's, feed-forward block's)."""

    @abstractmethod
    def layer_kv(self) -> list[tuple[int, int]]:
        """Each layer's KV cache: (bytes of keys + values per cached position, window or 0)."""

    def decode_bytes(self, pos: int) -> StreamBytes:
        """Bytes one decode step at position pos streams from memory, by component (weights and
        the KV cache it reads; activations stay in cache and are not counted)."""
        sb = StreamBytes()
        h = self.lm_head
        sb.embedding = h.nbytes // h.n if h.n else 0  # one row of the table
        for (attn, ffn), (row, window) in zip(self.layer_weights(), self.layer_kv(), strict=True):
            seen = pos + 1 if window == 0 else min(pos + 1, window)
            sb.attention.append(sum(m.nbytes for m in attn) + seen * row)
            sb.kv_cache += seen * row
            sb.ffn.append(sum(m.nbytes for m in ffn))
        sb.lm_head = h.nbytes
        return sb

    def set_sizes(
        self, vocab: int, n_layers: int, hidden: int, max_positions: int, opts: LoadOptions
    ) -> None:
        """The sizes every architecture gives, and the caches opts ask for: ctx positions (within
        max_positions) for each of opts.slots sequences."""
        self.vocab_size = vocab
        self.n_layers = n_layers
        self.hidden_size = hidden
        self.max_positions = max_positions
        self.ctx = opts.context(max_positions)
        self.slots = opts.slots

    def ring(self) -> tuple[int, int]:
        """(slots, window) of the ring caches of sliding-window layers, or (0, 0) when every
        layer keeps all positions. Position p lives at ring index p % slots."""
        return 0, 0

    def refuse_unknown(self, source: str, names: set[str], known: set[str]) -> None:
        """A checkpoint tensor the architecture does not use means a different model (or a
        variant we do not implement): refuse it rather than compute something else."""
        extra = sorted(names - known)
        if extra:
            raise ModelFormatError(
                f"{source}: checkpoint has tensors {self.model_type} does not use: {extra[:5]}"
            )

    @staticmethod
    def zeros(shape: tuple[int, ...], what: str) -> np.ndarray:
        """A float32 buffer of the model (activations); a size the machine cannot hold is an
        OutOfMemoryError that says what it was for."""
        try:
            return np.zeros(shape, dtype=np.float32)
        except (MemoryError, ValueError) as exc:
            raise OutOfMemoryError(
                f"cannot allocate {4 * math.prod(shape) / 2**30:.1f} GiB for {what}"
            ) from exc

    @staticmethod
    def buf(width: int) -> Buf:
        """An activation buffer of PREFILL_CHUNK rows (a plan operand)."""
        return Buf.zeros(PREFILL_CHUNK, width)

    def build_plan(self) -> None:
        """The buffers every architecture shares, then the plan: forward() recorded once. Call
        it last in the constructor: the plan points at the model's weights, buffers and
        caches, which must all exist by then."""
        self.prof = None
        self.row_tokens = np.zeros(PREFILL_CHUNK, dtype=np.int64)
        self.row_slots = np.zeros(PREFILL_CHUNK, dtype=np.int64)
        self.row_pos = np.zeros(PREFILL_CHUNK, dtype=np.int64)
        self._row_ptrs = (
            ffi.from_buffer("int64_t[]", self.row_tokens),
            ffi.from_buffer("int64_t[]", self.row_slots),
            ffi.from_buffer("int64_t[]", self.row_pos),
        )
        self.final_buf = self.buf(self.hidden_size)
        self.final = self.final_buf.array
        self.final_ptr = self.final_buf.ptr
        self.logits_buf = np.zeros(self.vocab_size, dtype=np.float32)
        self.logits_ptr = ffi.from_buffer("float[]", self.logits_buf)
        self._argmax_idx = ffi.new("int64_t *")
        self._argmax_val = ffi.new("float *")
        plan = Plan(PREFILL_CHUNK)
        self.forward(plan)
        self.plan = plan.finish(self.n_layers)

    def logits_row(self, row: int) -> np.ndarray:
        """Logits of one row of `final`, in the model's reused buffer (copy to keep)."""
        x = self.final_ptr + row * self.hidden_size
        h = self.lm_head
        if h.q4:
            rc = lib.q8_q4_lmhead(h.w_ptr, h.n, h.k, x, self.logits_ptr)
        elif h.quantized:
            rc = lib.q8_lmhead(h.w_ptr, h.n, h.k, x, self.logits_ptr)
        else:
            rc = lib.q8_lmhead_f32(h.w_ptr, h.n, h.k, x, self.logits_ptr)
        check(rc, "lm_head")
        self.softcap(self.logits_buf)
        return self.logits_buf

    def argmax_row(self, row: int) -> int:
        """Greedy token of one row: the logits never leave C (softcap is monotonic)."""
        x = self.final_ptr + row * self.hidden_size
        h = self.lm_head
        idx, val = self._argmax_idx, self._argmax_val
        if h.q4:
            rc = lib.q8_q4_lmhead_argmax(h.w_ptr, h.n, h.k, x, idx, val)
        elif h.quantized:
            rc = lib.q8_lmhead_argmax(h.w_ptr, h.n, h.k, x, idx, val)
        else:
            rc = lib.q8_lmhead_argmax_f32(h.w_ptr, h.n, h.k, x, idx, val)
        check(rc, "lm_head argmax")
        check_greedy(float(val[0]))
        return int(idx[0])

    def project(self, rows: list[int]) -> np.ndarray:
        """Raw logits (no softcap) of the given rows of `final`, (len(rows), vocab), from one
        batched lm_head pass: the weights stream once for every sequence of a step. Each row's
        bits equal the single-row lm_head's."""
        h = len(rows)
        src = self.final if rows == list(range(h)) else self.final[rows]
        src = np.ascontiguousarray(src[:h])
        out = np.empty((h, self.vocab_size), dtype=np.float32)
        self.lm_head.gemm(ffi.from_buffer("float[]", src), h, ffi.from_buffer("float[]", out))
        return out

    def softcap(self, logits: np.ndarray) -> None:
        """The final logit softcap, in place, on a C-contiguous float32 array (none: no-op)."""
        if self.final_softcap > 0.0:
            p = ffi.from_buffer("float[]", logits)
            check(lib.q8_softcap(p, self.final_softcap, int(logits.size), p), "softcap")
