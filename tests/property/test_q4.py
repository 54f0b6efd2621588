"""Q4_0 weights: quantize_q4_0 is byte-identical to gguf's Q4_0 quantizer, the packed matrix
gives GGML's blocks back, and the Q4_0 products (gemv, gemm, lm_head, argmax) are within the
float bound of the exact product, equal to gemv row by row, and bitwise equal to 'ref' on every
kernel path (AMX's token groups of 16 included) and thread count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from hypothesis import given
from hypothesis import strategies as st
from support.kernel_props import (
    QK,
    SEEDS,
    ZERO,
    arrays,
    assert_same_as_ref,
    gguf_q8_0,
    gguf_quantize,
    quantized_and_gguf,
    weight_shapes,
)

from pyrustml import kernels
from pyrustml.errors import KernelArgumentError, KernelTypeError

Q4_BYTES = 18
ROWS = st.one_of(st.sampled_from([1, 2, 3, 15, 16, 17, 31, 33]), st.integers(1, 70))
BLOCKS = st.one_of(st.sampled_from([1, 2, 3, 5]), st.integers(1, 12))
SCALES = st.sampled_from(["1", "1e-3", "1e4", "1e-30", "1e-40", "mixed", "ties"])


def gguf_q4_0(w: np.ndarray) -> np.ndarray:
    return gguf_quantize(w, GGMLQuantizationType.Q4_0)


def defined_blocks(w: np.ndarray) -> np.ndarray:
    """(rows, blocks) mask of the blocks where gguf's result is defined: 1 / d finite or d == 0
    (otherwise it multiplies by inf and casts the NaN/inf to uint8)."""
    b = w.reshape(w.shape[0], -1, QK)
    idx = np.abs(b).argmax(axis=-1)[..., None]
    m = np.take_along_axis(b, idx, axis=-1)[..., 0]
    d = m / np.float32(-8)
    with np.errstate(divide="ignore", over="ignore"):
        return np.asarray((d == 0) | np.isfinite(np.float32(1) / d))


@given(shape=weight_shapes(ROWS, BLOCKS), seed=SEEDS, scale=SCALES, zero=ZERO)
def test_quantize_is_byte_identical_to_gguf(
    isa: str, shape: tuple[int, int], seed: int, scale: str, zero: float
) -> None:
    rows, nb = shape[0], shape[1] // QK
    w = arrays(seed, shape, scale, zero)
    got, want = quantized_and_gguf(kernels.quantize_q4_0, GGMLQuantizationType.Q4_0, Q4_BYTES, w)
    ok = defined_blocks(w)
    g, o = got.reshape(rows, nb, Q4_BYTES), want.reshape(rows, nb, Q4_BYTES)
    np.testing.assert_array_equal(g[ok], o[ok])
    # where gguf is undefined (|max| < ~2^-125): d stores a zero and every nibble is 8
    assert (g[~ok][:, 2:] == 0x88).all()
    assert (g[~ok][:, :2].view(np.uint16) & 0x7FFF == 0).all()


def test_quantize_zero_blocks_keep_gguf_sign_of_d() -> None:
    """An all-zero block stores d = -0.0 (0 / -8); one whose first value is -0.0 stores +0.0."""
    w = np.zeros((2, 64), dtype=np.float32)
    w[1, 0] = -0.0
    w[1, 32] = -0.0
    w[0, 40] = 3.0  # a non-zero second block
    got = kernels.quantize_q4_0(w).blocks
    np.testing.assert_array_equal(got, gguf_q4_0(w))
    assert got[0, 0:2].tobytes() == b"\x00\x80"
    assert got[1, 0:2].tobytes() == b"\x00\x00"


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, zero=ZERO)
def test_quantize_float16_equals_quantizing_its_float32_value(
    rows: int, nb: int, seed: int, zero: float
) -> None:
    w16 = arrays(seed, (rows, nb * QK), "1e3", zero).astype(np.float16)
    np.testing.assert_array_equal(kernels.quantize_q4_0(w16).blocks, gguf_q4_0(w16.astype(np.float32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_refuses_non_finite_weights(bad: float) -> None:
    w = np.ones((3, 64), dtype=np.float32)
    w[1, 40] = bad
    with pytest.raises(KernelArgumentError, match="NaN or Inf"):
        kernels.quantize_q4_0(w)


def test_quantize_refuses_bad_shapes_and_types() -> None:
    with pytest.raises(KernelArgumentError, match="multiple of 32"):
        kernels.quantize_q4_0(np.ones((2, 48), dtype=np.float32))
    with pytest.raises(KernelTypeError):
        kernels.quantize_q4_0(np.ones((2, 32), dtype=np.float64))
    with pytest.raises(KernelTypeError, match="Q4Matrix"):
        kernels.gemv_q4_0(kernels.quantize_q8_0(np.ones((2, 32), dtype=np.float32)), np.ones(32, np.float32))
    q = kernels.quantize_q4_0(np.ones((2, 32), dtype=np.float32))
    with pytest.raises(KernelArgumentError):
        kernels.gemv_q4_0(q, np.ones(64, np.float32))


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, scale=st.sampled_from(["1", "mixed"]))
def test_blocks_round_trip_and_dequantize_like_gguf(rows: int, nb: int, seed: int, scale: str) -> None:
    w = arrays(seed, (rows, nb * QK), scale, 0.2)
    m = kernels.quantize_q4_0(w)
    b = m.blocks
    np.testing.assert_array_equal(kernels.Q4Matrix.from_blocks(b, nb * QK).blocks, b)
    want = np.asarray(dequantize(b, GGMLQuantizationType.Q4_0)).reshape(rows, nb * QK)
    np.testing.assert_array_equal(m.dequantize(), want)


def q8_acts(x: np.ndarray) -> np.ndarray:
    """The activations as the products see them: gguf's Q8_0 of x, dequantized (float64)."""
    return np.asarray(dequantize(gguf_q8_0(x), GGMLQuantizationType.Q8_0), dtype=np.float64).reshape(x.shape)


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, t=st.integers(1, 5), scale=st.sampled_from(["1", "1e-3", "1e2"]))
def test_gemv_and_gemm_within_the_float_bound_of_the_exact_product(
    isa: str, rows: int, nb: int, seed: int, t: int, scale: str
) -> None:
    """Each block's integer dot is exact, so the only error is float32 rounding of the per-block
    scale product and of the nb-step fmaf chain: |y - exact| <= 2^-22 * nb * sum |terms| with
    slack, against the float64 product of the dequantized weights and Q8_0 activations."""
    k = nb * QK
    q = kernels.quantize_q4_0(arrays(seed, (rows, k), scale, 0.2))
    x = arrays(seed + 1, (t, k), "1")
    bias = arrays(seed + 2, (rows,))
    wd = q.dequantize().astype(np.float64)
    xd = q8_acts(x)
    exact = xd @ wd.T
    bound = (np.abs(xd) @ np.abs(wd).T) * (nb + 2) * 2.0**-22 + 1e-30
    y = kernels.gemm_q4_0(q, x)
    assert (np.abs(y - exact) <= bound).all()
    for j in range(t):
        np.testing.assert_array_equal(kernels.gemv_q4_0(q, x[j]), y[j])
    yb = kernels.gemv_q4_0(q, x[0], bias)
    np.testing.assert_array_equal(yb, (y[0] + bias).astype(np.float32))
    np.testing.assert_array_equal(kernels.lmhead_q4_0(q, x[0]), y[0])
    idx, val = kernels.lmhead_argmax_q4_0(q, x[0])
    assert idx == int(np.argmax(y[0])) and val == y[0][idx]


