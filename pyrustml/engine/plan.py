"""How a forward pass is executed: one description, two executors.

Each model writes its forward pass once, against `Ops` (model.forward(ops, t)). Two executors
take it:
  - RowOps runs every op at once for t >= 1 rows (prefill, prompt-lookup verification), one
    libq8 call per op;
  - DecodePlan records the ops of a single token into a q8_op array at load; q8_plan_run then
    executes a whole decode step in one call (q8.h, "decode plans"). A GPT-2 step is ~130 ops:
    called one by one from Python they cost ~3% of the step in the interpreter and cffi.
Both end in the same libq8 entry points, so a token gives the same bits either way.

Sizes are per token (rows of a norm, elements of an activation); pointers are cdata into buffers
the model owns for its lifetime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ._ffi import ffi, lib
from .kv_cache import KVCache
from .linear import Embedding, Linear
from .profiler import Profiler


def _ok(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"libq8 {what} failed ({rc})")


class Ops(ABC):
    """The ops of a forward pass, in the order the model issues them."""

    t: int  # rows per op: 1 for a decode plan

    @abstractmethod
    def embed(self, emb: Embedding, y: Any) -> None:
        """y = the embedding rows of the tokens (dequantized when the table is Q8_0)."""

    @abstractmethod
    def add_pos_row(self, table: Any, rows: int, n: int, x: Any, y: Any) -> None:
        """y = x + the row of each token's position in a (rows, n) float table."""

    @abstractmethod
    def scale(self, x: Any, s: float, n: int, y: Any) -> None: ...

    @abstractmethod
    def layernorm(self, x: Any, gamma: Any, beta: Any, rows: int, n: int, eps: float, y: Any) -> None: ...

    @abstractmethod
    def rmsnorm(self, x: Any, w: Any, rows: int, n: int, eps: float, offset: float, y: Any) -> None: ...

    @abstractmethod
    def matmul(self, m: Linear, x: Any, y: Any) -> None:
        """y = x W^T (+ bias): a GEMV for one token, a GEMM for several."""

    @abstractmethod
    def rope(self, x: Any, heads: int, head_dim: int, theta: float) -> None: ...

    @abstractmethod
    def kv_write(self, k: Any, v: Any, cache: KVCache) -> None:
        """Store the rows' keys and values (n_kv x head_dim each) at their positions."""

    @abstractmethod
    def attention(
        self, q: Any, cache: KVCache, heads: int, window: int, scale: float, softcap: float, y: Any
    ) -> None: ...

    @abstractmethod
    def add(self, a: Any, b: Any, n: int, y: Any) -> None: ...

    @abstractmethod
    def gelu(self, x: Any, n: int, y: Any) -> None: ...

    @abstractmethod
    def geglu_rows(self, gate_up: Any, rows: int, n: int, y: Any) -> None: ...

    # Component boundaries for the profiler: after the embedding, after each layer's attention
    # and feed-forward blocks, after the final norm.
    @abstractmethod
    def mark_embedding(self) -> None: ...

    @abstractmethod
    def mark_attention(self, layer: int) -> None: ...

    @abstractmethod
    def mark_ffn(self, layer: int) -> None: ...

    @abstractmethod
    def mark_norm(self) -> None: ...


