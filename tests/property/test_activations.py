"""gelu_tanh, geglu, softcap, add and softmax against float64 oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import fp_bounds as fp
from support.kernel_props import SEEDS, arrays, assert_ieee_like

from pyrustml import RuntimeConfig, kernels
from pyrustml.errors import KernelArgumentError

NS = st.one_of(st.sampled_from([1, 2, 3, 31, 33, 1000]), st.integers(1, 300))


def flat_or_rows(rows: int) -> st.SearchStrategy[tuple[int, ...]]:
    """A shape (n,) or (rows, n), n from NS."""
    return st.builds(lambda n, two_d: (rows, n) if two_d else (n,), NS, st.booleans())


SCALES = st.sampled_from(["1", "1e-3", "1e1", "1e3", "1e6", "1e-30", "1e-40", "mixed"])
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715
# Roundings in gelu's tanh argument c1 * (v + c2 * v * v * v): three products for c2 v^3, the
# rounded constants fl(c2) and fl(c1), one add and one multiply (see gelu_oracle).
GELU_ARG_ROUNDINGS = 7


def with_specials(x: np.ndarray, seed: int, count: int) -> np.ndarray:
    """Overwrite `count` random elements of x with NaN, +-Inf or signed zeros."""
    rng = np.random.default_rng(seed)
    flat = x.reshape(-1)
    for _ in range(count):
        flat[rng.integers(0, flat.size)] = SPECIALS[rng.integers(0, SPECIALS.size)]
    return x


def gelu_oracle(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gelu_tanh(v) in float64, bound on |gelu_tanh32(v) - it|) for finite v.

    Derivation (ops.c, 0.5f * v * (1 + q8_tanh(c1 * (v + c2 * v * v * v))), no contraction): the
    argument a = c1 (v + c2 v^3) goes through 3 roundings for v^3 * c2, the rounded constants
    fl(c2) and fl(c1), one add and one multiply: |da| <= 7 U32 c1 (|v| + c2 |v|^3). tanh moves it
    by at most sech^2 * da (sech^2 bounded on [a - da, a + da]), q8_tanh adds < 1.35 ulp <= 3 U32 |t|;
    1 + t, 0.5 v (exact) and the last product round once each:
      |y - g| <= 0.5 |v| (sech^2 da + 2 U32 |t| + U32 |1 + t|) + U32 |g|,
    plus 2^-150 for each rounding that underflows, scaled by what multiplies it afterwards.
    """
    vd = v.astype(np.float64)
    a = SQRT_2_OVER_PI * (vd + GELU_CUBIC * vd**3)
    t = np.tanh(a)
    g = 0.5 * vd * (1.0 + t)
    u = fp.U32
    da = GELU_ARG_ROUNDINGS * u * SQRT_2_OVER_PI * (np.abs(vd) + GELU_CUBIC * np.abs(vd) ** 3)
    dt = fp.sech2_bound(a, da) * da + fp.TANH_ULPS * np.abs(t)
    bound = (0.5 * np.abs(vd) * (dt + u * np.abs(1.0 + t)) + u * np.abs(g)) * fp.SECOND_ORDER
    bound = bound + fp.TINY32 * (4 + np.abs(vd))
    return g, bound


@given(shape=flat_or_rows(2), seed=SEEDS, scale=SCALES, specials=st.integers(0, 3))
def test_gelu_tanh_matches_float64(
    isa: str, shape: tuple[int, ...], seed: int, scale: str, specials: int
) -> None:
    x = with_specials(arrays(seed, shape, scale), seed, specials)
    y = kernels.gelu_tanh(x)
    assert y.shape == x.shape and y.dtype == np.float32
    finite = np.isfinite(x)
    g, bound = gelu_oracle(np.where(finite, x, 0.0))
    # gelu(+inf) = +inf, gelu(-inf) = -inf * 0 = NaN, gelu(NaN) = NaN, as the formula in IEEE.
    with np.errstate(invalid="ignore"):
        g = np.where(finite, g, np.where(x == np.inf, np.inf, np.nan))
    assert_ieee_like(y, g, bound)


