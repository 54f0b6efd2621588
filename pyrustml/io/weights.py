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
from ..engine.kernels import QK8_0, Q8Matrix, WeightArena
from ..engine.linear import Linear
from ..errors import ModelFormatError, UnsupportedModelError
from .config import Fields
from .safetensors import CHUNK_BYTES, DTYPES, Checkpoint, TensorInfo, to_float32

DTYPE_CODE: Final[dict[str, int]] = {"F32": 0, "F16": 1, "BF16": 2}
# Q8_0 stores each block's scale max|w| / 127 as fp16 (largest finite value 65504): a weight beyond
# 65504 x 127 would get an infinite scale and turn every output it touches into Inf/NaN.
Q8_MAX_ABS: Final = 65504.0 * 127.0
# Per dtype: (signed and unsigned views of the words, sign bit, magnitude bits of Inf, the first
# magnitude bits above Q8_MAX_ABS). Positive floats order like their bit patterns, so magnitudes
# can be compared as integers.
_F32_Q8_LIMIT: Final = int(np.array([Q8_MAX_ABS], dtype=np.float32).view(np.uint32)[0])
_WORDS: Final[dict[str, tuple[str, str, int, int, int]]] = {
    "F32": ("<i4", "<u4", 1 << 31, 0x7F800000, _F32_Q8_LIMIT + 1),
    "F16": ("<i2", "<u2", 1 << 15, 0x7C00, 0x7C00),  # 65504 < Q8_MAX_ABS: never out of range
    "BF16": ("<i2", "<u2", 1 << 15, 0x7F80, (_F32_Q8_LIMIT >> 16) + 1),
}


def _where(info: TensorInfo) -> str:
    return f"{os.path.basename(info.path)}: tensor {info.name!r}"


def check_finite(ckpt: Checkpoint, name: str, *, q8: bool = False) -> None:
    """Refuse NaN/Inf weights at load (the whole tensor, read once for the check)."""
    check_finite_words(ckpt.info(name), ckpt.raw(name), q8=q8)


def check_finite_words(info: TensorInfo, raw: np.ndarray, *, q8: bool = False) -> None:
    """Refuse NaN/Inf in these stored words of a tensor (all of it, or a chunk), and with q8 also
    weights too large for a Q8_0 block scale.

    Two integer reductions and no temporary array: the signed maximum of the words is the
    largest positive magnitude, and the unsigned maximum minus the sign bit the largest negative
    one."""
    words = _WORDS.get(info.dtype)
    if words is None:
        raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
    if raw.size == 0:
        return
    signed, unsigned, sign, inf_bits, q8_bits = words
    hi_pos = int(raw.view(signed).max())
    hi_neg = int(raw.view(unsigned).max()) - sign
    top = max(hi_pos, hi_neg)
    if top >= inf_bits:
        raise ModelFormatError(f"{_where(info)} holds NaN or Inf")
    if q8 and top >= q8_bits:
        raise ModelFormatError(
            f"{_where(info)} holds weights of magnitude above {Q8_MAX_ABS:.0f}, beyond what a Q8_0 "
            "block scale (fp16) can represent; load it with quant='f32'"
        )


