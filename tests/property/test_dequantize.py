"""Q8Matrix.dequantize: exactly d * q per element (equal to gguf's dequantizer), within the Q8_0
step of the weights that were quantized, and a projection (quantizing its output changes nothing)."""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from hypothesis import given
from hypothesis import strategies as st
from support import fp_bounds as fp
from support.kernel_props import Q8_BLOCK_BYTES, QK, SEEDS, arrays

from pyrustml import kernels

ROWS = st.one_of(st.sampled_from([1, 2, 3, 31, 33]), st.integers(1, 40))
BLOCKS = st.one_of(st.sampled_from([1, 3, 5, 2, 4]), st.integers(1, 10))
SCALES = st.sampled_from(["1", "1e-3", "1e3", "1e6", "1e-30", "1e-40", "mixed", "ties"])


def split_blocks(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d16 as float64 (N, nb), q as float64 (N, nb, 32)) from uint8 (N, nb * 34) block bytes."""
    b = blocks.reshape(blocks.shape[0], -1, Q8_BLOCK_BYTES)
    d = np.ascontiguousarray(b[:, :, :2]).view(np.float16)[:, :, 0].astype(np.float64)
    q = np.ascontiguousarray(b[:, :, 2:]).view(np.int8).astype(np.float64)
    return d, q


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, scale=SCALES, zero=st.sampled_from([0.0, 0.3]))
def test_dequantize_error_within_the_q8_step(
    isa: str, rows: int, nb: int, seed: int, scale: str, zero: float
) -> None:
    """|w - dequantize(quantize(w))| per element.

    Derivation: the quantizer takes d32 = amax / 127 in float32, q = round(w / d32) (computed as
    w * fl(1 / d32), at most 255 U32 steps off the exact quotient) and stores d16 = fp16(d32), so
    |w - d16 q| <= |w - d32 q| + |q| |d32 - d16| <= d32 (1/2 + 255 U32) + |q| |d32 - d16|.
    Both d32 (recomputed here exactly as the quantizer does) and d16, q (read from the block)
    are known, so the bound is exact to evaluate. A block whose d16 is 0 dequantizes to 0.
    The often-quoted "d / 2" is not a bound: with |q| near 127 the fp16 rounding of d adds
    up to 127 * 2^-11 * d (conftest.q8_element_error).
    """
    w = arrays(seed, (rows, nb * QK), scale, zero)
    m = kernels.quantize_q8_0(w)
    deq = m.dequantize()
    assert deq.dtype == np.float32 and deq.shape == w.shape
    d16, q = split_blocks(m.blocks)
    d32, d16_again = fp.q8_scales(w)
    np.testing.assert_array_equal(d16, d16_again)
    err = np.abs(w.astype(np.float64) - deq).reshape(rows, nb, QK)
    bound = d32[..., None] * fp.Q8_ROUNDING_STEPS + np.abs(q) * np.abs(d32 - d16)[..., None]
    zero_scale = np.broadcast_to((d16 == 0.0)[..., None], err.shape)
    assert (err <= bound)[~zero_scale].all()
    assert (deq.reshape(rows, nb, QK)[zero_scale] == 0.0).all()
    # and the fp16 scale is the float32 one rounded once: |d32 - d16| within half an fp16 step
    assert (np.abs(d32 - d16) <= np.maximum(fp.FP16_REL * d32, fp.FP16_SUBNORMAL_ABS)).all()


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS)
def test_dequantize_is_exactly_d_times_q(isa: str, rows: int, nb: int, seed: int) -> None:
    """Any valid blocks (random fp16 scales, normal and subnormal, quants in [-127, 127]):
    d * q has at most 11 + 7 significant bits, so float32 holds it exactly."""
    rng = np.random.default_rng(seed)
    n_blocks = rows * nb
    # finite fp16 bit patterns: exponent field 0..30, either sign
    bits = rng.integers(0, 0x7C00, size=n_blocks, dtype=np.uint16) | (
        rng.integers(0, 2, size=n_blocks, dtype=np.uint16) << 15
    )
    qs = rng.integers(-127, 128, size=(n_blocks, QK), dtype=np.int8)
    raw = np.concatenate([bits.view(np.uint8).reshape(n_blocks, 2), qs.view(np.uint8)], axis=1)
    blocks = raw.reshape(rows, nb * Q8_BLOCK_BYTES)
    m = kernels.Q8Matrix.from_blocks(blocks, nb * QK)
    np.testing.assert_array_equal(m.blocks, blocks)
    deq = m.dequantize()
    d16, q = split_blocks(blocks)
    exact = (d16[..., None] * q).reshape(rows, nb * QK)
    np.testing.assert_array_equal(deq.astype(np.float64), exact)
    np.testing.assert_array_equal(deq, dequantize(blocks, GGMLQuantizationType.Q8_0))


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, scale=SCALES, zero=st.sampled_from([0.0, 0.3]))
def test_quantize_after_dequantize_is_a_projection(
    isa: str, rows: int, nb: int, seed: int, scale: str, zero: float
) -> None:
    """Q8_0 values are fixed points: the largest |q| of a block is 127, so the scale recomputed
    from d * q is d again and every quant comes back."""
    w = arrays(seed, (rows, nb * QK), scale, zero)
    deq = kernels.quantize_q8_0(w).dequantize()
    again = kernels.quantize_q8_0(deq)
    np.testing.assert_array_equal(again.dequantize(), deq)
