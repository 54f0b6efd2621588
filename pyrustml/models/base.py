"""What every architecture provides to the generation loop (pyrustml.model)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..engine._ffi import ffi, lib
from ..engine.linear import Linear
from ..engine.plan import DecodePlan, Ops, RowOps
from ..engine.profiler import Profiler
from ..errors import ModelFormatError, NumericalError, OutOfMemoryError

PREFILL_CHUNK = 256  # prompt rows per batched pass: bounds the activation buffers


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
    """A decoder-only model with its buffers and KV cache allocated once.

    forward_chunk(ids, pos0) runs len(ids) <= prefill_chunk tokens at positions pos0.. through
    every layer (writing the KV cache) and leaves the final-normed hidden states in `final`
    (rows 0 .. len(ids) - 1). The lm_head methods then project the last row, or all rows.
    A single token (a decode step) runs the model's DecodePlan: the ops of forward() recorded at
    load, executed by libq8 in one call."""

    model_type: str
    prefill_chunk: int  # rows per batched pass (<= PREFILL_CHUNK, the buffers' height)
    vocab_size: int
    hidden_size: int
    n_layers: int
    max_positions: int
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

    plan: DecodePlan  # the ops of forward() for one token, recorded at load
    pos_buf: np.ndarray  # (PREFILL_CHUNK,) int64: the positions of a chunk's rows
    pos_ptr: Any

    def forward_chunk(self, ids: list[int], pos0: int) -> None:
        """Run ids (at most prefill_chunk of them) at positions pos0.. through every layer."""
        pr = self.prof
        if len(ids) == 1:
            marks = self.plan.run(ids[0], pos0, pr is not None)
            if pr is not None:
                pr.lap_marks(marks)
        else:
            self.forward(RowOps(ids, pos0, self.pos_buf, self.pos_ptr, pr))

    @abstractmethod
    def forward(self, ops: Ops) -> None:
        """The forward pass of ops.t rows, issued op by op (see pyrustml.engine.plan), with the
        profiler marks after the embedding, each layer's attention and feed-forward blocks, and
        the final norm."""

    @staticmethod
    def split_columns(src: np.ndarray, t: int, parts: list[np.ndarray]) -> None:
        """Prefill: copy consecutive column ranges of fused rows (q | k | v) into contiguous
        (t, width) buffers, the layout the cache write and attention take."""
        c = 0
        for dst in parts:
            w = int(dst.shape[1])
            np.copyto(dst[:t], src[:t, c : c + w])
            c += w

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

    def resume_slack(self) -> int:
        """How many cached positions past a kept prefix may be overwritten before a ring cache
        loses part of the window the first new query needs (full caches: no limit)."""
        return 1 << 62

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

    def _alloc_head(self) -> None:
        """The buffers every architecture shares, then the decode plan (the model's own
        buffers and weights must exist by now: the plan points at them)."""
        self.prof = None
        self.pos_buf = np.zeros(PREFILL_CHUNK, dtype=np.int64)
        self.pos_ptr = ffi.from_buffer("int64_t[]", self.pos_buf)
        self.final = np.zeros((PREFILL_CHUNK, self.hidden_size), dtype=np.float32)
        self.final_ptr = ffi.from_buffer("float[]", self.final)
        self.logits_buf = np.zeros(self.vocab_size, dtype=np.float32)
        self.logits_ptr = ffi.from_buffer("float[]", self.logits_buf)
        self._argmax_idx = ffi.new("int64_t *")
        self._argmax_val = ffi.new("float *")
        plan = DecodePlan()
        self.forward(plan)
        self.plan = plan.finish()

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
        if rc != 0:
            raise RuntimeError(f"libq8 lm_head failed ({rc})")
        if self.final_softcap > 0.0:
            lib.q8_softcap(self.logits_ptr, self.final_softcap, self.vocab_size, self.logits_ptr)
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
        if rc != 0:
            raise RuntimeError(f"libq8 lm_head argmax failed ({rc})")
        v = float(val[0])
        if v != v or v in (float("inf"), float("-inf")):
            raise NumericalError(f"the logits hold {v} (NaN/Inf) at the greedy step")
        return int(idx[0])

    def _project_rows(self, t: int) -> np.ndarray:
        """lm_head over rows 0 .. t-1 of `final` in one batched pass (no softcap): (t, vocab)."""
        out = np.empty((t, self.vocab_size), dtype=np.float32)
        self.lm_head.gemm(self.final_ptr, t, ffi.from_buffer("float[]", out))
        return out

    def argmax_rows(self, t: int) -> list[int]:
        """Greedy token of each of rows 0 .. t-1 of `final`, from one batched lm_head pass (the
        weights stream once). Softcap is skipped, as in argmax_row: it is monotonic, and
        rounding after it could tie what the raw logits order; ties go to the lowest index."""
        out = self._project_rows(t)
        if not bool(np.isfinite(out).all()):
            raise NumericalError("the logits hold NaN or Inf at the greedy step")
        return [int(i) for i in np.argmax(out, axis=1)]

    def logits_rows(self, t: int) -> np.ndarray:
        """Logits of rows 0 .. t-1 of `final` as a new (t, vocab) array."""
        out = self._project_rows(t)
        if self.final_softcap > 0.0:
            p = ffi.from_buffer("float[]", out)
            lib.q8_softcap(p, self.final_softcap, t * self.vocab_size, p)
        return out
