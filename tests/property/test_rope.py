"""rope: "rotate half" rotary embedding against a float64 oracle; position 0 is the identity and
every rotation keeps the pair's length, at any position the kernel accepts (< 2^24)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import fp_bounds as fp
from support.kernel_props import SEEDS, arrays

from pyrustml import kernels
from pyrustml.errors import KernelArgumentError

HEAD_DIMS = st.sampled_from([2, 4, 6, 16, 32, 64, 80, 128, 256])
THETAS = st.sampled_from([10000.0, 1000000.0, 500.0])
SCALES = st.sampled_from(["1", "1e-3", "1e3", "1e-30", "mixed"])
# Positions for the oracle comparison: the bound grows with the angle (see below), so keep to
# context lengths where it stays well under a radian; any position for the exact properties.
ORACLE_POS = st.integers(0, 8192)
ANY_POS = st.integers(0, 2**24 - 1)
FOUR_ORACLE_POS = st.lists(ORACLE_POS, min_size=4, max_size=4)
FOUR_ANY_POS = st.lists(ANY_POS, min_size=4, max_size=4)
# Bound on | |rotated pair| - |pair| | in units of U32 |pair|: sqrt(2) (4 sqrt(2) + 1) < 10, see
# test_rope_rotations_keep_pair_lengths.
ROPE_LENGTH_ULPS = 10


def x_shapes(most_heads: int) -> st.SearchStrategy[tuple[int, int, int]]:
    """(tokens, heads, head_dim) of x."""
    return st.tuples(st.integers(1, 4), st.integers(1, most_heads), HEAD_DIMS)


def assert_rotated_within_bound(y: np.ndarray, x: np.ndarray, phi: np.ndarray, dphi: Any) -> None:
    """y (t, heads, d) is x with pair i of row t turned by the float64 angle phi[t, i], to within
    the rounding of cos, sin, the products and the sum (see test_rope_matches_float64), plus
    r dphi for an angle that is itself only within dphi of phi (r = |a| + |b|)."""
    half = x.shape[-1] // 2
    c, s = np.cos(phi)[:, None, :], np.sin(phi)[:, None, :]
    a, b = x[..., :half].astype(np.float64), x[..., half:].astype(np.float64)
    ya, yb = a * c - b * s, b * c + a * s
    u = fp.U32
    r = np.abs(a) + np.abs(b)
    ba = (
        r * dphi + (np.abs(a * c) + np.abs(b * s)) * 3 * u + u * np.abs(ya)
    ) * fp.SECOND_ORDER + 3 * fp.TINY32
    bb = (
        r * dphi + (np.abs(b * c) + np.abs(a * s)) * 3 * u + u * np.abs(yb)
    ) * fp.SECOND_ORDER + 3 * fp.TINY32
    assert (np.abs(y[..., :half] - ya) <= ba).all()
    assert (np.abs(y[..., half:] - yb) <= bb).all()


def angle_error_rel(theta: float, head_dim: int) -> np.ndarray:
    """Relative error of the float32 angle pos * inv_freq_i computed as transformers does:
    fl(2i / d) errs by U32 relative, which moves theta^(2i/d) by U32 (2i/d) ln(theta);
    powf adds 1 ulp (2 U32), the division 1 / powf one rounding, the product with pos another."""
    e = np.arange(0, head_dim, 2) / head_dim
    return np.asarray(fp.U32 * e * np.log(theta) + fp.LIBM_ULPS + 2 * fp.U32, dtype=np.float64)


@given(shape=x_shapes(4), theta=THETAS, seed=SEEDS, scale=SCALES, pos=FOUR_ORACLE_POS)
def test_rope_matches_float64(
    isa: str, shape: tuple[int, int, int], theta: float, seed: int, scale: str, pos: list[int]
) -> None:
    """x'_i = x_i cos(p f_i) - x_{i+d/2} sin(p f_i), x'_{i+d/2} = x_{i+d/2} cos + x_i sin,
    f_i = theta^(-2i/d).

    Derivation: the kernel's angle phi^ = fl32(p fl32(1 / powf(theta, 2i/d))) is within
    |phi| angle_error_rel of phi = p f_i; cosf/sinf add 1 ulp (2 U32 relative); a c, b s and
    their difference round once each. With r = |a| + |b|:
      |y - y_exact| <= r |phi| angle_error_rel + (|a c| + |b s|) (2 U32 + U32) + U32 |y|,
    plus 2^-150 per underflowing rounding.
    """
    t, _, d = shape
    p = np.array(pos[:t], dtype=np.int64)
    x = arrays(seed, shape, scale)
    y = kernels.rope(x, p, theta)
    assert y.shape == x.shape and y.dtype == np.float32
    th = float(np.float32(theta))
    phi = p[:, None].astype(np.float64) * th ** (-np.arange(0, d, 2) / d)  # (t, half)
    assert_rotated_within_bound(y, x, phi, (np.abs(phi) * angle_error_rel(th, d))[:, None, :])


@given(shape=x_shapes(3), theta=THETAS, seed=SEEDS, scale=SCALES)
def test_rope_at_position_zero_is_the_identity(
    isa: str, shape: tuple[int, int, int], theta: float, seed: int, scale: str
) -> None:
    """cos 0 = 1 and sin 0 = 0 exactly: a * 1 - b * 0 = a bit for bit (b * 0 = +-0)."""
    x = arrays(seed, shape, scale)
    np.testing.assert_array_equal(kernels.rope(x, np.zeros(shape[0], np.int64), theta), x)


@given(shape=x_shapes(3), theta=THETAS, seed=SEEDS, pos=FOUR_ANY_POS)
def test_rope_rotations_keep_pair_lengths(
    isa: str, shape: tuple[int, int, int], theta: float, seed: int, pos: list[int]
) -> None:
    """|(x'_i, x'_{i+d/2})| = |(x_i, x_{i+d/2})| whatever the angle's accuracy.

    Derivation: cosf and sinf are each within 2 U32 relative of a true (cos, sin) pair of the
    computed angle, and the four products and two sums round once each; the rotated pair is
    within (2 U32 + 2 U32) (|a c| + |b s|) + U32 |y| <= 4 U32 sqrt(2) r + U32 r per component of
    an exact rotation, so the lengths differ by at most sqrt(2) (4 sqrt(2) + 1) U32 r < 10 U32 r.
    """
    p = np.array(pos[: shape[0]], dtype=np.int64)
    x = arrays(seed, shape, "1")
    y = kernels.rope(x, p, theta).astype(np.float64)
    half = shape[2] // 2
    xd = x.astype(np.float64)
    r_in = np.hypot(xd[..., :half], xd[..., half:])
    r_out = np.hypot(y[..., :half], y[..., half:])
    assert (np.abs(r_out - r_in) <= ROPE_LENGTH_ULPS * fp.U32 * r_in + fp.TINY32).all()


@given(heads=st.integers(1, 3), d=HEAD_DIMS, theta=THETAS, seed=SEEDS, pos=ANY_POS)
def test_rope_rows_are_independent(isa: str, heads: int, d: int, theta: float, seed: int, pos: int) -> None:
    """Row r depends only on x[r] and pos[r]: a batch equals its rows one at a time, and every
    head of a row gets the same rotation."""
    x = arrays(seed, (3, heads, d), "1")
    p = np.array([pos, 0, max(pos - 1, 0)], dtype=np.int64)
    y = kernels.rope(x, p, theta)
    for r in range(3):
        np.testing.assert_array_equal(y[r : r + 1], kernels.rope(x[r : r + 1], p[r : r + 1], theta))
    same = np.broadcast_to(x[:1, :1], (1, heads, d)).copy()
    ys = kernels.rope(same, p[:1], theta)
    np.testing.assert_array_equal(ys, np.broadcast_to(ys[:, :1], ys.shape))


@given(shape=x_shapes(3), seed=SEEDS, pos=FOUR_ANY_POS)
def test_rope_freq_is_the_rotation_by_its_table(
    isa: str, shape: tuple[int, int, int], seed: int, pos: list[int]
) -> None:
    """Any table: pair i of a row at position p turns by fl32(p * inv_freq[i]), whose cos and sin
    are within 1 ulp of glibc's double-rounded ones; the same bound as test_rope_matches_float64
    without the angle error (the angle is taken as the kernel rounds it)."""
    t, _, d = shape
    rng = np.random.default_rng(seed)
    inv = (rng.random(d // 2) * 2.0 ** rng.integers(-20, 1, d // 2)).astype(np.float32)
    inv[0] = 1.0
    p = np.array(pos[:t], dtype=np.int64)
    x = arrays(seed, shape, "1")
    y = kernels.rope_freq(x, p, inv)
    phi = (p[:, None].astype(np.float32) * inv[None, :]).astype(np.float64)  # fl32 angle, exact in f64
    assert_rotated_within_bound(y, x, phi, 0.0)  # no angle error: the angle is the kernel's own


def test_rope_freq_refuses_bad_tables() -> None:
    x = np.zeros((1, 1, 8), dtype=np.float32)
    p = np.zeros(1, dtype=np.int64)
    for bad in (np.ones(3, np.float32), np.array([1, np.nan, 1, 1], np.float32), -np.ones(4, np.float32)):
        with pytest.raises(KernelArgumentError):
            kernels.rope_freq(x, p, bad)