@given(n=NS, seed=SEEDS, scale=SCALES, up_scale=st.sampled_from(["1", "1e3", "1e-30"]))
def test_geglu_matches_float64(isa: str, n: int, seed: int, scale: str, up_scale: str) -> None:
    """gelu_tanh(gate) * up: the gelu bound times |up| plus one more rounding."""
    gate = arrays(seed, (n,), scale)
    up = arrays(seed + 1, (n,), up_scale, 0.1)
    y = kernels.geglu(gate, up)
    g, bound = gelu_oracle(gate)
    upd = up.astype(np.float64)
    ref = g * upd
    total = (np.abs(upd) * bound + fp.U32 * np.abs(ref)) * fp.SECOND_ORDER + fp.TINY32
    assert (np.abs(y - ref) <= total).all()
    np.testing.assert_array_equal(y, kernels.gelu_tanh(gate) * up)


@given(
    rows=st.sampled_from([1, 2, 3, 17, 128]),
    n=st.sampled_from([1, 31, 33, 1000, 6912]),
    seed=SEEDS,
    threads=st.sampled_from([1, 2, 3]),
)
def test_geglu_rows_equals_geglu_per_row(isa: str, rows: int, n: int, seed: int, threads: int) -> None:
    """The fused-rows form (large ones spread over the pool) equals geglu row by row, bit for
    bit, whatever the split; so do gelu and geglu over large flat arrays."""
    RuntimeConfig(threads=threads)
    try:
        gu = arrays(seed, (rows, 2 * n), "mixed")
        y = kernels.geglu_rows(gu)
        per_row = [kernels.geglu(np.ascontiguousarray(r[:n]), np.ascontiguousarray(r[n:])) for r in gu]
        np.testing.assert_array_equal(y, np.stack(per_row))
        flat = gu.reshape(-1)
        parts = [kernels.gelu_tanh(flat[i : i + 1000]) for i in range(0, flat.size, 1000)]
        np.testing.assert_array_equal(kernels.gelu_tanh(flat), np.concatenate(parts))
    finally:
        RuntimeConfig()


def test_geglu_rows_refuses_odd_width() -> None:
    with pytest.raises(KernelArgumentError):
        kernels.geglu_rows(np.zeros((2, 5), dtype=np.float32))


@given(
    n=NS,
    seed=SEEDS,
    scale=SCALES,
    cap=st.sampled_from([1.0, 5.0, 30.0, 50.0, 0.1]),
    specials=st.integers(0, 3),
)
def test_softcap_matches_float64(isa: str, n: int, seed: int, scale: str, cap: float, specials: int) -> None:
    """y = cap * tanh(x / cap).

    Derivation: x / cap rounds once (|dr| <= U32 |x / cap| + 2^-150), q8_tanh adds sech^2 dr and
    < 1.35 ulp <= 3 U32 |t|, the product with cap one more rounding:
    |y - z| <= cap (sech^2 dr + 2 U32 |t|) + U32 |z| (+ 2^-150).
    """
    x = with_specials(arrays(seed, (n,), scale), seed, specials)
    y = kernels.softcap(x, cap)
    c = float(np.float32(cap))
    xd = x.astype(np.float64)
    finite = np.isfinite(xd)
    r = np.where(finite, xd, 0.0) / c
    t = np.tanh(r)
    dr = fp.U32 * np.abs(r) + fp.TINY32
    bound = (
        c * (fp.sech2_bound(r, dr) * dr + fp.TANH_ULPS * np.abs(t)) + fp.U32 * np.abs(c * t)
    ) * fp.SECOND_ORDER
    bound = bound + fp.TINY32
    with np.errstate(invalid="ignore"):
        ref = np.where(finite, c * t, c * np.tanh(xd / c))  # +-Inf -> +-cap, NaN -> NaN
    assert_ieee_like(y, ref, bound)
    assert (np.abs(y[np.isfinite(y)]) <= c).all()


