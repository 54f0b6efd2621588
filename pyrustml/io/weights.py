"""Weights read from a checkpoint into engine Linears: quantized straight from the checkpoint's bytes.

Loading goes tensor by tensor from the file into the final allocation (libq8 converts f16/bf16
and transposes HF Conv1D [in, out] weights while quantizing), so no float32 copy of a whole Q8_0
model ever exists. A matrix stored row by row is read and quantized in chunks of about
CHUNK_BYTES (a multiple of 16 rows, the packed layout's group), so besides the model only one
chunk is in memory; a transposed (Conv1D) matrix is read whole, as its rows are columns on disk.
"""

from __future__ import annotations

import os
from typing import Final

import numpy as np

from ..engine._ffi import ffi, lib
from ..engine.kernels import QK8_0, Q4Matrix, Q8Matrix, WeightArena, check
from ..engine.linear import Linear
from ..errors import ModelFormatError, OptionError, UnsupportedModelError
from .safetensors import CHUNK_BYTES, DTYPES, Checkpoint, TensorInfo, to_float32

# libq8's source dtypes (q8.h Q8_DTYPE_*) by safetensors name
DTYPE_CODE: Final[dict[str, int]] = {
    "F32": lib.Q8_DTYPE_F32,
    "F16": lib.Q8_DTYPE_F16,
    "BF16": lib.Q8_DTYPE_BF16,
}
# Q8_0 stores each block's scale max|w| / 127 as fp16 (largest finite value 65504): a weight beyond
# 65504 x 127 would get an infinite scale and turn every output it touches into Inf/NaN.
Q8_MAX_ABS: Final = 65504.0 * 127.0
# Q4_0's scale is the block's largest value / -8, so its bound is 65504 x 8.
Q4_MAX_ABS: Final = 65504.0 * 8.0
# Per dtype: (signed and unsigned views of the words, sign bit, magnitude bits of Inf, the first
# magnitude bits above Q8_MAX_ABS). Positive floats order like their bit patterns, so magnitudes
# can be compared as integers.
_F32_Q8_LIMIT: Final = int(np.array([Q8_MAX_ABS], dtype=np.float32).view(np.uint32)[0])
_F32_Q4_LIMIT: Final = int(np.array([Q4_MAX_ABS], dtype=np.float32).view(np.uint32)[0])
_WORDS: Final[dict[str, tuple[str, str, int, int, int, int]]] = {
    "F32": ("<i4", "<u4", 1 << 31, 0x7F800000, _F32_Q8_LIMIT + 1, _F32_Q4_LIMIT + 1),
    # 65504 < both limits: an f16 weight is never out of range
    "F16": ("<i2", "<u2", 1 << 15, 0x7C00, 0x7C00, 0x7C00),
    "BF16": ("<i2", "<u2", 1 << 15, 0x7F80, (_F32_Q8_LIMIT >> 16) + 1, (_F32_Q4_LIMIT >> 16) + 1),
}

# Weight formats of a Linear, and the quant modes of load(): which format each role gets.
F32: Final = "f32"
Q8_0: Final = "q8_0"
Q4_0: Final = "q4_0"
QUANTS: Final = ("q8_0", "q4_0", "q4_0-pure", "f32")
# Roles: the token embedding (also the lm_head when tied), an untied lm_head, the attention output
# projection, and every other matrix.
ROLES: Final = ("embed", "lm_head", "attn_out", "matrix")
# quant="q4_0" keeps these roles at Q8_0. Measured on full-size random Gemma 3 1B (tools/PERF_NOTES.md,
# "Q4_0"): a Q4_0 embedding / tied lm_head drops f32 top-1 agreement from 0.95 to 0.66-0.73, and a
# Q8_0 attention output lifts logits cosine 0.906 -> 0.926 and top-1 0.953 -> 0.977 for 2% more bytes.
Q4_KEEP_Q8: Final = ("embed", "lm_head", "attn_out")


class QuantPlan:
    """The weight format of each role under one quant mode: "q8_0" everything Q8_0, "f32" full
    precision, "q4_0" Q4_0 except the roles in keep_q8 (Q8_0), "q4_0-pure" everything Q4_0."""

    name: str
    formats: dict[str, str]

    def __init__(self, quant: str, keep_q8: tuple[str, ...] = Q4_KEEP_Q8) -> None:
        if quant not in QUANTS:
            raise OptionError(f"quant must be one of {QUANTS}, got {quant!r}")
        for role in keep_q8:
            if role not in ROLES:
                raise OptionError(f"unknown weight role {role!r}; roles are {ROLES}")
        self.name = quant
        if quant == "q4_0":
            self.formats = {r: Q8_0 if r in keep_q8 else Q4_0 for r in ROLES}
        else:
            fmt = {"q8_0": Q8_0, "f32": F32, "q4_0-pure": Q4_0}[quant]
            self.formats = {r: fmt for r in ROLES}

    def fmt(self, role: str) -> str:
        return self.formats[role]


