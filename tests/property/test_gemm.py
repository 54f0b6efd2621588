"""gemm_q8_0: row t is bitwise gemv_q8_0(x[t]) (whatever the tiling), within the Q8_0 bound of
the float64 oracle, non-finite rows stay in their row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fp_bounds import q8_dot_bound
from support.kernel_props import NON_FINITE, QK, SEEDS, ZERO, arrays, bits, dequantized

from pyrustml import kernels

# Row counts around the 4-row register tiles and the 16- (AVX2) and 64-row (AVX-512) groups.
ROWS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 15, 16, 17, 31, 33, 63, 64, 65, 129]), st.integers(1, 70))
BLOCKS = st.one_of(st.sampled_from([1, 3, 5, 2, 4]), st.integers(1, 10))
SCALES = st.sampled_from(["1", "1e-3", "1e6", "1e-30", "1e-40", "mixed", "ties"])


@given(
    rows=ROWS,
    # token counts around the 3-token tiles of the AVX-512 kernels
    t=st.integers(1, 8),
    nb=BLOCKS,
    seed=SEEDS,
    w_scale=SCALES,
    x_scale=SCALES,
    zero=ZERO,
    with_bias=st.booleans(),
)
def test_gemm_rows_are_gemv_and_within_the_q8_bound(
    isa: str, rows: int, t: int, nb: int, seed: int, w_scale: str, x_scale: str, zero: float, with_bias: bool
) -> None:
    """Y[t] == gemv_q8_0(W, X[t]) bit for bit (q8.h), hence within the same bound as gemv:
    |Y[t] - Wq @ X[t]| <= conftest.q8_dot_bound (derivation in test_gemv and there)."""
    k = nb * QK
    q = kernels.quantize_q8_0(arrays(seed, (rows, k), w_scale, zero))
    x = arrays(seed + 1, (t, k), x_scale, zero)
    bias = arrays(seed + 2, (rows,)) if with_bias else None
    y = kernels.gemm_q8_0(q, x, bias)
    assert y.dtype == np.float32 and y.shape == (t, rows)
    wq = dequantized(q)
    for j in range(t):
        np.testing.assert_array_equal(bits(y[j]), bits(kernels.gemv_q8_0(q, x[j], bias)))
        ref = wq @ x[j].astype(np.float64) + (0.0 if bias is None else bias)
        assert (np.abs(y[j] - ref) <= q8_dot_bound(wq, x[j], bias)).all()


@given(rows=ROWS, t=st.integers(2, 7), nb=BLOCKS, seed=SEEDS, bad=NON_FINITE, data=st.data())
def test_gemm_non_finite_activation_poisons_only_its_row(
    isa: str, rows: int, t: int, nb: int, seed: int, bad: float, data: st.DataObject
) -> None:
    k = nb * QK
    q = kernels.quantize_q8_0(arrays(seed, (rows, k), "1", 0.3))
    x = arrays(seed + 1, (t, k))
    hit = data.draw(st.integers(0, t - 1), label="token")
    x[hit, data.draw(st.integers(0, k - 1), label="position")] = bad
    y = kernels.gemm_q8_0(q, x)
    assert np.isnan(y[hit]).all()
    for j in range(t):
        if j != hit:
            assert np.isfinite(y[j]).all()
            np.testing.assert_array_equal(y[j], kernels.gemv_q8_0(q, x[j]))


@pytest.fixture(scope="module", params=[50257, 262144])
def big(request: pytest.FixtureRequest) -> tuple[kernels.Q8Matrix, np.ndarray]:
    """A vocabulary-sized Q8_0 matrix (K = 64) and 4 activations, built once per size."""
    rng = np.random.default_rng(request.param)
    q = kernels.quantize_q8_0(rng.standard_normal((request.param, 64)).astype(np.float32))
    return q, rng.standard_normal((4, 64)).astype(np.float32)


def test_gemm_big_row_counts(isa: str, big: tuple[kernels.Q8Matrix, np.ndarray]) -> None:
    q, x = big
    y = kernels.gemm_q8_0(q, x)
    for j in range(4):
        np.testing.assert_array_equal(bits(y[j]), bits(kernels.gemv_q8_0(q, x[j])))


# Long rows: the driver prepares up to 256 activation blocks (one token of K <= 8192) on its
# stack; K = 8192 is exactly that, 8224 (257 blocks, odd) and 16416 take the heap path, and so
# does every t * K / 32 above 256 blocks.
LONG_KS = [8192, 8224, 16416]


@pytest.mark.parametrize("k", LONG_KS)
def test_long_rows(isa: str, k: int) -> None:
    q = kernels.quantize_q8_0(arrays(k, (5, k), "mixed", 0.1))
    x = arrays(k + 1, (4, k), "1", 0.1)
    wq = dequantized(q)
    y = kernels.gemm_q8_0(q, x)
    for j in range(4):
        yv = kernels.gemv_q8_0(q, x[j])
        np.testing.assert_array_equal(bits(y[j]), bits(yv))
        assert (np.abs(yv - wq @ x[j].astype(np.float64)) <= q8_dot_bound(wq, x[j])).all()
