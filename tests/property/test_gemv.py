"""gemv_q8_0 against the float64 oracle Wq @ x, with the bound derived from the Q8_0 step;
non-finite activations poison every output."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import quantize
from hypothesis import given
from hypothesis import strategies as st
from support.fp_bounds import q8_dot_bound
from support.kernel_props import NON_FINITE, QK, SEEDS, ZERO, arrays, dequantized

from pyrustml import kernels

ROWS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 31, 33]), st.integers(1, 70))
BLOCKS = st.one_of(st.sampled_from([1, 3, 5, 2, 4]), st.integers(1, 12))  # K = 32, 96, 160, ...
SCALES = st.sampled_from(["1", "1e-3", "1e3", "1e6", "1e-30", "1e-40", "mixed", "ties"])


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, w_scale=SCALES, x_scale=SCALES, zero=ZERO, with_bias=st.booleans())
def test_gemv_within_the_q8_bound(
    isa: str, rows: int, nb: int, seed: int, w_scale: str, x_scale: str, zero: float, with_bias: bool
) -> None:
    """|gemv_q8_0(W, x) - Wq @ x| <= bound, Wq the dequantized W, in float64.

    Derivation (conftest.q8_dot_bound): x is quantized per block of 32 to xq with
    |x_i - xq_i| <= e_i = d32/2 (1 + 510 U32) + 127 max(2^-11 d32, 2^-25)  (the Q8_0 step d32 =
    amax / 127, plus the fp16 rounding of the stored scale). The kernel's exact value is
    sum_b d_w,b d_x,b sum_i qw_i qx_i = Wq @ xq (integer block sums and scale products are exact),
    so the activation quantization contributes at most sum_i |Wq_i| e_i; the float32
    accumulation adds gamma_m sum_i |Wq_i xq_i| with m = nb fmas (one per block, in order);
    a bias adds one rounding; the float64 oracle adds gamma_K(2^-53).
    """
    k = nb * QK
    w = arrays(seed, (rows, k), w_scale, zero)
    x = arrays(seed + 1, (k,), x_scale, zero)
    bias = arrays(seed + 2, (rows,), "1") if with_bias else None
    q = kernels.quantize_q8_0(w)
    y = kernels.gemv_q8_0(q, x, bias)
    assert y.dtype == np.float32 and y.shape == (rows,)
    wq = dequantized(q)
    ref = wq @ x.astype(np.float64)
    if bias is not None:
        ref = ref + bias
    err = np.abs(y.astype(np.float64) - ref)
    assert (err <= q8_dot_bound(wq, x, bias)).all()
    # An all-zero weight row or activation gives exactly 0 (+0.0, then the bias exactly).
    zero_rows = ~wq.any(axis=1) if x.any() else np.ones(rows, dtype=bool)
    expect = np.zeros(rows, np.float32) if bias is None else bias
    np.testing.assert_array_equal(y[zero_rows], expect[zero_rows])


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, x_scale=SCALES)
def test_gemv_bias_is_one_float32_add(isa: str, rows: int, nb: int, seed: int, x_scale: str) -> None:
    """The bias is added once, in float32, after the product: bitwise y + bias."""
    q = kernels.quantize_q8_0(arrays(seed, (rows, nb * QK), "1", 0.2))
    x = arrays(seed + 1, (nb * QK,), x_scale)
    bias = arrays(seed + 2, (rows,), "1e3")
    y = kernels.gemv_q8_0(q, x)
    np.testing.assert_array_equal(kernels.gemv_q8_0(q, x, bias), y + bias)


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, bad=NON_FINITE, with_bias=st.booleans(), data=st.data())
def test_gemv_non_finite_activation_makes_every_output_nan(
    isa: str, rows: int, nb: int, seed: int, bad: float, with_bias: bool, data: st.DataObject
) -> None:
    """Documented in q8.h: a block holding NaN or Inf gets a NaN scale, which poisons every row
    (even all-zero weight rows: NaN * 0 is NaN)."""
    w = arrays(seed, (rows, nb * QK), "1", 0.3)
    x = arrays(seed + 1, (nb * QK,), "1")
    x[data.draw(st.integers(0, nb * QK - 1), label="position")] = bad
    bias = arrays(seed + 2, (rows,), "1") if with_bias else None
    y = kernels.gemv_q8_0(kernels.quantize_q8_0(w), x, bias)
    assert np.isnan(y).all()


@given(nb=BLOCKS, seed=SEEDS, x_scale=SCALES, zero=ZERO)
def test_gemv_quantizes_activations_like_gguf(
    isa: str, nb: int, seed: int, x_scale: str, zero: float
) -> None:
    """Every path's activation quantizer gives gguf's Q8_0 bytes, seen through W = identity.

    Row r of the quantized identity is one block with scale d_w = fp16(1/127) and quant 127 at
    column r, zeros elsewhere. Every other block contributes fmaf(0, 0, acc) = acc, so
    y[r] = fl32(d_w d_x * (127 q_r)) with d_w d_x exact: one rounding of values
    read from gguf's bytes for x, computed here bit for bit in float32.
    """
    k = nb * QK
    x = arrays(seed, (k,), x_scale, zero)
    q = kernels.quantize_q8_0(np.eye(k, dtype=np.float32))
    wb = q.blocks.reshape(k, nb, 34)
    d_w = np.ascontiguousarray(wb[0, 0, :2]).view(np.float16).astype(np.float32)[0]
    with np.errstate(all="ignore"):  # gguf warns on blocks whose 1 / d overflows
        xb = np.asarray(quantize(x[None, :], GGMLQuantizationType.Q8_0)).reshape(nb, 34)
    d_x = np.ascontiguousarray(xb[:, :2]).view(np.float16).astype(np.float32)[:, 0]
    q_x = np.ascontiguousarray(xb[:, 2:]).view(np.int8).astype(np.float32).reshape(k)
    expected = (np.repeat(d_w * d_x, QK) * (np.float32(127) * q_x)).astype(np.float32)
    np.testing.assert_array_equal(kernels.gemv_q8_0(q, x), expected)


@pytest.fixture(scope="module", params=[50257, 262144])
def big(request: pytest.FixtureRequest) -> tuple[kernels.Q8Matrix, np.ndarray, np.ndarray, np.ndarray]:
    """A vocabulary-sized Q8_0 matrix, K = 64, an activation and the oracle's (ref, bound)."""
    n = int(request.param)
    rng = np.random.default_rng(n)
    w = rng.standard_normal((n, 64)).astype(np.float32)
    w[n // 2] = 0.0
    x = rng.standard_normal(64).astype(np.float32)
    q = kernels.quantize_q8_0(w)
    wq = dequantized(q)
    return q, x, wq @ x.astype(np.float64), q8_dot_bound(wq, x)


def test_gemv_big_row_counts(
    isa: str, big: tuple[kernels.Q8Matrix, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    q, x, ref, bound = big
    y = kernels.gemv_q8_0(q, x)
    assert (np.abs(y - ref) <= bound).all()
    assert y[q.shape[0] // 2] == 0.0