class RowOps(Ops):
    """Runs each op now, over t rows for tokens ids at positions pos0 .. pos0 + t - 1."""

    ids: list[int]
    pos0: int
    pos_ptr: Any  # int64_t[t]: the rows' positions (RoPE)
    prof: Profiler | None

    def __init__(self, ids: list[int], pos0: int, pos_buf: Any, pos_ptr: Any, prof: Profiler | None) -> None:
        self.ids = ids
        self.t = len(ids)
        self.pos0 = pos0
        for j in range(self.t):
            pos_buf[j] = pos0 + j
        self.pos_ptr = pos_ptr
        self.prof = prof

    def embed(self, emb: Embedding, y: Any) -> None:
        for j, token in enumerate(self.ids):
            emb.lookup(token, y + j * emb.dim)

    def add_pos_row(self, table: Any, rows: int, n: int, x: Any, y: Any) -> None:
        if self.pos0 + self.t > rows:
            raise ValueError(f"positions up to {self.pos0 + self.t - 1} outside a table of {rows}")
        for j in range(self.t):
            _ok(lib.q8_add(x + j * n, table + (self.pos0 + j) * n, n, y + j * n), "add")

    def scale(self, x: Any, s: float, n: int, y: Any) -> None:
        _ok(lib.q8_scale(x, s, self.t * n, y), "scale")

    def layernorm(self, x: Any, gamma: Any, beta: Any, rows: int, n: int, eps: float, y: Any) -> None:
        _ok(lib.q8_layernorm(x, gamma, beta, self.t * rows, n, eps, y), "layernorm")

    def rmsnorm(self, x: Any, w: Any, rows: int, n: int, eps: float, offset: float, y: Any) -> None:
        _ok(lib.q8_rmsnorm(x, w, self.t * rows, n, eps, offset, y), "rmsnorm")

    def matmul(self, m: Linear, x: Any, y: Any) -> None:
        m.apply(x, self.t, y)

    def rope(self, x: Any, heads: int, head_dim: int, theta: float) -> None:
        _ok(lib.q8_rope(x, self.t, heads, head_dim, self.pos_ptr, theta), "rope")

    def kv_write(self, k: Any, v: Any, cache: KVCache) -> None:
        c = cache
        _ok(lib.q8_kv_write(k, v, self.t, self.pos0, c.k_ptr, c.v_ptr, c.n_kv, c.cap, c.head_dim), "kv_write")

    def attention(
        self, q: Any, cache: KVCache, heads: int, window: int, scale: float, softcap: float, y: Any
    ) -> None:
        c = cache
        rc = lib.q8_attention(
            q,
            self.t,
            self.pos0,
            c.k_ptr,
            c.v_ptr,
            heads,
            c.n_kv,
            c.cap,
            c.head_dim,
            window,
            scale,
            softcap,
            y,
        )
        if rc != 0:
            last = self.pos0 + self.t - 1
            raise RuntimeError(f"libq8 attention failed ({rc}) at positions {self.pos0}..{last}")

    def add(self, a: Any, b: Any, n: int, y: Any) -> None:
        _ok(lib.q8_add(a, b, self.t * n, y), "add")

    def gelu(self, x: Any, n: int, y: Any) -> None:
        _ok(lib.q8_gelu_tanh(x, self.t * n, y), "gelu")

    def geglu_rows(self, gate_up: Any, rows: int, n: int, y: Any) -> None:
        _ok(lib.q8_geglu_rows(gate_up, self.t * rows, n, y), "geglu")

    def mark_embedding(self) -> None:
        if self.prof is not None:
            self.prof.lap_embedding()

    def mark_attention(self, layer: int) -> None:
        if self.prof is not None:
            self.prof.lap_attention(layer)

    def mark_ffn(self, layer: int) -> None:
        if self.prof is not None:
            self.prof.lap_ffn(layer)

    def mark_norm(self) -> None:
        if self.prof is not None:
            self.prof.lap_norm()


