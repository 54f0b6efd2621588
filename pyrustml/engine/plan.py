"""How a forward pass is executed: one description, one executor.

Each model writes its forward pass once, against `Plan` (model.forward(ops)), with per-row sizes.
The plan records those ops into a q8_op array when the model is built; q8_plan_run then executes
the whole pass in one libq8 call for any number of rows: one decode step of several sequences,
one prefill chunk of one sequence, or a mix (q8.h, "plans"). Row j of a run is a token of the
sequence in KV-cache slot slots[j] at position pos[j]; every op computes a row exactly as it
would alone, so a token's bits never depend on what else shares its step.

The protocol is enforced: forward() may only issue Plan calls. Every operand is a `Buf` (a
buffer the model allocated once, or a view of one) or a weight the engine owns, so a forward
that computes anything itself (numpy, a branch on the row count) has nothing to do it with,
and `Plan.finish` refuses a forward that issued no ops or left its marks out of order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KernelArgumentError
from ._ffi import ffi, lib
from .kernels import check
from .kv_cache import KVCache
from .linear import Embedding, Linear


class Buf:
    """A float32 activation buffer of `rows` rows x `width`, or a column range of one. A plan
    keeps every Buf it was given, so nothing it points at is freed before the plan."""

    array: np.ndarray  # the whole (rows, width) buffer
    ptr: Any  # float * to element `offset` of row 0
    width: int  # floats per row of the underlying buffer

    def __init__(self, array: np.ndarray, ptr: Any) -> None:
        self.array = array
        self.ptr = ptr
        self.width = int(array.shape[1])

    @staticmethod
    def zeros(rows: int, width: int) -> Buf:
        a = np.zeros((rows, width), dtype=np.float32)
        return Buf(a, ffi.from_buffer("float[]", a))

    @staticmethod
    def of(array: np.ndarray) -> Buf:
        """A read-only operand the model owns (a norm weight, a position table)."""
        a = array if array.ndim == 2 else array.reshape(1, -1)
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise KernelArgumentError("plan operands must be C-contiguous float32")
        return Buf(a, ffi.from_buffer("float[]", a))


_Op = tuple[int, list[Any], Any, list[int], list[float]]
_kinds: dict[str, int] = {}


def op_kind(name: str) -> int:
    """The libq8 kind of the plan op `name` (libq8/src/plan.c lists them, with their operands)."""
    kind = _kinds.get(name)
    if kind is None:
        kind = int(lib.q8_op_kind(name.encode()))
        if kind <= 0:
            raise KernelArgumentError(f"libq8 has no plan op {name!r}")
        _kinds[name] = kind
    return kind


class Plan:
    """The ops of a forward pass, in the order the model issues them, with per-row sizes.
    Recorded once at load; finish() freezes them into a q8_op array that run() executes for t
    rows. Adding an op: its function and its line in libq8/src/plan.c's table, and one method
    here naming it. The plan keeps every operand it was given alive."""

    n_marks: int
    max_rows: int  # the height of the buffers the operands point into
    _ops: list[_Op]
    _keep: list[Any]
    _marks_seen: list[str]
    _arr: Any
    _marks: Any

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.n_marks = 0
        self._ops = []
        self._keep = []
        self._marks_seen = []
        self._arr = ffi.NULL
        self._marks = ffi.NULL

    def _buf(self, b: object, what: str) -> Any:
        if not isinstance(b, Buf):
            raise KernelArgumentError(
                f"forward() passed {type(b).__name__} as {what}: a plan operand must be a Buf "
                "(forward may only issue Plan calls on the model's buffers)"
            )
        self._keep.append(b)
        return b.ptr

    def _add(self, name: str, ptrs: list[Any], y: Any, ints: list[int], floats: list[float]) -> None:
        self._ops.append((op_kind(name), ptrs, y, ints, floats))

    def embed(self, emb: Embedding, y: Buf) -> None:
        table = emb.table
        kind = "embed_q4" if table.q4 else "embed_q8" if table.quantized else "embed_f32"
        self._keep.append(table)
        self._add(kind, [table.w_ptr], self._buf(y, "y"), [table.n, table.k], [])

    def add_pos_row(self, table: Buf, rows: int, n: int, x: Buf, y: Buf) -> None:
        self._add(
            "add_row",
            [self._buf(table, "table"), self._buf(x, "x")],
            self._buf(y, "y"),
            [rows, n],
            [],
        )

    def scale(self, x: Buf, s: float, n: int, y: Buf) -> None:
        self._add("scale", [self._buf(x, "x")], self._buf(y, "y"), [n], [s])

    def layernorm(self, x: Buf, gamma: Buf, beta: Buf, rows: int, n: int, eps: float, y: Buf) -> None:
        ptrs = [self._buf(x, "x"), self._buf(gamma, "gamma"), self._buf(beta, "beta")]
        self._add("layernorm", ptrs, self._buf(y, "y"), [rows, n], [eps])

    def rmsnorm(self, x: Buf, w: Buf, rows: int, n: int, eps: float, offset: float, y: Buf) -> None:
        self._add(
            "rmsnorm",
            [self._buf(x, "x"), self._buf(w, "w")],
            self._buf(y, "y"),
            [rows, n],
            [eps, offset],
        )

    def matmul(self, m: Linear, x: Buf, y: Buf) -> None:
        kind = "gemv_q4" if m.q4 else "gemv_q8" if m.quantized else "gemv_f32"
        self._keep.append(m)
        self._add(kind, [m.w_ptr, self._buf(x, "x"), m.b_ptr], self._buf(y, "y"), [m.n, m.k], [])

    def split(self, src: Buf, parts: list[Buf]) -> None:
        c = 0
        p = self._buf(src, "src")
        for dst in parts:
            w = dst.width
            self._add("copy_cols", [p], self._buf(dst, "part"), [src.width, c, w], [])
            c += w
        if c != src.width:
            raise KernelArgumentError(f"split: the parts' widths add up to {c}, not the source's {src.width}")

    def rope(self, x: Buf, heads: int, head_dim: int, theta: float) -> None:
        self._add("rope", [], self._buf(x, "x"), [heads, head_dim], [theta])

    def kv_write(self, k: Buf, v: Buf, cache: KVCache) -> None:
        c = cache
        self._keep.append(cache)
        ptrs = [self._buf(k, "k"), self._buf(v, "v"), c.k_ptr, c.v_ptr]
        self._add("kv_write", ptrs, ffi.NULL, [c.n_kv, c.cap, c.head_dim, c.slots], [])

    def attention(
        self, q: Buf, cache: KVCache, heads: int, window: int, scale: float, softcap: float, y: Buf
    ) -> None:
        c = cache
        self._keep.append(cache)
        ints = [heads, c.n_kv, c.cap, c.head_dim, window, c.slots]
        self._add(
            "attention",
            [self._buf(q, "q"), c.k_ptr, c.v_ptr],
            self._buf(y, "y"),
            ints,
            [scale, softcap],
        )

    def add(self, a: Buf, b: Buf, n: int, y: Buf) -> None:
        self._add("add", [self._buf(a, "a"), self._buf(b, "b")], self._buf(y, "y"), [n], [])

    def gelu(self, x: Buf, n: int, y: Buf) -> None:
        self._add("gelu", [self._buf(x, "x")], self._buf(y, "y"), [n], [])

    def geglu_rows(self, gate_up: Buf, rows: int, n: int, y: Buf) -> None:
        self._add("geglu_rows", [self._buf(gate_up, "gate_up")], self._buf(y, "y"), [rows, n], [])

    def swiglu_rows(self, gate_up: Buf, rows: int, n: int, y: Buf) -> None:
        """y = silu(gate) * up over fused gate|up rows (2n wide) into rows of n."""
        self._add("swiglu_rows", [self._buf(gate_up, "gate_up")], self._buf(y, "y"), [rows, n], [])

    def rope_freq(self, x: Buf, heads: int, head_dim: int, inv_freq: Buf) -> None:
        """RoPE in place with a table of head_dim / 2 frequencies (scaled variants: models/rope.py)."""
        if inv_freq.array.size != head_dim // 2:
            raise KernelArgumentError(f"rope_freq: {inv_freq.array.size} frequencies for head_dim {head_dim}")
        self._add("rope_freq", [self._buf(inv_freq, "inv_freq")], self._buf(x, "x"), [heads, head_dim], [])

    def _mark(self, what: str) -> None:
        self._marks_seen.append(what)
        self._add("mark", [], ffi.NULL, [self.n_marks], [])
        self.n_marks += 1

    # The marks come back in issue order: embedding, attention 0, ffn 0, ..., final norm
    # (Profiler.lap_marks reads them so).
    def mark_embedding(self) -> None:
        self._mark("embedding")

    def mark_attention(self, layer: int) -> None:
        self._mark(f"attention {layer}")

    def mark_ffn(self, layer: int) -> None:
        self._mark(f"ffn {layer}")

    def mark_norm(self) -> None:
        self._mark("norm")

    def finish(self, n_layers: int) -> Plan:
        """Freeze the recorded ops. A forward that left out a component mark (or issued them out
        of order) would misattribute every profiled step: refuse it here, at load."""
        want = ["embedding"]
        for i in range(n_layers):
            want += [f"attention {i}", f"ffn {i}"]
        want.append("norm")
        if self._marks_seen != want:
            raise KernelArgumentError(
                f"forward() issued the marks {self._marks_seen[:6]}..., not {want[:6]}..."
            )
        arr = ffi.new("q8_op[]", len(self._ops))
        for j, (kind, ptrs, y, ints, floats) in enumerate(self._ops):
            op = arr[j]
            op.kind = kind
            for s, p in enumerate(ptrs):
                op.p[s] = p
            op.y = y
            for s, v in enumerate(ints):
                op.i[s] = v
            for s, f in enumerate(floats):
                op.f[s] = f
        self._arr = arr
        self._marks = ffi.new("int64_t[]", max(self.n_marks, 1))
        return self

    @property
    def n_ops(self) -> int:
        return len(self._ops)

    def run(self, t: int, tokens: Any, slots: Any, pos: Any, profiled: bool) -> list[int]:
        """One pass over t rows (int64_t[] cdata of the rows' tokens, slots and positions); with
        profiled, the marks' CLOCK_MONOTONIC times in ns (else [])."""
        if not 0 < t <= self.max_rows:
            raise KernelArgumentError(f"a plan runs 1..{self.max_rows} rows, not {t}")
        marks = self._marks if profiled else ffi.NULL
        check(lib.q8_plan_run(self._arr, len(self._ops), t, tokens, slots, pos, marks, self.n_marks), "plan")
        if not profiled:
            return []
        return [int(self._marks[j]) for j in range(self.n_marks)]
