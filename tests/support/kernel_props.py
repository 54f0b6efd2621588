"""What the kernel property tests (tests/property) share: the seeded input arrays and the
hypothesis strategies several files draw from, bitwise views of results, running a computation on
a forced kernel path, and gguf's numpy Q8_0 quantizer as an oracle independent of libq8.

The error analysis the tolerances are built from is its neighbour fp_bounds.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from hypothesis import strategies as st

from pyrustml import kernels
from support.fp_bounds import QK

Q8_BLOCK_BYTES = 34  # fp16 scale + 32 int8 quants
SEEDS = st.integers(0, 2**32 - 1)
ZERO = st.sampled_from([0.0, 0.0, 0.3])  # fraction of zeroed blocks (and rows): none twice as often
NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf])


def weight_shapes(
    rows: st.SearchStrategy[int], blocks: st.SearchStrategy[int]
) -> st.SearchStrategy[tuple[int, int]]:
    """(rows, K) of a weight matrix, K = 32 * blocks."""
    return st.tuples(rows, blocks.map(lambda nb: nb * QK))


def bits(a: Any) -> np.ndarray:
    """float32 values as their uint32 bit patterns: equality of these is bitwise, NaNs included."""
    return np.ascontiguousarray(a).view(np.uint32)


def raw(a: Any) -> np.ndarray:
    """The bytes of a result of any dtype: comparing them is bitwise equality, NaN payloads too."""
    return np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=np.uint8)


def same_float(a: float, b: float) -> bool:
    """a and b are the same float32, or both NaN."""
    return bool(np.float32(a).view(np.uint32) == np.float32(b).view(np.uint32)) or (
        bool(np.isnan(a)) and bool(np.isnan(b))
    )


def on_path(name: str, fn: Callable[[], list[Any]]) -> list[np.ndarray]:
    """fn's results (as raw bytes) with kernel path `name` forced; the active path is restored."""
    before = kernels.isa_active()
    kernels.set_isa(name)
    try:
        return [raw(r) for r in fn()]
    finally:
        kernels.set_isa(before)


def assert_same_as_ref(isa: str, fn: Callable[[], list[Any]]) -> None:
    """Every result of fn on path `isa` is bitwise the one on 'ref'."""
    got = on_path(isa, fn)
    ref = on_path("ref", fn)
    assert len(got) == len(ref)
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {i} on {isa} differs from ref")


def gguf_quantize(w: np.ndarray, kind: GGMLQuantizationType) -> np.ndarray:
    """gguf's numpy quantizer, uint8 (N, K // 32 * block bytes). Blocks whose scale is so small
    that 1 / d overflows warn inside gguf (libq8 gives them the same zero quants)."""
    with np.errstate(all="ignore"):
        return np.asarray(quantize(w, kind))


def gguf_q8_0(w: np.ndarray) -> np.ndarray:
    return gguf_quantize(w, GGMLQuantizationType.Q8_0)


def quantized_and_gguf(
    quantize: Callable[[np.ndarray], Any], kind: GGMLQuantizationType, block_bytes: int, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(libq8's blocks of w, gguf's), after checking the matrix libq8 returns: w's shape, and
    uint8 blocks of block_bytes per 32 weights."""
    m = quantize(w)
    rows, k = w.shape
    assert m.shape == (rows, k)
    assert m.blocks.dtype == np.uint8
    assert m.blocks.shape == (rows, k // QK * block_bytes)
    return np.asarray(m.blocks), gguf_quantize(w, kind)


def dequantized(q: kernels.Q8Matrix) -> np.ndarray:
    """The dequantized weights by gguf (an implementation independent of libq8), float64."""
    return np.asarray(dequantize(q.blocks, GGMLQuantizationType.Q8_0), dtype=np.float64)


def assert_ieee_like(y: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> None:
    """NaN exactly where the oracle is NaN, infinities equal, finite values finite and within bound."""
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    inf = np.isinf(ref)
    np.testing.assert_array_equal(y[inf], ref[inf])
    fin = np.isfinite(ref)
    assert np.isfinite(y[fin]).all()
    assert (np.abs(y[fin] - ref[fin]) <= bound[fin]).all()


_MIXED_EXPONENTS = np.array([-40.0, -30.0, -3.0, 0.0, 3.0, 6.0])
_CLIP = 4.0  # normal draws are clipped to +-4 so "1e6" stays below the fp16 scale limit


def arrays(seed: int, shape: tuple[int, ...], scale: str = "1", zero_frac: float = 0.0) -> np.ndarray:
    """float32 array: clipped normals times a magnitude regime; whole 32-element blocks of the last
    axis (when it is a multiple of 32), or single elements otherwise, zeroed with probability
    zero_frac, and for zero_frac > 0 whole leading-axis rows too.

    scale is a number ("1", "1e6": the largest whose Q8_0 scale still fits fp16, 4e6 / 127 <
    65504; "1e-30": scales that underflow fp16; "1e-40": float32 subnormals), "mixed" (those
    magnitudes block by block) or "ties" (every Q8_0 quant a rounding tie)."""
    rng = np.random.default_rng(seed)
    a = np.clip(rng.standard_normal(shape), -_CLIP, _CLIP)
    last = shape[-1]
    grain = QK if last % QK == 0 else 1
    groups = (*shape[:-1], last // grain)
    if scale == "ties":
        # Q8_0 rounding ties: each block holds +-127 and half-integers, times a power of two, so
        # d = amax / 127 is that power of two and every x / d is exactly k + 1/2 (or +-127).
        a = (rng.integers(-126, 126, size=shape) + 0.5).astype(np.float64)
        if grain == QK:
            blocks = a.reshape(*groups, QK)
            blocks[..., 0] = np.where(rng.random(groups) < 0.5, -127.0, 127.0)
            a = blocks.reshape(shape) * np.repeat(2.0 ** rng.integers(-20, 10, size=groups), QK, axis=-1)
    elif scale == "mixed":
        s = 10.0 ** rng.choice(_MIXED_EXPONENTS, size=groups)
        a = a * np.repeat(s, grain, axis=-1)
    else:
        a = a * float(scale)
    if zero_frac > 0.0:
        keep = rng.random(groups) >= zero_frac
        a = a * np.repeat(keep, grain, axis=-1)
        if len(shape) > 1:
            rows = rng.random(shape[0]) < zero_frac
            a[rows] = 0.0
    return a.astype(np.float32)
