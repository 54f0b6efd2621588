"""Weights read from a checkpoint into engine Linears: quantized straight from the checkpoint's bytes.

Loading goes tensor by tensor from the mmap'ed file into the final allocation (libq8 converts
f16/bf16 and transposes HF Conv1D [in, out] weights while quantizing), so no float32 copy of a
whole Q8_0 model ever exists.
"""

from __future__ import annotations

import os
from typing import Final

import numpy as np

from ..engine._ffi import ffi, lib
from ..engine.kernels import QK8_0, Q8Matrix, WeightArena, check
from ..engine.linear import Linear
from ..errors import ModelFormatError
from .safetensors import Checkpoint, TensorInfo, to_float32

# libq8's source dtypes (q8.h Q8_DTYPE_*) by safetensors name
DTYPE_CODE: Final[dict[str, int]] = {
    "F32": lib.Q8_DTYPE_F32,
    "F16": lib.Q8_DTYPE_F16,
    "BF16": lib.Q8_DTYPE_BF16,
}
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
    """Refuse NaN/Inf weights at load, on the stored words, and with q8 also weights too large
    for a Q8_0 block scale.

    Two integer reductions and no temporary array (this runs over the whole embedding table):
    the signed maximum of the words is the largest positive magnitude, and the unsigned maximum
    minus the sign bit the largest negative one."""
    info = ckpt.info(name)
    words = _WORDS.get(info.dtype)
    if words is None:
        raise ModelFormatError(f"{_where(info)} has dtype {info.dtype}; expected F32, F16 or BF16")
    raw = ckpt.raw(name)
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
    quantize = quantize and k % QK8_0 == 0
    check_finite(ckpt, name, q8=quantize)
    bias = vector(ckpt, bias_name, n) if bias_name is not None else None
    if quantize:
        q = Q8Matrix(n, k, arena)
        src = ffi.from_buffer("char[]", ckpt.raw(name))
        code = DTYPE_CODE[info.dtype]
        rc = lib.q8_quantize_packed(src, code, n, k, 1 if transposed else 0, q.ptr(), n, 0)
        check(rc, f"quantizing {name!r}")
        ckpt.release(name)
        return Linear(n, k, q, None, bias)
    w = to_float32(info, ckpt.raw(name))
    wf = np.ascontiguousarray(w.T if transposed else w)
    ckpt.release(name)
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
        check_finite(ckpt, name, q8=quantize)
        infos.append(info)
    if quantize:
        q = Q8Matrix(n, k, arena)
        row = 0
        for info, r in zip(infos, rows, strict=True):
            src = ffi.from_buffer("char[]", ckpt.raw(info.name))
            rc = lib.q8_quantize_packed(src, DTYPE_CODE[info.dtype], r, k, 0, q.ptr(), n, row)
            check(rc, f"quantizing {info.name!r}")
            ckpt.release(info.name)
            row += r
        return Linear(n, k, q, None, None)
    parts = []
    for info in infos:
        parts.append(to_float32(info, ckpt.raw(info.name)))
        ckpt.release(info.name)
    return Linear(n, k, None, np.ascontiguousarray(np.concatenate(parts, axis=0)), None)