def _where(info: TensorInfo) -> str:
    return f"{os.path.basename(info.path)}: tensor {info.name!r}"


def check_finite_words(info: TensorInfo, raw: np.ndarray, *, fmt: str = F32) -> None:
    """Refuse NaN/Inf in these stored words of a tensor (all of it, or a chunk), and for fmt
    q8_0 / q4_0 also weights too large for that format's fp16 block scale.

    Two integer reductions and no temporary array: the signed maximum of the words is the
    largest positive magnitude, and the unsigned maximum minus the sign bit the largest negative
    one."""
    words = _WORDS.get(info.dtype)
    if words is None:
        raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
    if raw.size == 0:
        return
    signed, unsigned, sign, inf_bits, q8_bits, q4_bits = words
    hi_pos = int(raw.view(signed).max())
    hi_neg = int(raw.view(unsigned).max()) - sign
    top = max(hi_pos, hi_neg)
    if top >= inf_bits:
        raise ModelFormatError(f"{_where(info)} holds NaN or Inf")
    if (fmt == Q8_0 and top >= q8_bits) or (fmt == Q4_0 and top >= q4_bits):
        bound = Q8_MAX_ABS if fmt == Q8_0 else Q4_MAX_ABS
        raise ModelFormatError(
            f"{_where(info)} holds weights of magnitude above {bound:.0f}, beyond what a "
            f"{fmt.upper()} block scale (fp16) can represent; load it with quant='f32'"
        )


def _packed(fmt: str, n: int, k: int, arena: WeightArena | None) -> Q8Matrix | Q4Matrix:
    return Q4Matrix(n, k, arena) if fmt == Q4_0 else Q8Matrix(n, k, arena)


def _quantize_rows(
    q: Q8Matrix | Q4Matrix, src: object, code: int, rows: int, transposed: bool, row0: int
) -> int:
    """Rows row0 .. row0 + rows - 1 of q from the checkpoint bytes src."""
    n, k = q.shape
    if isinstance(q, Q4Matrix):
        return int(lib.q8_q4_quantize_packed(src, code, rows, k, 1 if transposed else 0, q.ptr(), n, row0))
    return int(lib.q8_quantize_packed(src, code, rows, k, 1 if transposed else 0, q.ptr(), n, row0))


