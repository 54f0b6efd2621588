"""quantize_q8_0: byte-identical to gguf's Q8_0 quantizer (the ggml reference), refuses
non-finite weights; its raw entry point writes nothing outside its output blocks
(test_writes_only_y.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from hypothesis import given
from hypothesis import strategies as st
from support.kernel_props import (
    NON_FINITE,
    Q8_BLOCK_BYTES,
    QK,
    SEEDS,
    ZERO,
    arrays,
    gguf_q8_0,
    quantized_and_gguf,
    weight_shapes,
)

from pyrustml import kernels
from pyrustml.errors import KernelArgumentError

ROWS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 31, 33]), st.integers(1, 70))
BLOCKS = st.one_of(st.sampled_from([1, 3, 5, 2, 4]), st.integers(1, 12))  # K = 32 * blocks
# Quantize accepts every finite float32: beyond the gemv regimes, scales that overflow fp16
# (amax / 127 > 65504) and values near float32's limit.
QSCALES = st.sampled_from(["1", "1e-3", "1e6", "1e8", "1e37", "1e-30", "1e-40", "mixed", "ties"])


@given(shape=weight_shapes(ROWS, BLOCKS), seed=SEEDS, scale=QSCALES, zero=ZERO)
def test_quantize_is_byte_identical_to_gguf(
    isa: str, shape: tuple[int, int], seed: int, scale: str, zero: float
) -> None:
    w = arrays(seed, shape, scale, zero)
    got, want = quantized_and_gguf(kernels.quantize_q8_0, GGMLQuantizationType.Q8_0, Q8_BLOCK_BYTES, w)
    np.testing.assert_array_equal(got, want)


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, zero=ZERO)
def test_quantize_float16_equals_quantizing_its_float32_value(
    isa: str, rows: int, nb: int, seed: int, zero: float
) -> None:
    """float16 weights are widened exactly to float32 first, as ggml does for f16 tensors."""
    w16 = arrays(seed, (rows, nb * QK), "1e3", zero).astype(np.float16)
    m = kernels.quantize_q8_0(w16)
    np.testing.assert_array_equal(m.blocks, gguf_q8_0(w16.astype(np.float32)))


@given(
    rows=st.integers(1, 6),
    nb=st.integers(1, 4),
    seed=SEEDS,
    bad=NON_FINITE,
    dtype=st.sampled_from([np.float32, np.float16]),
    data=st.data(),
)
def test_quantize_refuses_non_finite_weights(
    isa: str, rows: int, nb: int, seed: int, bad: float, dtype: Any, data: st.DataObject
) -> None:
    w = arrays(seed, (rows, nb * QK)).astype(dtype)
    r = data.draw(st.integers(0, rows - 1), label="row")
    c = data.draw(st.integers(0, nb * QK - 1), label="col")
    w[r, c] = bad
    with pytest.raises(KernelArgumentError, match=r"\bw\b"):
        kernels.quantize_q8_0(w)


@pytest.fixture(scope="module", params=[50257, 262144])
def big(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """A vocabulary-sized matrix with K = 64 and its gguf bytes, computed once per size."""
    w = np.random.default_rng(request.param).standard_normal((request.param, 64)).astype(np.float32)
    w[7] = 0.0  # an all-zero row
    return w, gguf_q8_0(w)


def test_quantize_big_row_counts(isa: str, big: tuple[np.ndarray, np.ndarray]) -> None:
    w, ref = big
    np.testing.assert_array_equal(kernels.quantize_q8_0(w).blocks, ref)