@given(shape=flat_or_rows(3), seed=SEEDS, scale=SCALES, specials=st.integers(0, 4))
def test_add_is_ieee_float32_addition(
    isa: str, shape: tuple[int, ...], seed: int, scale: str, specials: int
) -> None:
    """One correctly rounded float32 add per element: bitwise numpy's float32 add (NaNs as NaN)."""
    a = with_specials(arrays(seed, shape, scale), seed, specials)
    b = with_specials(arrays(seed + 1, shape, scale), seed + 1, specials)
    y = kernels.add(a, b)
    assert y.shape == shape and y.dtype == np.float32
    with np.errstate(invalid="ignore"):
        ref = a + b
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(y), nan)
    np.testing.assert_array_equal(y[~nan].view(np.uint32), ref[~nan].view(np.uint32))


@given(
    rows=st.integers(1, 4),
    n=NS,
    seed=SEEDS,
    scale=st.sampled_from(["1", "1e1", "1e2", "1e-30", "mixed"]),
    one_d=st.booleans(),
    neg_inf=st.integers(0, 3),
)
def test_softmax_matches_float64(
    isa: str, rows: int, n: int, seed: int, scale: str, one_d: bool, neg_inf: int
) -> None:
    """p_i = exp(x_i - max) / sum_j exp(x_j - max) per row.

    Derivation (ops.c): with m the row max (exact), e_j = expf(fl(x_j - m)) has relative error
    eps_j <= expm1(U32 |x_j - m|) + 2 U32 (one rounding of the difference, expf within 1 ulp),
    plus 2^-149 absolute where it underflows; the double sum S (>= 1: the max contributes
    expf(0) = 1) has relative error eta <= sum_j (e_j eps_j + 2^-149) / S + n 2^-53; then
    inv = fl32(1 / S) and e_i * inv round once each:
      |y_i - p_i| <= p_i (eps_i + eta + 2 U32) / (1 - eta) + 2^-149 / S + 2^-150.
    -Inf inputs give exactly 0.
    """
    if one_d:
        rows = 1
    x = arrays(seed, (rows, n), scale)
    rng = np.random.default_rng(seed)
    keep = int(rng.integers(0, n))  # a column left finite, so every row has a finite max
    for _ in range(neg_inf if n > 1 else 0):
        col = int(rng.integers(0, n))
        if col != keep:
            x[rng.integers(0, rows), col] = -np.inf
    y = kernels.softmax(x[0] if one_d else x).reshape(rows, n)
    xd = x.astype(np.float64)
    m = xd.max(axis=1, keepdims=True)
    e = np.exp(xd - m)  # -inf - m = -inf: exp gives 0
    s = e.sum(axis=1, keepdims=True)
    p = e / s
    u = fp.U32
    with np.errstate(invalid="ignore"):
        eps = np.where(np.isfinite(xd), np.expm1(u * np.abs(xd - m)), 0.0) + fp.LIBM_ULPS
    eta = (e * eps + 2 * fp.TINY32).sum(axis=1, keepdims=True) / s + n * fp.U64
    bound = p * (eps + eta + 2 * u) / (1 - eta) * fp.SECOND_ORDER + 2 * fp.TINY32 / s + fp.TINY32
    assert (np.abs(y - p) <= bound).all()
    np.testing.assert_array_equal(y[np.isneginf(x)], 0.0)
    assert (y >= 0).all()


@given(rows=st.integers(1, 4), n=st.integers(1, 100), seed=SEEDS, bad=st.sampled_from([np.nan, np.inf]))
def test_softmax_nan_or_inf_poisons_its_row(isa: str, rows: int, n: int, seed: int, bad: float) -> None:
    """IEEE, as the float64 formula: NaN anywhere or +Inf (Inf - Inf) makes the row NaN."""
    x = arrays(seed, (rows, n))
    r = seed % rows
    x[r, seed % n] = bad
    y = kernels.softmax(x)
    assert np.isnan(y[r]).all()
    others = np.arange(rows) != r
    assert np.isfinite(y[others]).all()


