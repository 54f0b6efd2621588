"""The floating-point error analysis every tolerance of the kernel property suite is built from
(tests/property): unit roundoffs, Higham's gamma, and the bounds for Q8_0 rounding and for the
f32 and Q8_0 dot products. Tests import it as a namespace: `from support import fp_bounds as fp`.
"""

from __future__ import annotations

import numpy as np

# ---- floating-point error analysis ------------------------------------------------------------
# Every tolerance of the suite is built from these, following the standard model of IEEE
# arithmetic: one rounding to nearest of a result r errs by at most U32 * |r| when r is in the
# normal range, and by at most TINY32 when it falls into the subnormal range.
U32 = 2.0**-24  # unit roundoff of float32 (24-bit significand, round to nearest)
U64 = 2.0**-53  # unit roundoff of float64: the oracles' own arithmetic
TINY32 = 2.0**-150  # half the smallest float32 subnormal: absolute error of an underflowing rounding
LIBM_ULPS = 2.0 * U32  # glibc's expf, tanhf, sinf, cosf, powf are accurate to < 1 ulp = 2 U32 relative
# libq8's own tanh and exp (src/fastmath.h): < 1.35 ulp over every float, < 1.22 ulp over every
# float in [-104, 0] (tools/check_fastmath.c), so <= 3 U32 relative
TANH_ULPS = 3.0 * U32
EXP_ULPS = 3.0 * U32
QK = 32  # Q8_0 block length
Q8_MAX = 127  # largest Q8_0 quant magnitude
# fp16 stores the block scale with a 10-bit fraction: rounding a normal value errs by at most
# 2^-11 relative; in the fp16 subnormal range the step is 2^-24, so the error is at most 2^-25.
FP16_REL = 2.0**-11
FP16_SUBNORMAL_ABS = 2.0**-25
# Q8_0 computes q = round(x * fl(1 / d)) in float32; |x / d| <= 127 (1 + U32), and the two roundings
# in fl(x * fl(1 / d)) move it by at most 127 * (2 U32 + U32^2) / (1 - U32) < 255 U32 quant steps.
Q8_ROUNDING_STEPS = 0.5 + 255 * U32
# The element-wise bounds are first order in U32: terms that are products of two rounding errors
# (a few U32^2 each, relative) are covered by this factor.
SECOND_ORDER = 1.0 + 16 * U32


def gamma(m: int, u: float = U32) -> float:
    """Higham's gamma_m = m u / (1 - m u): the relative bound on a value that went through m
    roundings, e.g. |fl(sum) - sum| <= gamma_m * sum|terms| for any summation tree of depth m."""
    assert m * u < 1.0
    return m * u / (1.0 - m * u)


