"""What the kernel property tests (tests/property) share: the hypothesis strategies several files
draw from, bitwise views of results, running a computation on a forced kernel path, and gguf's
numpy Q8_0 quantizer as an oracle independent of libq8.

The error-analysis constants and the array maker stay fixtures of tests/property/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from hypothesis import strategies as st

from pyrustml import kernels

QK = 32  # Q8_0 / Q4_0 block length
Q8_BLOCK_BYTES = 34  # fp16 scale + 32 int8 quants
SEEDS = st.integers(0, 2**32 - 1)
ZERO = st.sampled_from([0.0, 0.0, 0.3])  # fraction of zeroed blocks (and rows): none twice as often
NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf])


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
