"""gemv_f32 / gemm_f32: within the float32 summation bound of the float64 oracle, NaN and Inf
propagate as IEEE arithmetic says, gemm rows are bitwise gemv."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import fp_bounds as fp
from support.kernel_props import NON_FINITE, SEEDS, ZERO, arrays, assert_ieee_like, bits

from pyrustml import kernels

ROWS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 15, 16, 17, 31, 33]), st.integers(1, 50))
# f32 products take any K: around the 16-lane main loop and its scalar tail.
KS = st.one_of(st.sampled_from([1, 2, 15, 16, 17, 31, 32, 33, 96, 160]), st.integers(1, 300))
TOKENS = st.integers(1, 7)
SCALES = st.sampled_from(["1", "1e-3", "1e6", "1e-30", "1e-40", "mixed"])


@given(rows=ROWS, k=KS, seed=SEEDS, w_scale=SCALES, x_scale=SCALES, zero=ZERO, with_bias=st.booleans())
def test_gemv_f32_within_the_summation_bound(
    isa: str, rows: int, k: int, seed: int, w_scale: str, x_scale: str, zero: float, with_bias: bool
) -> None:
    """|gemv_f32(W, x) - W @ x| <= gamma_m sum_i |w_i x_i| + (K + 15) 2^-150 (+ bias rounding).

    Derivation: each product enters the sum inside one fma (exact product, one rounding), and
    every term passes through at most m = K // 16 lane fmas + 4 fold levels + K % 16 tail fmas
    roundings (kernels_ref.c), so the relative rounding errors add up to gamma_m sum |terms|;
    each of the K fmas and 15 fold adds may also underflow, erring by 2^-150 absolute, and
    these only add up. The bias is one more rounding.
    """
    w = arrays(seed, (rows, k), w_scale, zero)
    x = arrays(seed + 1, (k,), x_scale, zero)
    bias = arrays(seed + 2, (rows,)) if with_bias else None
    y = kernels.gemv_f32(w, x, bias)
    assert y.dtype == np.float32 and y.shape == (rows,)
    ref = w.astype(np.float64) @ x.astype(np.float64)
    bound = fp.f32_dot_bound(w, x)
    if bias is not None:
        ref = ref + bias
        bound = bound + fp.U32 * (np.abs(ref) + bound) + fp.TINY32
        np.testing.assert_array_equal(y, kernels.gemv_f32(w, x) + bias)
    assert (np.abs(y - ref) <= bound).all()


@given(rows=ROWS, t=TOKENS, k=KS, seed=SEEDS, scale=SCALES, with_bias=st.booleans())
def test_gemm_f32_rows_are_gemv_f32(
    isa: str, rows: int, t: int, k: int, seed: int, scale: str, with_bias: bool
) -> None:
    w = arrays(seed, (rows, k), scale, 0.2)
    x = arrays(seed + 1, (t, k), "1")
    bias = arrays(seed + 2, (rows,)) if with_bias else None
    y = kernels.gemm_f32(w, x, bias)
    assert y.dtype == np.float32 and y.shape == (t, rows)
    for j in range(t):
        np.testing.assert_array_equal(bits(y[j]), bits(kernels.gemv_f32(w, x[j], bias)))
    if bias is None:
        ref = x.astype(np.float64) @ w.astype(np.float64).T
        bound = np.stack([fp.f32_dot_bound(w, x[j]) for j in range(t)])
        assert (np.abs(y - ref) <= bound).all()


@given(rows=ROWS, k=KS, seed=SEEDS, n_bad=st.integers(1, 4), data=st.data())
def test_gemv_f32_non_finite_values_follow_ieee(
    isa: str, rows: int, k: int, seed: int, n_bad: int, data: st.DataObject
) -> None:
    """NaN, +Inf and -Inf in W or x: an output is NaN exactly where the float64 oracle's is,
    +-Inf where it is +-Inf (no finite overflow at these magnitudes), finite ones within bound."""
    w = arrays(seed, (rows, k), "1", 0.3)
    x = arrays(seed + 1, (k,), "1", 0.3)
    for _ in range(n_bad):
        target = data.draw(st.sampled_from(["w", "x"]), label="array")
        value = data.draw(NON_FINITE, label="value")
        if target == "w":
            w[data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, k - 1))] = value
        else:
            x[data.draw(st.integers(0, k - 1))] = value
    y = kernels.gemv_f32(w, x)
    with np.errstate(invalid="ignore"):
        ref = (w.astype(np.float64) * x.astype(np.float64)).sum(axis=1)
    with np.errstate(invalid="ignore"):
        finite_w = np.where(np.isfinite(w), w, 0.0)
    assert_ieee_like(y, ref, fp.f32_dot_bound(finite_w, np.where(np.isfinite(x), x, 0.0)))


@pytest.fixture(scope="module", params=[50257, 262144])
def big(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A vocabulary-sized matrix (K = 64), 2 activations, the float64 oracle and its bound."""
    rng = np.random.default_rng(request.param)
    w = rng.standard_normal((request.param, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    return w, x, ref, np.stack([fp.f32_dot_bound(w, x[j]) for j in range(2)])


def test_f32_big_row_counts(isa: str, big: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    w, x, ref, bound = big
    y = kernels.gemm_f32(w, x)
    for j in range(2):
        yv = kernels.gemv_f32(w, x[j])
        np.testing.assert_array_equal(bits(y[j]), bits(yv))
        assert (np.abs(yv - ref[j]) <= bound[j]).all()
