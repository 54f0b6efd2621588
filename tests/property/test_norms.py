"""layernorm and rmsnorm (offset 0, Llama; offset 1, Gemma's (1 + w)) against float64 oracles."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from support import fp_bounds as fp
from support.kernel_props import SEEDS, arrays

from pyrustml import kernels

ROWS = st.integers(1, 5)
NS = st.one_of(st.sampled_from([1, 2, 3, 31, 33, 64, 768, 1152]), st.integers(1, 300))
SCALES = st.sampled_from(["1", "1e-3", "1e3", "1e6", "1e-30", "1e-40", "mixed"])
EPS = st.sampled_from([1e-5, 1e-6])


def rows_of(x: np.ndarray, one_d: bool) -> np.ndarray:
    return x[0] if one_d else x


@given(
    rows=ROWS, n=NS, seed=SEEDS, scale=SCALES, eps=EPS, one_d=st.booleans(), zero=st.sampled_from([0.0, 0.3])
)
def test_layernorm_matches_float64(
    isa: str, rows: int, n: int, seed: int, scale: str, eps: float, one_d: bool, zero: float
) -> None:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta.

    Derivation (ops.c): mean and var are summed in double (relative error <= (n + 2) 2^-53), the
    mean is rounded to float32 m (|m - mean| <= U32 |mean| + that), inv = fl32(1 / sqrt(var + eps))
    (relative U32 + (n + 8) 2^-53), then x - m, * inv, * gamma, + beta round once each. So
      |y - z| <= |gamma| inv_exact (e_m + |x - mean| (3 U32 + e_inv)) + U32 (|z| + |beta|) (1 + U32)
    with e_m = |m - mean| bound, plus 2^-150 for each rounding that underflows, scaled by what
    multiplies it afterwards: 2^-150 (inv |gamma| + |gamma| + 2).
    """
    if one_d:
        rows = 1
    x = arrays(seed, (rows, n), scale, zero)
    g = arrays(seed + 1, (n,), "1")
    b = arrays(seed + 2, (n,), "1")
    y = kernels.layernorm(rows_of(x, one_d), g, b, eps)
    assert y.shape == rows_of(x, one_d).shape and y.dtype == np.float32
    xd = x.astype(np.float64)
    mean = xd.mean(axis=1, keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=1, keepdims=True)
    e32 = float(np.float32(eps))
    inv = 1.0 / np.sqrt(var + e32)
    z = (xd - mean) * inv * g + b
    u, u64 = fp.U32, fp.U64
    e_m = u * np.abs(mean) + (n + 2) * u64 * np.abs(xd).mean(axis=1, keepdims=True)
    e_inv = u + (n + 8) * u64
    ag = np.abs(g.astype(np.float64))
    bound = ag * inv * (e_m + np.abs(xd - mean) * (3 * u + e_inv)) + u * (np.abs(z) + np.abs(b)) * (1 + u)
    bound = bound * fp.SECOND_ORDER + fp.TINY32 * (inv * ag + ag + 2)
    assert (np.abs(y.reshape(rows, n) - z) <= bound).all()


@given(
    rows=ROWS,
    n=NS,
    seed=SEEDS,
    scale=SCALES,
    eps=EPS,
    offset=st.sampled_from([0.0, 1.0]),
    one_d=st.booleans(),
    zero=st.sampled_from([0.0, 0.3]),
)
def test_rmsnorm_matches_float64(
    isa: str, rows: int, n: int, seed: int, scale: str, eps: float, offset: float, one_d: bool, zero: float
) -> None:
    """y = x / sqrt(mean(x^2) + eps) * (offset + w).

    Derivation (ops.c): the sum of squares is in double ((n + 2) 2^-53), inv = fl32(1 / sqrt(...))
    (relative U32 + (n + 8) 2^-53), offset + w, x * inv and the last product round once each:
    |y - z| <= |z| (4 U32 + (n + 8) 2^-53) to first order, plus 2^-150 per underflowing rounding
    scaled by what multiplies it afterwards: 2^-150 (|offset + w| + 1).
    """
    if one_d:
        rows = 1
    x = arrays(seed, (rows, n), scale, zero)
    w = arrays(seed + 1, (n,), "1")
    y = kernels.rmsnorm(rows_of(x, one_d), w, eps, offset)
    assert y.shape == rows_of(x, one_d).shape and y.dtype == np.float32
    xd = x.astype(np.float64)
    inv = 1.0 / np.sqrt((xd * xd).mean(axis=1, keepdims=True) + float(np.float32(eps)))
    ow = offset + w.astype(np.float64)
    z = xd * inv * ow
    bound = np.abs(z) * (4 * fp.U32 + (n + 8) * fp.U64) * fp.SECOND_ORDER + fp.TINY32 * (np.abs(ow) + 1)
    assert (np.abs(y.reshape(rows, n) - z) <= bound).all()


@given(rows=ROWS, n=NS, seed=SEEDS, offset=st.sampled_from([0.0, 1.0]))
def test_norms_of_zero_rows(isa: str, rows: int, n: int, seed: int, offset: float) -> None:
    """All-zero rows (eps > 0): rmsnorm gives 0, layernorm gives exactly beta."""
    x = np.zeros((rows, n), np.float32)
    w = arrays(seed, (n,), "1")
    b = arrays(seed + 1, (n,), "1")
    np.testing.assert_array_equal(kernels.rmsnorm(x, w, 1e-6, offset), x)
    np.testing.assert_array_equal(kernels.layernorm(x, w, b, 1e-5), np.broadcast_to(b, (rows, n)))


@given(rows=ROWS, n=NS, seed=SEEDS)
def test_rmsnorm_offset_one_is_offset_zero_with_one_plus_w(isa: str, rows: int, n: int, seed: int) -> None:
    """Gemma's offset 1 is exactly the plain norm with weights fl32(1 + w)."""
    x = arrays(seed, (rows, n), "1")
    w = arrays(seed + 1, (n,), "1")
    np.testing.assert_array_equal(
        kernels.rmsnorm(x, w, 1e-6, 1.0), kernels.rmsnorm(x, np.float32(1.0) + w, 1e-6, 0.0)
    )