def chunk_rows(info: TensorInfo, k: int) -> int:
    """Rows per chunked read: about CHUNK_BYTES, a multiple of 16 (the packed row group)."""
    row_bytes = max(1, k * DTYPES[info.dtype][1])
    return max(16, CHUNK_BYTES // row_bytes // 16 * 16)


def quantize_into(ckpt: Checkpoint, info: TensorInfo, q: Q8Matrix, n: int, k: int, row0: int) -> None:
    """Quantize the (rows, k) tensor `info` into rows row0.. of the packed n x k matrix q, chunk
    by chunk, each chunk checked for NaN/Inf and the Q8_0 range first."""
    rows = info.shape[0]
    step = chunk_rows(info, k)
    code = DTYPE_CODE[info.dtype]
    for r in range(0, rows, step):
        part = ckpt.rows(info.name, r, min(rows, r + step))
        check_finite_words(info, part, q8=True)
        src = ffi.from_buffer("char[]", part)
        rc = lib.q8_quantize_packed(src, code, part.shape[0], k, 0, q.ptr(), n, row0 + r)
        if rc != 0:
            raise MemoryError(f"quantizing {info.name!r} failed ({rc})")


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
    quantize: bool,
    arena: WeightArena | None = None,
) -> Linear:
    """A Linear of shape (n, k) from tensor `name`, stored (n, k), or (k, n) when transposed
    (HF Conv1D). Q8_0 when `quantize` and k % 32 == 0 (carved from `arena` when given);
    float32 otherwise."""
    info = ckpt.info(name)
    expect_shape(info, (k, n) if transposed else (n, k))
    if info.dtype not in DTYPE_CODE:
        raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
    quantize = quantize and k % QK8_0 == 0
    bias = vector(ckpt, bias_name, n) if bias_name is not None else None
    if quantize and not transposed:
        q = Q8Matrix(n, k, arena)
        quantize_into(ckpt, info, q, n, k, 0)
        return Linear(n, k, q, None, bias)
    raw = ckpt.raw(name)
    check_finite_words(info, raw, q8=quantize)
    if quantize:
        q = Q8Matrix(n, k, arena)
        rc = lib.q8_quantize_packed(
            ffi.from_buffer("char[]", raw), DTYPE_CODE[info.dtype], n, k, 1, q.ptr(), n, 0
        )
        if rc != 0:
            raise MemoryError(f"quantizing {name!r} failed ({rc})")
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
    quantize: bool,
    arena: WeightArena | None = None,
) -> Linear:
    """One Linear whose rows are the given (rows_i, k) tensors stacked in order: the QKV and
    gate+up fusions, so a decode step makes one weight pass where it would make several.
    Each part is quantized straight into its row range of the fused matrix."""
    n = sum(rows)
    infos = []
    quantize = quantize and k % QK8_0 == 0
    for name, r in zip(names, rows, strict=True):
        info = ckpt.info(name)
        expect_shape(info, (r, k))
        if info.dtype not in DTYPE_CODE:
            raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
        infos.append(info)
    if quantize:
        q = Q8Matrix(n, k, arena)
        row = 0
        for info, r in zip(infos, rows, strict=True):
            quantize_into(ckpt, info, q, n, k, row)
            row += r
        return Linear(n, k, q, None, None)
    out = np.empty((n, k), dtype=np.float32)
    row = 0
    for info, r in zip(infos, rows, strict=True):
        raw = ckpt.raw(info.name)
        check_finite_words(info, raw)
        out[row : row + r] = to_float32(info, raw)
        row += r
    return Linear(n, k, None, out, None)


def check_lm_head(f: Fields, ckpt: Checkpoint, embed_name: str, head_name: str = "lm_head.weight") -> None:
    """tie_word_embeddings against the tensors: untied needs its own lm_head; tied with an
    lm_head that differs from the embedding would be read differently by transformers (it ties
    them, ignoring the stored head), so it is refused rather than guessed."""
    tied = f.bool_("tie_word_embeddings", True)
    names = set(ckpt.names())
    if not tied and head_name not in names:
        raise UnsupportedModelError(
            f"{f.where}: tie_word_embeddings is false but the checkpoint has no {head_name!r} ({ckpt.source})"
        )
    if tied and head_name in names and embed_name in names:
        a, b = ckpt.info(embed_name), ckpt.info(head_name)
        same = (
            a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(ckpt.raw(embed_name), ckpt.raw(head_name))
        )
        if not same:
            raise UnsupportedModelError(
                f"{f.where}: tie_word_embeddings is true but {head_name!r} differs from {embed_name!r}; "
                "set tie_word_embeddings to false to use the stored head"
            )