@given(
    rows=ROWS,
    nb=st.one_of(st.sampled_from([1, 2, 3, 257, 258]), st.integers(1, 12)),
    # up to 50 tokens: AMX works in groups of 16 and hands the rest to the VNNI kernels
    t=st.one_of(st.integers(1, 7), st.sampled_from([16, 17, 31, 32, 33, 48, 50])),
    seed=SEEDS,
    w_scale=SCALES,
    x_scale=SCALES,
    nonfinite=st.booleans(),
    q4=st.booleans(),
)
def test_products_bitwise_equal_ref(
    isa: str, rows: int, nb: int, t: int, seed: int, w_scale: str, x_scale: str, nonfinite: bool, q4: bool
) -> None:
    """Q4_0 and Q8_0 batched products, token counts past the 16-token tiles of the AMX path."""
    k = nb * QK
    w = arrays(seed, (rows, k), w_scale, 0.2)
    x = arrays(seed + 1, (t, k), x_scale, 0.2)
    if nonfinite:
        x[seed % t, seed % k] = np.inf
    bias = arrays(seed + 2, (rows,))

    def run() -> list[Any]:
        if q4:
            q = kernels.quantize_q4_0(w)
            return [
                kernels.gemv_q4_0(q, x[-1], bias),
                kernels.gemm_q4_0(q, x, bias),
                kernels.lmhead_q4_0(q, x[0]),
                np.array(kernels.lmhead_argmax_q4_0(q, x[0])),
            ]
        q8 = kernels.quantize_q8_0(w)
        return [kernels.gemm_q8_0(q8, x, bias), kernels.gemv_q8_0(q8, x[-1])]

    assert_same_as_ref(isa, run)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_q4_products_do_not_depend_on_the_thread_count(isa: str, threads: int) -> None:
    from pyrustml.engine.pool import RuntimeConfig

    q = kernels.quantize_q4_0(arrays(7, (300, 256), "mixed", 0.1))
    x = arrays(8, (40, 256))
    RuntimeConfig(1)
    want = (kernels.gemm_q4_0(q, x), kernels.gemv_q4_0(q, x[3]))
    RuntimeConfig(threads)
    try:
        got = (kernels.gemm_q4_0(q, x), kernels.gemv_q4_0(q, x[3]))
    finally:
        RuntimeConfig(None)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_amx_is_listed_exactly_when_the_cpu_has_it() -> None:
    """The AMX path runs (and the tests above cover it) where cpuid and the kernel allow tiles;
    elsewhere it is reported absent, visibly."""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = f.read()
    cpu_has = " amx_tile" in flags and " amx_int8" in flags
    listed = "amx" in kernels.isa_supported()
    if listed:
        assert cpu_has
    if not cpu_has:
        pytest.skip("AMX absent on this CPU: the amx path is not listed and not tested")
    assert listed, "the CPU has AMX-INT8 but the amx path is not listed (kernel refused tiles?)"