def q8_scales(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block of 32 along the last axis: (d32, d16), the float32 scale amax / 127 exactly as the
    quantizer computes it, and that scale rounded to fp16 as stored in the block (both float64)."""
    blocks = np.abs(a.astype(np.float32)).reshape(*a.shape[:-1], a.shape[-1] // QK, QK)
    d32 = blocks.max(axis=-1) / np.float32(Q8_MAX)
    with np.errstate(over="ignore"):
        d16 = d32.astype(np.float16)
    return d32.astype(np.float64), d16.astype(np.float64)


def q8_element_error(a: np.ndarray) -> np.ndarray:
    """Bound on |a - dequantize(quantize(a))| per element (same shape as a) for finite a whose
    block scales fit fp16.

    With d32 = amax / 127 (float32) and d16 = fp16(d32):
      |a - d16 q| <= |a - d32 q| + |q| |d32 - d16|
                  <= d32 * Q8_ROUNDING_STEPS + 127 * max(FP16_REL d32, FP16_SUBNORMAL_ABS).
    When d16 == 0 (d32 < 2^-25; for d32 < 2^-128 even 1 / d32 overflows and q is meaningless) the
    dequantized block is 0 and the error is |a| <= amax = 127 d32 (1 + U32), below the second term.
    An all-zero block (d32 == 0) is exact. Note that d16 / 2 alone is NOT a valid bound: the fp16
    rounding of the scale adds up to 127 * 2^-11 * d ~ 0.06 d for the large quants.
    """
    d32, _ = q8_scales(a)
    e = d32 * Q8_ROUNDING_STEPS + Q8_MAX * np.maximum(FP16_REL * d32, FP16_SUBNORMAL_ABS)
    e = np.where(d32 == 0.0, 0.0, e)
    return np.repeat(e, QK, axis=-1)


def q8_dot_bound(wq: np.ndarray, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Bound on |y - ref| for y = gemv_q8_0(W, x (+ bias)) against ref = Wq @ x (+ bias) in float64,
    Wq the dequantized weights (N, K) (so weight rounding is out of the picture), x (K,).

    What the kernel computes exactly (kernels_ref.c): x is quantized per block b to xq with scale
    d_x,b, and y = sum_b d_w,b d_x,b sum_i qw_i qx_i, where every block's integer sum is exact and
    the scale product d_w,b d_x,b is exact in float32 (two fp16 values: 22 significant bits; no
    underflow, since fp16 scales are >= 2^-24). So in exact arithmetic y = Wq @ xq, and
      |y - Wq @ x| <= (activation quantization)  sum_i |Wq_i| |x_i - xq_i|
                      (float32 accumulation)     + gamma_m sum_i |Wq_i| |xq_i|
                      (bias, one rounding)       + U32 (|ref| + the above)
                      (float64 oracle)           + gamma_K^(64) sum_i |Wq_i x_i|.
    |x_i - xq_i| <= e_i = q8_element_error(x) (the Q8_0 step: d_x,b / 2 plus the fp16 rounding of
    d_x,b), |xq_i| <= |x_i| + e_i, and the accumulation depth m is nb fused multiply-adds (one
    accumulator per row, blocks in order).
    """
    w = wq.astype(np.float64)
    xd = x.astype(np.float64)
    e = q8_element_error(x)
    aw = np.abs(w)
    nb = x.shape[-1] // QK
    m = nb
    bound = aw @ e + gamma(m) * (aw @ (np.abs(xd) + e)) + gamma(x.shape[-1], U64) * (aw @ np.abs(xd))
    if bias is not None:
        ref = w @ xd + bias.astype(np.float64)
        bound = bound + U32 * (np.abs(ref) + bound) * (1.0 + U32)
    return np.asarray(bound, dtype=np.float64)


def f32_dot_depth(k: int) -> int:
    """Roundings along the deepest path of the f32 dot product of length k (kernels_ref.c): k // 16
    fused multiply-adds in each of 16 lanes, 4 fold levels, then k % 16 tail fused multiply-adds."""
    return k // 16 + 4 + k % 16


def f32_dot_roundings(k: int) -> int:
    """All roundings of the f32 dot product of length k: one fma per element, 15 fold adds."""
    return k + 15


def f32_dot_bound(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bound on |fl32 dot(w_r, x) - dot(w_r, x)| per row of w (N, K) for finite inputs.

    Each rounding errs by at most U32 |result| + 2^-150 (the second for results that underflow).
    The relative parts give gamma_m of the sum of |products| (each fma rounds once and its product
    is exact inside it; m = f32_dot_depth). The absolute parts are only added along the tree, so
    they sum to at most (K + 15) 2^-150. The float64 oracle adds its own gamma_K^(64)."""
    k = x.shape[-1]
    s = np.abs(w.astype(np.float64)) @ np.abs(x.astype(np.float64))
    bound = gamma(f32_dot_depth(k)) * s + f32_dot_roundings(k) * TINY32 + gamma(k, U64) * s
    return np.asarray(bound, dtype=np.float64)


def sech2_bound(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    """max of tanh'(xi) = sech^2(xi) over |xi - a| <= da: sech^2(y) <= min(1, 4 exp(-2|y|))."""
    lo = np.maximum(np.abs(a) - da, 0.0)
    return np.asarray(np.minimum(1.0, 4.0 * np.exp(-2.0 * lo)), dtype=np.float64)
