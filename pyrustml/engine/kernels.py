"""Typed, checked wrappers over libq8.

Every wrapper checks dtype, dimensionality, C-contiguity, alignment and sizes before it takes a
pointer, and raises KernelTypeError / KernelArgumentError (a TypeError / ValueError) naming the
argument, so a wrong call never reaches C. These wrappers allocate their outputs and are meant
for tests, tools and one-off use; the model's hot path takes pointers of preallocated buffers
once instead (a pointer per call costs about a microsecond).

Numerical contract (see libq8/src/kernels_ref.c): results are bitwise identical for every
kernel path and thread count. Non-finite activations make every output of a Q8_0 product NaN
(a block holding NaN or Inf gets a NaN scale); quantize_q8_0 refuses non-finite weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ..errors import KernelArgumentError, KernelTypeError, LibraryError, NumericalError, OutOfMemoryError
from ._ffi import ffi, lib

QK8_0: Final = 32
BLOCK_BYTES: Final = 34
PANEL_BLOCK_BYTES: Final = 16 * BLOCK_BYTES  # one q8x16: 16 rows x one block, packed
Q4_BLOCK_BYTES: Final = 18  # GGML block_q4_0: fp16 scale + 32 nibbles
Q4_PANEL_BLOCK_BYTES: Final = 16 * Q4_BLOCK_BYTES  # one q4x16

_DTYPE_CODES: Final = {"float32": lib.Q8_DTYPE_F32, "float16": lib.Q8_DTYPE_F16}  # q8.h Q8_DTYPE_*


def check_greedy(value: float) -> None:
    """The greedy step's winning logit must be finite: NaN or Inf there means the forward pass
    broke, and an argmax over it would pick a token silently."""
    if not math.isfinite(value):
        raise NumericalError(f"the logits hold {value} (NaN/Inf) at the greedy step")


def check(rc: int, what: str) -> None:
    """The one map from libq8's return codes (q8.h) to the error family."""
    if rc == lib.Q8_OK:
        return
    if rc == lib.Q8_EINVAL:
        raise KernelArgumentError(f"{what}: libq8 rejected the arguments")
    if rc == lib.Q8_ENOMEM:
        raise OutOfMemoryError(f"{what}: libq8 could not allocate memory")
    if rc == lib.Q8_ENONFINITE:
        raise NumericalError(f"{what}: the input holds NaN or Inf")
    raise LibraryError(f"{what}: libq8 returned error {rc}")


_rc = check