class DecodePlan(Ops):
    """Records the ops of one token (t = 1); finish() freezes them into a q8_op array that
    run() executes for a token id at a position. The plan keeps every cdata it was given, so
    nothing it points at can be freed before it is."""

    n_marks: int
    _ops: list[tuple[int, list[Any], Any, list[int], list[float]]]
    _keep: list[Any]
    _arr: Any
    _marks: Any

    def __init__(self) -> None:
        self.t = 1
        self.n_marks = 0
        self._ops = []
        self._keep = []
        self._arr = ffi.NULL
        self._marks = ffi.NULL

    def _add(self, kind: int, ptrs: list[Any], y: Any, ints: list[int], floats: list[float]) -> None:
        self._ops.append((kind, ptrs, y, ints, floats))
        self._keep.extend(ptrs)
        self._keep.append(y)

    def embed(self, emb: Embedding, y: Any) -> None:
        table = emb.table
        kind = (
            lib.Q8_OP_EMBED_Q4 if table.q4 else lib.Q8_OP_EMBED_Q8 if table.quantized else lib.Q8_OP_EMBED_F32
        )
        self._add(kind, [table.w_ptr], y, [table.n, table.k], [])

    def add_pos_row(self, table: Any, rows: int, n: int, x: Any, y: Any) -> None:
        self._add(lib.Q8_OP_ADD_ROW, [table, x], y, [rows, n], [])

    def scale(self, x: Any, s: float, n: int, y: Any) -> None:
        self._add(lib.Q8_OP_SCALE, [x], y, [n], [s])

    def layernorm(self, x: Any, gamma: Any, beta: Any, rows: int, n: int, eps: float, y: Any) -> None:
        self._add(lib.Q8_OP_LAYERNORM, [x, gamma, beta], y, [rows, n], [eps])

    def rmsnorm(self, x: Any, w: Any, rows: int, n: int, eps: float, offset: float, y: Any) -> None:
        self._add(lib.Q8_OP_RMSNORM, [x, w], y, [rows, n], [eps, offset])

    def matmul(self, m: Linear, x: Any, y: Any) -> None:
        kind = lib.Q8_OP_GEMV_Q4 if m.q4 else lib.Q8_OP_GEMV_Q8 if m.quantized else lib.Q8_OP_GEMV_F32
        self._add(kind, [m.w_ptr, x, m.b_ptr], y, [m.n, m.k], [])

    def rope(self, x: Any, heads: int, head_dim: int, theta: float) -> None:
        self._add(lib.Q8_OP_ROPE, [], x, [heads, head_dim], [theta])

    def kv_write(self, k: Any, v: Any, cache: KVCache) -> None:
        c = cache
        self._add(lib.Q8_OP_KV_WRITE, [k, v, c.k_ptr, c.v_ptr], ffi.NULL, [c.n_kv, c.cap, c.head_dim], [])
        self._keep.append(cache)

    def attention(
        self, q: Any, cache: KVCache, heads: int, window: int, scale: float, softcap: float, y: Any
    ) -> None:
        c = cache
        ints = [heads, c.n_kv, c.cap, c.head_dim, window]
        self._add(lib.Q8_OP_ATTENTION, [q, c.k_ptr, c.v_ptr], y, ints, [scale, softcap])
        self._keep.append(cache)

    def add(self, a: Any, b: Any, n: int, y: Any) -> None:
        self._add(lib.Q8_OP_ADD, [a, b], y, [n], [])

    def gelu(self, x: Any, n: int, y: Any) -> None:
        self._add(lib.Q8_OP_GELU, [x], y, [n], [])

    def geglu_rows(self, gate_up: Any, rows: int, n: int, y: Any) -> None:
        self._add(lib.Q8_OP_GEGLU_ROWS, [gate_up], y, [rows, n], [])

    def _mark(self) -> None:
        self._add(lib.Q8_OP_MARK, [], ffi.NULL, [self.n_marks], [])
        self.n_marks += 1

    # The marks come back in issue order: embedding, attention 0, ffn 0, ..., final norm
    # (Profiler.lap_marks reads them so).
    def mark_embedding(self) -> None:
        self._mark()

    def mark_attention(self, layer: int) -> None:
        self._mark()

    def mark_ffn(self, layer: int) -> None:
        self._mark()

    def mark_norm(self) -> None:
        self._mark()

    def finish(self) -> DecodePlan:
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

    def run(self, token: int, pos: int, profiled: bool) -> list[int]:
        """One decode step; with profiled, the marks' CLOCK_MONOTONIC times in ns (else [])."""
        marks = self._marks if profiled else ffi.NULL
        rc = lib.q8_plan_run(self._arr, len(self._ops), token, pos, marks, self.n_marks)
        if rc != 0:
            raise RuntimeError(f"libq8 decode plan failed ({rc}) at position {pos}")
        if not profiled:
            return []
        return [int(self._marks[j]) for j in range(self.n_marks)]