def chunk_rows(info: TensorInfo, k: int) -> int:
    """Rows per chunked read: about CHUNK_BYTES, a multiple of 16 (the packed row group)."""
    row_bytes = max(1, k * DTYPES[info.dtype][1])
    return max(16, CHUNK_BYTES // row_bytes // 16 * 16)


def quantize_into(ckpt: Checkpoint, info: TensorInfo, q: Q8Matrix | Q4Matrix, fmt: str, row0: int) -> None:
    """Quantize the (rows, k) tensor `info` into rows row0.. of the packed matrix q, chunk by
    chunk, each chunk checked for NaN/Inf and the format's range first."""
    rows, k = info.shape[0], q.shape[1]
    step = chunk_rows(info, k)
    code = DTYPE_CODE[info.dtype]
    for r in range(0, rows, step):
        part = ckpt.rows(info.name, r, min(rows, r + step))
        check_finite_words(info, part, fmt=fmt)
        src = ffi.from_buffer("char[]", part)
        check(_quantize_rows(q, src, code, part.shape[0], False, row0 + r), f"quantizing {info.name!r}")


def expect_shape(info: TensorInfo, shape: tuple[int, ...]) -> None:
    if info.shape != shape:
        raise ModelFormatError(f"{_where(info)} has shape {list(info.shape)}, expected {list(shape)}")


def vector(ckpt: Checkpoint, name: str, n: int) -> np.ndarray:
    """A 1-D float32 tensor of length n (norm weights, biases)."""
    expect_shape(ckpt.info(name), (n,))
    return np.ascontiguousarray(ckpt.float32(name))


def matrix_f32(ckpt: Checkpoint, name: str, shape: tuple[int, int]) -> np.ndarray:
    expect_shape(ckpt.info(name), shape)
    return np.ascontiguousarray(ckpt.float32(name))


def load_linear(
    ckpt: Checkpoint,
    name: str,
    bias_name: str | None,
    n: int,
    k: int,
    *,
    transposed: bool,
    fmt: str,
    arena: WeightArena | None = None,
) -> Linear:
    """A Linear of shape (n, k) from tensor `name`, stored (n, k), or (k, n) when transposed
    (HF Conv1D). In format fmt (q8_0, q4_0) when k % 32 == 0 (carved from `arena` when given);
    float32 otherwise."""
    info = ckpt.info(name)
    expect_shape(info, (k, n) if transposed else (n, k))
    if info.dtype not in DTYPE_CODE:
        raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
    fmt = fmt if k % QK8_0 == 0 else F32
    bias = vector(ckpt, bias_name, n) if bias_name is not None else None
    if fmt != F32 and not transposed:
        q = _packed(fmt, n, k, arena)
        quantize_into(ckpt, info, q, fmt, 0)
        return Linear(n, k, q, None, bias)
    raw = ckpt.raw(name)
    check_finite_words(info, raw, fmt=fmt)
    if fmt != F32:
        q = _packed(fmt, n, k, arena)
        src = ffi.from_buffer("char[]", raw)
        check(_quantize_rows(q, src, DTYPE_CODE[info.dtype], n, True, 0), f"quantizing {name!r}")
        return Linear(n, k, q, None, bias)
    w = to_float32(info, raw)
    del raw
    wf = np.ascontiguousarray(w.T if transposed else w)
    return Linear(n, k, None, wf, bias)


def load_fused(
    ckpt: Checkpoint,
    names: list[str],
    rows: list[int],
    k: int,
    *,
    fmt: str,
    arena: WeightArena | None = None,
    biases: list[str] | None = None,
) -> Linear:
    """One Linear whose rows are the given (rows_i, k) tensors stacked in order: the QKV and
    gate+up fusions, so a decode step makes one weight pass where it would make several.
    Each part is quantized straight into its row range of the fused matrix; `biases` (one
    vector name per part, e.g. Qwen2's q/k/v biases) are stacked the same way."""
    n = sum(rows)
    bias = None
    if biases is not None:
        bias = np.concatenate([vector(ckpt, b, r) for b, r in zip(biases, rows, strict=True)])
    infos = []
    fmt = fmt if k % QK8_0 == 0 else F32
    for name, r in zip(names, rows, strict=True):
        info = ckpt.info(name)
        expect_shape(info, (r, k))
        if info.dtype not in DTYPE_CODE:
            raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
        infos.append(info)
    if fmt != F32:
        q = _packed(fmt, n, k, arena)
        row = 0
        for info, r in zip(infos, rows, strict=True):
            quantize_into(ckpt, info, q, fmt, row)
            row += r
        return Linear(n, k, q, None, bias)
    out = np.empty((n, k), dtype=np.float32)
    row = 0
    for info, r in zip(infos, rows, strict=True):
        raw = ckpt.raw(info.name)
        check_finite_words(info, raw)
        out[row : row + r] = to_float32(info, raw)
        row += r
    return Linear(n, k, None, out, bias)


def lm_head_is_stored(tied: bool, ckpt: Checkpoint, embed_name: str, head_name: str, where: str) -> bool:
    """Whether the lm_head is a matrix of its own; else the embedding is the head. The one
    place that reads tie_word_embeddings against the tensors, for every architecture. Untied
    needs the stored head. Tied, transformers ties over a stored head: one equal to the
    embedding (some exports save both) is not loaded again, and one that differs is refused
    rather than silently dropped (the config or the checkpoint is wrong)."""
    names = set(ckpt.names())
    if not tied:
        if head_name not in names:
            raise UnsupportedModelError(
                f"{where}: tie_word_embeddings is false but the checkpoint has no "
                f"{head_name!r} ({ckpt.source})"
            )
        return True
    if head_name in names and embed_name in names:
        a, b = ckpt.info(embed_name), ckpt.info(head_name)
        same = (
            a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(ckpt.raw(embed_name), ckpt.raw(head_name))
        )
        if not same:
            raise UnsupportedModelError(
                f"{where}: tie_word_embeddings is true but {head_name!r} differs from {embed_name!r}; "
                "set tie_word_embeddings to false to use the stored head"
            )
    return False