def _array(name: str, a: object, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise KernelTypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim != ndim:
        raise KernelArgumentError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0:
        raise KernelArgumentError(f"{name} must not be empty, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise KernelArgumentError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if not a.flags.aligned:
        raise KernelArgumentError(f"{name} must be aligned to its element size")
    return a


def _f32(name: str, a: object, ndim: int) -> np.ndarray:
    arr = _array(name, a, ndim)
    if arr.dtype != np.float32:
        raise KernelTypeError(f"{name} must be float32, got {arr.dtype}")
    return arr


def _ptr(ctype: str, a: np.ndarray) -> Any:
    return ffi.from_buffer(ctype, a)


def _len(name: str, a: np.ndarray, expected: int) -> None:
    if a.shape[-1] != expected:
        raise KernelArgumentError(
            f"{name} has {a.shape[-1]} elements along its last axis, expected {expected}"
        )


def _opt_bias(bias: np.ndarray | None, n: int) -> Any:
    if bias is None:
        return ffi.NULL
    b = _f32("bias", bias, 1)
    _len("bias", b, n)
    return _ptr("float[]", b)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 1 << 30 else f"{nbytes / 2**20:.1f} MiB"


def alloc(nbytes: int, what: str, *, zero: bool = False, limit: int | None = None) -> Any:
    """nbytes of libq8 memory (64-byte aligned, advised for huge pages from 2 MiB up), freed when
    the returned cdata is collected. zero=True writes zeros, which also faults every page in now
    rather than inside a timed step. More than `limit` bytes, or memory the allocator does not
    give, is an OutOfMemoryError (a MemoryError) that says what it was for."""
    mem = lib.q8_alloc(nbytes) if 0 < nbytes and (limit is None or nbytes <= limit) else ffi.NULL
    if mem == ffi.NULL:
        raise OutOfMemoryError(f"cannot allocate {_size(nbytes)} for {what}")
    mem = ffi.gc(mem, lib.q8_free)
    if zero:
        np.frombuffer(ffi.buffer(mem, nbytes), dtype=np.uint8).fill(0)
    return mem


def _ggml_blocks(blocks: object, k: int, block_bytes: int) -> np.ndarray:
    """GGML block bytes (N, K // 32 * block_bytes), checked before they are packed."""
    b = _array("blocks", blocks, 2)
    if b.dtype != np.uint8:
        raise KernelTypeError(f"blocks must be uint8, got {b.dtype}")
    if k <= 0 or k % QK8_0 != 0:
        raise KernelArgumentError(f"k must be a positive multiple of 32, got {k}")
    _len("blocks", b, k // QK8_0 * block_bytes)
    return b


def _weights(w: object, fmt: str) -> tuple[np.ndarray, int, int, int]:
    """A float32/float16 (N, K) matrix to quantize to fmt: (array, libq8 dtype code, N, K)."""
    a = _array("w", w, 2)
    code = _DTYPE_CODES.get(str(a.dtype), -1)
    if code < 0:
        raise KernelTypeError(f"w must be float32 or float16, got {a.dtype}")
    n, k = int(a.shape[0]), int(a.shape[1])
    if k % QK8_0 != 0:
        raise KernelArgumentError(f"w has K = {k} columns, which is not a multiple of 32")
    if not bool(np.isfinite(a).all()):
        raise KernelArgumentError(f"w contains NaN or Inf, which {fmt} cannot represent")
    return a, code, n, k


WEIGHT_SLAB_BYTES: Final = 64 << 20  # a WeightArena's slab (huge pages, 2 MiB aligned)


class WeightArena:
    """Huge-page slabs that a model's matrices are carved from, one after another in load order
    (the order a decode step streams them).

    A matrix in its own allocation gets transparent huge pages only from 2 MiB up (q8_alloc), so
    GPT-2's 768x768 and QKV matrices (0.6 and 1.9 MiB) streamed from 4 KiB pages, at ~75% and
    ~85% of the bandwidth the bigger ones reached in the same step. Carving every matrix from
    64 MiB slabs puts them all in huge pages without rounding each one up to 2 MiB. A slab lives
    as long as any matrix in it; the arena itself is dropped after the load."""

    _owner: Any  # the current slab (gc-owned q8_alloc memory), or None
    _size: int
    _used: int

    def __init__(self) -> None:
        self._owner = None
        self._size = 0
        self._used = 0

    def take(self, nbytes: int) -> tuple[Any, Any]:
        """(pointer to nbytes, 64-byte aligned; the slab that owns them)."""
        want = (nbytes + 63) // 64 * 64
        if self._owner is None or self._used + want > self._size:
            size = max(WEIGHT_SLAB_BYTES, want)
            self._owner = alloc(size, "a weight slab")
            self._size = size
            self._used = 0
        p = ffi.cast("char *", self._owner) + self._used
        self._used += want
        return p, self._owner


@dataclass(frozen=True)
class _Format:
    """What tells libq8's packed weight formats apart: the matrix class's name, the GGML block,
    the C types, and the libq8 functions that take the format."""

    name: str  # "Q8_0"
    matrix: str  # the class holding it, for messages
    block_bytes: int  # one GGML block
    panel_bytes: int  # one packed panel block (16 rows x one block)
    block_type: str  # C type of GGML blocks
    packed_type: str  # C type of the packed panels
    packed_count: Any
    pack: Any
    unpack: Any
    dequantize: Any
    quantize: Any
    gemv: Any
    gemm: Any
    lmhead: Any
    lmhead_argmax: Any


_Q8_0: Final = _Format(
    "Q8_0", "Q8Matrix", BLOCK_BYTES, PANEL_BLOCK_BYTES, "q8_block *", "q8x16 *",
    lib.q8_packed_count, lib.q8_pack, lib.q8_unpack, lib.q8_dequantize_packed, lib.q8_quantize_packed,
    lib.q8_gemv, lib.q8_gemm, lib.q8_lmhead, lib.q8_lmhead_argmax,
)  # fmt: skip
_Q4_0: Final = _Format(
    "Q4_0", "Q4Matrix", Q4_BLOCK_BYTES, Q4_PANEL_BLOCK_BYTES, "q4_block *", "q4x16 *",
    lib.q8_q4_packed_count, lib.q8_q4_pack, lib.q8_q4_unpack, lib.q8_q4_dequantize_packed,
    lib.q8_q4_quantize_packed, lib.q8_q4_gemv, lib.q8_q4_gemm, lib.q8_q4_lmhead, lib.q8_q4_lmhead_argmax,
)  # fmt: skip


class _PackedMatrix:
    """An N x K matrix of quantized weights, packed for the products (16-row panels, see q8.h) in
    a huge-page-advised allocation from libq8 (or a WeightArena's slab) that lives as long as the
    matrix. Q8Matrix and Q4Matrix differ only in their _Format."""

    shape: tuple[int, int]
    nbytes: int
    _fmt: _Format
    _mem: Any
    _owner: Any  # what keeps _mem allocated

    def __init__(self, fmt: _Format, n: int, k: int, arena: WeightArena | None) -> None:
        if n <= 0 or k <= 0 or k % QK8_0 != 0:
            raise KernelArgumentError(f"{fmt.matrix} shape must be positive with K % 32 == 0, got ({n}, {k})")
        count = int(fmt.packed_count(n, k))
        if count < 0:
            raise KernelArgumentError(f"{fmt.matrix} shape ({n}, {k}) is too large")
        nbytes = count * fmt.panel_bytes
        if arena is not None:
            self._mem, self._owner = arena.take(nbytes)
        else:
            self._mem = self._owner = alloc(nbytes, f"a ({n}, {k}) {fmt.name} matrix")
        self._fmt = fmt
        self.nbytes = nbytes
        self.shape = (n, k)

    def _pack(self, b: np.ndarray) -> None:
        """Pack checked GGML blocks (see _ggml_blocks) of this matrix's shape."""
        n, k = self.shape
        f = self._fmt
        _rc(f.pack(ffi.cast(f.block_type, _ptr("char[]", b)), n, k, self.ptr()), "from_blocks")

    def _quantize(self, a: np.ndarray, code: int, what: str) -> None:
        """Quantize checked weights (see _weights) of this matrix's shape into it."""
        n, k = self.shape
        _rc(self._fmt.quantize(_ptr("char[]", a), code, n, k, 0, self.ptr(), n, 0), what)

    @property
    def blocks(self) -> np.ndarray:
        n, k = self.shape
        f = self._fmt
        out = np.empty((n, k // QK8_0 * f.block_bytes), dtype=np.uint8)
        _rc(f.unpack(self.ptr(), n, k, ffi.cast(f.block_type, _ptr("char[]", out))), "blocks")
        return out

    def ptr(self) -> Any:
        """The packed pointer (q8x16 * or q4x16 *) for libq8 calls (valid while this matrix lives)."""
        return ffi.cast(self._fmt.packed_type, self._mem)

    def dequantize(self) -> np.ndarray:
        n, k = self.shape
        out = np.empty((n, k), dtype=np.float32)
        _rc(self._fmt.dequantize(self.ptr(), n, k, 0, n, _ptr("float[]", out)), "dequantize")
        return out

    def __repr__(self) -> str:
        return f"{self._fmt.matrix}(shape={self.shape}, nbytes={self.nbytes})"


class Q8Matrix(_PackedMatrix):
    """An N x K matrix of Q8_0 weights. `blocks` gives them in GGML's layout: uint8
    (N, K // 32 * 34), each row K // 32 blocks of an fp16 scale followed by 32 int8 quants (a
    fresh array on each access). In memory they are packed for the products (16-row panels,
    see q8.h), in a huge-page-advised allocation from libq8 (or a WeightArena's slab) that lives
    as long as the matrix."""

    def __init__(self, n: int, k: int, arena: WeightArena | None = None) -> None:
        """An uninitialized matrix; use quantize_q8_0 or Q8Matrix.from_blocks."""
        super().__init__(_Q8_0, n, k, arena)

    @staticmethod
    def from_blocks(blocks: np.ndarray, k: int) -> Q8Matrix:
        """Pack GGML Q8_0 bytes (N, K // 32 * 34). Quants must lie in [-127, 127], as every
        ggml quantizer produces them (the integer kernels rely on it)."""
        b = _ggml_blocks(blocks, k, BLOCK_BYTES)
        qs = b.reshape(-1, BLOCK_BYTES)[:, 2:]
        if bool((qs == 0x80).any()):
            raise KernelArgumentError("blocks hold the quant -128, outside ggml's [-127, 127]")
        m = Q8Matrix(int(b.shape[0]), k)
        m._pack(b)
        return m


def quantize_q8_0(w: np.ndarray) -> Q8Matrix:
    """Quantize a float32 or float16 (N, K) matrix, K % 32 == 0, to Q8_0: byte-identical to
    ggml's quantize_row_q8_0_ref and gguf.quants.quantize. Non-finite weights are refused."""
    a, code, n, k = _weights(w, "Q8_0")
    m = Q8Matrix(n, k)
    m._quantize(a, code, "quantize_q8_0")
    return m


class Q4Matrix(_PackedMatrix):
    """An N x K matrix of Q4_0 weights. `blocks` gives them in GGML's layout: uint8
    (N, K // 32 * 18), each row K // 32 blocks of an fp16 scale followed by 16 bytes of nibbles
    (byte c: column c low, column c + 16 high; value d * (nibble - 8)), a fresh array on each
    access. In memory they are packed for the products (16-row panels, see q4x16 in q8.h)."""

    def __init__(self, n: int, k: int, arena: WeightArena | None = None) -> None:
        """An uninitialized matrix; use quantize_q4_0 or Q4Matrix.from_blocks."""
        super().__init__(_Q4_0, n, k, arena)

    @staticmethod
    def from_blocks(blocks: np.ndarray, k: int) -> Q4Matrix:
        """Pack GGML Q4_0 bytes (N, K // 32 * 18)."""
        b = _ggml_blocks(blocks, k, Q4_BLOCK_BYTES)
        m = Q4Matrix(int(b.shape[0]), k)
        m._pack(b)
        return m


def quantize_q4_0(w: np.ndarray) -> Q4Matrix:
    """Quantize a float32 or float16 (N, K) matrix, K % 32 == 0, to Q4_0: byte-identical to
    gguf.quants.quantize(w, GGMLQuantizationType.Q4_0) (d = the block's largest-magnitude value
    / -8, an all-zero block stores d = -0.0). Non-finite weights are refused."""
    a, code, n, k = _weights(w, "Q4_0")
    m = Q4Matrix(n, k)
    m._quantize(a, code, "quantize_q4_0")
    return m


# ---- products: gemv, gemm, lmhead and lmhead_argmax, each for Q8_0, Q4_0 and float32 -------
# One body per product serves both packed formats (the matrix's _Format picks the libq8
# function). Public wrappers take `q: object` (documented as a Q8Matrix or Q4Matrix): mypyc would
# otherwise reject a wrong object with its own bare TypeError before our check could name it.
def _matrix_and_x(
    cls: type[_PackedMatrix], q: object, x: object, xdim: int
) -> tuple[_PackedMatrix, np.ndarray]:
    if not isinstance(q, cls):
        raise KernelTypeError(f"q must be a {cls.__name__}, got {type(q).__name__}")
    xa = _f32("x", x, xdim)
    _len("x", xa, q.shape[1])
    return q, xa


def _gemv(cls: type[_PackedMatrix], what: str, q: object, x: object, bias: np.ndarray | None) -> np.ndarray:
    m, xa = _matrix_and_x(cls, q, x, 1)
    n, k = m.shape
    y = np.empty(n, dtype=np.float32)
    _rc(m._fmt.gemv(m.ptr(), n, k, _ptr("float[]", xa), _opt_bias(bias, n), _ptr("float[]", y)), what)
    return y


def _gemm(cls: type[_PackedMatrix], what: str, q: object, x: object, bias: np.ndarray | None) -> np.ndarray:
    m, xa = _matrix_and_x(cls, q, x, 2)
    n, k = m.shape
    t = int(xa.shape[0])
    y = np.empty((t, n), dtype=np.float32)
    _rc(m._fmt.gemm(m.ptr(), n, k, _ptr("float[]", xa), t, _opt_bias(bias, n), _ptr("float[]", y)), what)
    return y


def _lmhead(cls: type[_PackedMatrix], what: str, q: object, x: object) -> np.ndarray:
    m, xa = _matrix_and_x(cls, q, x, 1)
    n, k = m.shape
    y = np.empty(n, dtype=np.float32)
    _rc(m._fmt.lmhead(m.ptr(), n, k, _ptr("float[]", xa), _ptr("float[]", y)), what)
    return y


def _lmhead_argmax(cls: type[_PackedMatrix], what: str, q: object, x: object) -> tuple[int, float]:
    m, xa = _matrix_and_x(cls, q, x, 1)
    n, k = m.shape
    idx = ffi.new("int64_t *")
    val = ffi.new("float *")
    _rc(m._fmt.lmhead_argmax(m.ptr(), n, k, _ptr("float[]", xa), idx, val), what)
    return int(idx[0]), float(val[0])


def _w_and_x(w: object, x: object, xdim: int) -> tuple[np.ndarray, np.ndarray]:
    wa = _f32("w", w, 2)
    xa = _f32("x", x, xdim)
    _len("x", xa, int(wa.shape[1]))
    return wa, xa


def gemv_q8_0(q: object, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = W x (+ bias): W Q8_0 (N, K), x float32 (K,) -> float32 (N,)."""
    return _gemv(Q8Matrix, "gemv_q8_0", q, x, bias)


def gemv_q4_0(q: object, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = W x (+ bias): W Q4_0 (N, K), x float32 (K,) -> float32 (N,). x is quantized to Q8_0
    as for gemv_q8_0."""
    return _gemv(Q4Matrix, "gemv_q4_0", q, x, bias)


def gemv_f32(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = W x (+ bias) in float32: W (N, K), x (K,) -> (N,)."""
    wa, xa = _w_and_x(w, x, 1)
    n, k = int(wa.shape[0]), int(wa.shape[1])
    y = np.empty(n, dtype=np.float32)
    rc = lib.q8_gemv_f32(
        _ptr("float[]", wa), n, k, _ptr("float[]", xa), _opt_bias(bias, n), _ptr("float[]", y)
    )
    _rc(rc, "gemv_f32")
    return y


def gemm_q8_0(q: object, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Y = X W^T (+ bias): x float32 (T, K) -> float32 (T, N); row t equals gemv_q8_0(q, x[t])."""
    return _gemm(Q8Matrix, "gemm_q8_0", q, x, bias)


def gemm_q4_0(q: object, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Y = X W^T (+ bias): x float32 (T, K) -> float32 (T, N); row t equals gemv_q4_0(q, x[t])."""
    return _gemm(Q4Matrix, "gemm_q4_0", q, x, bias)


def gemm_f32(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Y = X W^T (+ bias) in float32: x (T, K) -> (T, N)."""
    wa, xa = _w_and_x(w, x, 2)
    n, k, t = int(wa.shape[0]), int(wa.shape[1]), int(xa.shape[0])
    y = np.empty((t, n), dtype=np.float32)
    rc = lib.q8_gemm_f32(
        _ptr("float[]", wa), n, k, _ptr("float[]", xa), t, _opt_bias(bias, n), _ptr("float[]", y)
    )
    _rc(rc, "gemm_f32")
    return y


def lmhead_q8_0(q: object, x: np.ndarray) -> np.ndarray:
    """Vocabulary logits through the tiled projection; bitwise equal to gemv_q8_0(q, x)."""
    return _lmhead(Q8Matrix, "lmhead_q8_0", q, x)


def lmhead_q4_0(q: object, x: np.ndarray) -> np.ndarray:
    """Vocabulary logits through the tiled projection; bitwise equal to gemv_q4_0(q, x)."""
    return _lmhead(Q4Matrix, "lmhead_q4_0", q, x)


def lmhead_f32(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    wa, xa = _w_and_x(w, x, 1)
    n, k = int(wa.shape[0]), int(wa.shape[1])
    y = np.empty(n, dtype=np.float32)
    _rc(lib.q8_lmhead_f32(_ptr("float[]", wa), n, k, _ptr("float[]", xa), _ptr("float[]", y)), "lmhead_f32")
    return y


def lmhead_argmax_q8_0(q: object, x: np.ndarray) -> tuple[int, float]:
    """(index, value) of the largest logit without materializing the logits; the lowest index
    wins ties and a NaN logit counts as the largest (so it is reported, never hidden)."""
    return _lmhead_argmax(Q8Matrix, "lmhead_argmax_q8_0", q, x)


def lmhead_argmax_q4_0(q: object, x: np.ndarray) -> tuple[int, float]:
    """As lmhead_argmax_q8_0, for Q4_0 weights."""
    return _lmhead_argmax(Q4Matrix, "lmhead_argmax_q4_0", q, x)


def lmhead_argmax_f32(w: np.ndarray, x: np.ndarray) -> tuple[int, float]:
    wa, xa = _w_and_x(w, x, 1)
    n, k = int(wa.shape[0]), int(wa.shape[1])
    idx = ffi.new("int64_t *")
    val = ffi.new("float *")
    _rc(
        lib.q8_lmhead_argmax_f32(_ptr("float[]", wa), n, k, _ptr("float[]", xa), idx, val),
        "lmhead_argmax_f32",
    )
    return int(idx[0]), float(val[0])


# ---- sampling support ------------------------------------------------------------------


def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, values float32) of the k largest entries of a 1-D float32 array, in
    descending order; equal values keep the lower index first. NaN/Inf: NumericalError."""
    xa = _f32("x", x, 1)
    n = int(xa.shape[0])
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise KernelArgumentError(f"k must be an integer in [1, {n}], got {k!r}")
    idx = np.empty(k, dtype=np.int64)
    val = np.empty(k, dtype=np.float32)
    _rc(lib.q8_topk(_ptr("float[]", xa), n, k, _ptr("int64_t[]", idx), _ptr("float[]", val)), "topk")
    return idx, val


def expsum(x: np.ndarray, max_value: float, inv_temp: float) -> float:
    """sum(exp((x - max_value) * inv_temp)) over a 1-D float32 array, accumulated in double."""
    xa = _f32("x", x, 1)
    _finite("max_value", max_value)
    _finite("inv_temp", inv_temp, positive=True)
    r = float(lib.q8_expsum(_ptr("float[]", xa), int(xa.shape[0]), max_value, inv_temp))
    if r < 0:
        raise KernelArgumentError("expsum: libq8 rejected the arguments")
    return r


# ---- per-layer operations --------------------------------------------------------------


def _finite(name: str, v: float, *, positive: bool = False, nonneg: bool = False) -> None:
    if not math.isfinite(v) or (positive and v <= 0.0) or (nonneg and v < 0.0):
        need = "finite and positive" if positive else ("finite and >= 0" if nonneg else "finite")
        raise KernelArgumentError(f"{name} must be {need}, got {v}")


MAX_POS: Final = (1 << 31) - 1  # libq8's largest position
MAX_HEAD_DIM: Final[int] = int(lib.Q8_MAX_HEAD_DIM)  # q8.h: the largest head_dim attention takes


def _rows(name: str, x: object) -> tuple[np.ndarray, int, int]:
    """A 1-D (n,) or 2-D (rows, n) float32 array and its (rows, n)."""
    if isinstance(x, np.ndarray) and x.ndim == 1:
        a = _f32(name, x, 1)
        return a, 1, int(a.shape[0])
    a = _f32(name, x, 2)
    return a, int(a.shape[0]), int(a.shape[1])


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    _finite("eps", eps, nonneg=True)
    xa, rows, n = _rows("x", x)
    g = _f32("gamma", gamma, 1)
    b = _f32("beta", beta, 1)
    _len("gamma", g, n)
    _len("beta", b, n)
    y = np.empty_like(xa)
    _rc(
        lib.q8_layernorm(
            _ptr("float[]", xa), _ptr("float[]", g), _ptr("float[]", b), rows, n, eps, _ptr("float[]", y)
        ),
        "layernorm",
    )
    return y


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float, offset: float = 0.0) -> np.ndarray:
    """x / rms(x) * (offset + w); Gemma uses offset 1.0."""
    _finite("eps", eps, nonneg=True)
    _finite("offset", offset)
    xa, rows, n = _rows("x", x)
    wa = _f32("w", w, 1)
    _len("w", wa, n)
    y = np.empty_like(xa)
    _rc(
        lib.q8_rmsnorm(_ptr("float[]", xa), _ptr("float[]", wa), rows, n, eps, offset, _ptr("float[]", y)),
        "rmsnorm",
    )
    return y


def _unary(fname: str, x: np.ndarray, argname: str = "x") -> tuple[np.ndarray, np.ndarray]:
    xa = _array(argname, x, x.ndim if isinstance(x, np.ndarray) and x.ndim > 0 else 1)
    if xa.dtype != np.float32:
        raise KernelTypeError(f"{fname}: {argname} must be float32, got {xa.dtype}")
    return xa, np.empty_like(xa)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    xa, y = _unary("gelu_tanh", x)
    _rc(lib.q8_gelu_tanh(_ptr("float[]", xa), xa.size, _ptr("float[]", y)), "gelu_tanh")
    return y


def _binary(
    fname: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    aa, y = _unary(fname, a, names[0])
    bb = _array(names[1], b, aa.ndim)
    if bb.dtype != np.float32:
        raise KernelTypeError(f"{fname}: {names[1]} must be float32, got {bb.dtype}")
    if bb.shape != aa.shape:
        raise KernelArgumentError(
            f"{fname}: {names[1]} has shape {bb.shape}, which differs from {names[0]}'s {aa.shape}"
        )
    return aa, bb, y


def geglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """gelu_tanh(gate) * up."""
    g, u, y = _binary("geglu", gate, up, ("gate", "up"))
    _rc(lib.q8_geglu(_ptr("float[]", g), _ptr("float[]", u), g.size, _ptr("float[]", y)), "geglu")
    return y


def _glu_rows(fn: Any, what: str, gate_up: np.ndarray) -> np.ndarray:
    """A gated activation (libq8 fn) of a fused (rows, 2n) gate|up output: (rows, n)."""
    x = _f32("gate_up", gate_up, 2)
    rows, width = int(x.shape[0]), int(x.shape[1])
    if width % 2:
        raise KernelArgumentError(f"gate_up must have an even width (gate | up), got {width}")
    y = np.empty((rows, width // 2), dtype=np.float32)
    _rc(fn(_ptr("float[]", x), rows, width // 2, _ptr("float[]", y)), what)
    return y


def geglu_rows(gate_up: np.ndarray) -> np.ndarray:
    """Row-wise GeGLU of a fused (rows, 2n) gate|up output: gelu_tanh(gate) * up, (rows, n)."""
    return _glu_rows(lib.q8_geglu_rows, "geglu_rows", gate_up)


def swiglu_rows(gate_up: np.ndarray) -> np.ndarray:
    """Row-wise SwiGLU of a fused (rows, 2n) gate|up output: silu(gate) * up, (rows, n)."""
    return _glu_rows(lib.q8_swiglu_rows, "swiglu_rows", gate_up)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa, bb, y = _binary("add", a, b, ("a", "b"))
    _rc(lib.q8_add(_ptr("float[]", aa), _ptr("float[]", bb), aa.size, _ptr("float[]", y)), "add")
    return y


def softcap(x: np.ndarray, cap: float) -> np.ndarray:
    """cap * tanh(x / cap)."""
    _finite("cap", cap, positive=True)
    xa, y = _unary("softcap", x)
    _rc(lib.q8_softcap(_ptr("float[]", xa), cap, xa.size, _ptr("float[]", y)), "softcap")
    return y


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of a 1-D or 2-D array."""
    xa, rows, n = _rows("x", x)
    y = np.empty_like(xa)
    _rc(lib.q8_softmax(_ptr("float[]", xa), rows, n, _ptr("float[]", y)), "softmax")
    return y


def _rope_args(x: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    xa = _f32("x", x, 3)
    p = _array("pos", pos, 1)
    if p.dtype != np.int64:
        raise KernelTypeError(f"pos must be int64, got {p.dtype}")
    t, h, d = (int(s) for s in xa.shape)
    if int(p.shape[0]) != t:
        raise KernelArgumentError(f"pos has {p.shape[0]} entries for {t} rows of x")
    if d % 2 != 0 or d > 1024:
        raise KernelArgumentError(f"head_dim must be even and at most 1024, got {d}")
    if bool((p < 0).any()) or bool((p >= 1 << 24).any()):
        raise KernelArgumentError("positions must lie in [0, 2**24)")
    return xa, p, t, h, d


def rope(x: np.ndarray, pos: np.ndarray, theta: float) -> np.ndarray:
    """Rotary embedding ("rotate half" pairs i, i + D/2) of x (T, H, D) at positions pos (T,)."""
    xa, p, t, h, d = _rope_args(x, pos)
    _finite("theta", theta, positive=True)
    y = xa.copy()
    _rc(lib.q8_rope(_ptr("float[]", y), t, h, d, _ptr("int64_t[]", p), theta), "rope")
    return y


def rope_freq(x: np.ndarray, pos: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """rope with the D/2 frequencies given: pair i at position p turns by p * inv_freq[i]."""
    xa, p, t, h, d = _rope_args(x, pos)
    f = _f32("inv_freq", inv_freq, 1)
    _len("inv_freq", f, d // 2)
    if not bool(np.isfinite(f).all()) or bool((f < 0).any()):
        raise KernelArgumentError("inv_freq must be finite and >= 0")
    y = xa.copy()
    _rc(lib.q8_rope_freq(_ptr("float[]", y), t, h, d, _ptr("int64_t[]", p), _ptr("float[]", f)), "rope")
    return y


def kv_write(
    k_new: np.ndarray, v_new: np.ndarray, pos0: int, k_cache: np.ndarray, v_cache: np.ndarray
) -> None:
    """Store t rows (t, n_kv, D) for positions pos0.. in caches (n_kv, cap, D), slot = pos % cap."""
    kn = _f32("k_new", k_new, 3)
    vn = _f32("v_new", v_new, 3)
    kc = _f32("k_cache", k_cache, 3)
    vc = _f32("v_cache", v_cache, 3)
    if not kc.flags.writeable or not vc.flags.writeable:
        raise KernelArgumentError("k_cache and v_cache must be writeable")
    if kn.shape != vn.shape or kc.shape != vc.shape:
        raise KernelArgumentError("k and v arrays must have matching shapes")
    t, n_kv, d = (int(s) for s in kn.shape)
    if (int(kc.shape[0]), int(kc.shape[2])) != (n_kv, d):
        raise KernelArgumentError(f"cache shape {kc.shape} does not fit rows of shape {kn.shape[1:]}")
    if not 0 <= pos0 <= MAX_POS:
        raise KernelArgumentError(f"pos0 must lie in [0, {MAX_POS}], got {pos0}")
    cap = int(kc.shape[1])
    rc = lib.q8_kv_write(
        _ptr("float[]", kn),
        _ptr("float[]", vn),
        t,
        pos0,
        _ptr("float[]", kc),
        _ptr("float[]", vc),
        n_kv,
        cap,
        d,
    )
    _rc(rc, "kv_write")


def attention(
    q: np.ndarray,
    pos0: int,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    scale: float,
    window: int = 0,
    softcap: float = 0.0,
) -> np.ndarray:
    """Causal attention of q (T, H, D) at positions pos0.. over caches (n_kv, cap, D)."""
    qa = _f32("q", q, 3)
    kc = _f32("k_cache", k_cache, 3)
    vc = _f32("v_cache", v_cache, 3)
    if kc.shape != vc.shape:
        raise KernelArgumentError("k_cache and v_cache shapes differ")
    t, h, d = (int(s) for s in qa.shape)
    n_kv, cap = int(kc.shape[0]), int(kc.shape[1])
    if int(kc.shape[2]) != d:
        raise KernelArgumentError(f"cache head_dim {kc.shape[2]} != q head_dim {d}")
    if h % n_kv != 0:
        raise KernelArgumentError(f"{h} query heads cannot share {n_kv} KV heads evenly")
    if d > MAX_HEAD_DIM:
        raise KernelArgumentError(f"head_dim {d} exceeds {MAX_HEAD_DIM}")
    if not 0 <= pos0 <= MAX_POS:
        raise KernelArgumentError(f"pos0 must lie in [0, {MAX_POS}], got {pos0}")
    if window < 0:
        raise KernelArgumentError(f"window must be >= 0, got {window}")
    _finite("scale", scale)
    _finite("softcap", softcap, nonneg=True)
    last = pos0 + t - 1
    lo0 = max(0, pos0 - window + 1) if window > 0 else 0
    if not (last < cap or lo0 >= last - cap + 1):
        raise KernelArgumentError(f"positions {lo0}..{last} do not all fit a cache of {cap} slots")
    out = np.empty_like(qa)
    rc = lib.q8_attention(
        _ptr("float[]", qa),
        t,
        pos0,
        _ptr("float[]", kc),
        _ptr("float[]", vc),
        h,
        n_kv,
        cap,
        d,
        window,
        scale,
        softcap,
        _ptr("float[]", out),
    )
    _rc(rc, "attention")
    return out


# ---- library facts --------------------------------------------------------------------


def isa_supported() -> list[str]:
    """Kernel paths this CPU and OS can run, worst to best."""
    return [s for s in bytes(ffi.string(lib.q8_isa_supported())).decode().split(",") if s]


def isa_active() -> str:
    return bytes(ffi.string(lib.q8_isa_active())).decode()


def set_isa(name: str) -> None:
    """Force a kernel path (as PYRUSTML_ISA does); ValueError if this machine lacks it."""
    if "\x00" in name or lib.q8_isa_set(name.encode()) != 0:
        raise KernelArgumentError(f"kernel path {name!r} is not supported here; supported: {isa_supported()}")


class ReadProbe:
    """A fixed amount of memory traffic to time beside decode steps: a libq8 buffer of nbytes
    (huge-page advised, every page faulted in) that every pool thread reads, in one pass per
    read_seconds() call. Its spread over a run is the host's own, no model's."""

    nbytes: int  # read per pass: the size, down to a whole MiB
    _mem: Any

    def __init__(self, nbytes: int) -> None:
        if not 1 << 20 <= nbytes <= 1 << 40:
            raise KernelArgumentError(f"a read probe takes 1 MiB to 1 TiB, got {nbytes} bytes")
        self._mem = alloc(nbytes, "a read probe", zero=True)
        self.nbytes = nbytes - nbytes % (1 << 20)

    def read_seconds(self) -> float:
        gbs = float(lib.q8_read_pass(self._mem, self.nbytes))
        if gbs <= 0.0:
            raise LibraryError(f"read pass failed over {self.nbytes} bytes")
        return self.nbytes / (gbs * 1e9)


def probe_read_bandwidth(nbytes: int = 1 << 28, reps: int = 5) -> float:
    """This machine's read bandwidth in GB/s, with every pool thread streaming."""
    gbs = float(lib.q8_probe_read_bandwidth(nbytes, reps))
    if gbs <= 0.0:
        raise LibraryError(f"bandwidth probe failed for {nbytes} bytes")
    return gbs