def silu_oracle(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(silu(v) = v sigmoid(v) in float64, bound on |silu32(v) - it|) for finite v.

    Derivation (ops.c silu1): e = e^-|v| from q8_exp_neg (<= 1.5 ulp = 3 U32 relative); 1 + e rounds
    once, so it is within (3 U32 e + U32 (1 + e)) <= 4 U32 relative of the exact 1 + e^-|v|; the
    quotient (1 / (1 + e) for v >= 0, e / (1 + e) below) adds one rounding and, for v < 0, e's own
    3 U32: sigmoid is within 8 U32 relative; v * s rounds once more: 9 U32 |silu|. When e falls
    into the subnormals (|v| > 87) its rounding is absolute, 2^-150 per step, times |v|."""
    vd = v.astype(np.float64)
    with np.errstate(over="ignore"):  # e^-v overflows to inf for v < -709: silu is then -0
        ref = vd / (1.0 + np.exp(-vd))
    bound = 9 * fp.U32 * np.abs(ref) * fp.SECOND_ORDER + fp.TINY32 * (4 + 4 * np.abs(vd))
    return ref, bound


@given(
    rows=st.sampled_from([1, 2, 3, 17]),
    n=NS,
    seed=SEEDS,
    scale=SCALES,
    up_scale=st.sampled_from(["1", "1e3", "1e-30"]),
)
def test_swiglu_rows_matches_float64(
    isa: str, rows: int, n: int, seed: int, scale: str, up_scale: str
) -> None:
    """silu(gate) * up row by row over a fused (rows, 2n) gate|up: the silu bound times |up| plus
    the product's rounding."""
    gate = arrays(seed, (rows, n), scale)
    up = arrays(seed + 1, (rows, n), up_scale, 0.1)
    y = kernels.swiglu_rows(np.ascontiguousarray(np.concatenate([gate, up], axis=1)))
    assert y.shape == (rows, n) and y.dtype == np.float32
    s, bound = silu_oracle(gate)
    upd = up.astype(np.float64)
    ref = s * upd
    total = (np.abs(upd) * bound + fp.U32 * np.abs(ref)) * fp.SECOND_ORDER + fp.TINY32
    assert (np.abs(y - ref) <= total).all()


def test_swiglu_specials_follow_ieee() -> None:
    """As torch's v / (1 + e^-v): silu(+inf) = +inf, silu(-inf) = NaN, NaN stays NaN; silu(0) = 0."""
    gate = np.array([[np.inf, -np.inf, np.nan, 0.0, -0.0, 100.0, -100.0]], dtype=np.float32)
    y = kernels.swiglu_rows(np.concatenate([gate, np.ones_like(gate)], axis=1))[0]
    assert y[0] == np.inf and np.isnan(y[1]) and np.isnan(y[2])
    assert y[3] == 0.0 and y[4] == 0.0 and y[5] == np.float32(100.0)
    assert -1e-40 < y[6] <= 0.0


@given(
    rows=st.sampled_from([1, 2, 3, 17, 128]),
    n=st.sampled_from([1, 31, 33, 1000, 8192]),
    seed=SEEDS,
    threads=st.sampled_from([1, 2, 3]),
)
def test_swiglu_rows_is_row_independent_for_any_split(
    isa: str, rows: int, n: int, seed: int, threads: int
) -> None:
    """Large inputs are spread over the pool: the result equals the rows one at a time, bit for
    bit, whatever the thread count."""
    RuntimeConfig(threads=threads)
    try:
        gu = arrays(seed, (rows, 2 * n), "mixed")
        y = kernels.swiglu_rows(gu)
        per_row = [kernels.swiglu_rows(np.ascontiguousarray(r[None])) for r in gu]
        np.testing.assert_array_equal(y, np.concatenate(per_row))
    finally:
        RuntimeConfig()


def test_swiglu_rows_refuses_odd_width() -> None:
    with pytest.raises(KernelArgumentError):
        kernels.swiglu_rows(np.zeros((2, 5), dtype=np.float32))
