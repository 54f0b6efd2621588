"""The vocabulary projection: the tiled lmhead is bitwise the untiled gemv, and the fused argmax
is np.argmax of those logits (lowest index on ties, the first NaN when there is one)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.kernel_props import NON_FINITE, Q8_BLOCK_BYTES, QK, SEEDS, arrays, bits, same_float

from pyrustml import kernels

FP16_NAN = 0x7E00
# Around the 256-row vocabulary tiles and the 4-row kernels.
ROWS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 31, 33, 255, 256, 257, 511, 513, 1000]), st.integers(1, 600))
BLOCKS = st.one_of(st.sampled_from([1, 3, 5, 2, 4]), st.integers(1, 8))
KS = st.one_of(st.sampled_from([1, 15, 16, 17, 32, 96]), st.integers(1, 200))
SCALES = st.sampled_from(["1", "1e-3", "1e6", "1e-30", "mixed"])


def plant_ties(w: np.ndarray, rng: np.random.Generator, n_copies: int) -> None:
    """Copy random rows onto other rows: equal rows give equal logits, i.e. ties."""
    rows = w.shape[0]
    for _ in range(n_copies):
        w[rng.integers(0, rows)] = w[rng.integers(0, rows)]


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, scale=SCALES, ties=st.integers(0, 6), x_nonfinite=st.booleans())
def test_lmhead_q8_is_gemv_and_argmax_is_np_argmax(
    isa: str, rows: int, nb: int, seed: int, scale: str, ties: int, x_nonfinite: bool
) -> None:
    k = nb * QK
    w = arrays(seed, (rows, k), scale, 0.2)
    plant_ties(w, np.random.default_rng(seed), ties)
    q = kernels.quantize_q8_0(w)
    x = arrays(seed + 1, (k,))
    if x_nonfinite:
        x[seed % k] = np.nan  # every logit NaN: the argmax is the first one
    y = kernels.gemv_q8_0(q, x)
    np.testing.assert_array_equal(bits(kernels.lmhead_q8_0(q, x)), bits(y))
    idx, val = kernels.lmhead_argmax_q8_0(q, x)
    assert idx == int(np.argmax(y))
    assert same_float(val, y[idx])


@given(rows=ROWS, nb=BLOCKS, seed=SEEDS, n_nan=st.integers(1, 3), data=st.data())
def test_lmhead_q8_argmax_reports_a_nan_logit(
    isa: str, rows: int, nb: int, seed: int, n_nan: int, data: st.DataObject
) -> None:
    """Rows whose block scale is an fp16 NaN give NaN logits; the first of them is the argmax."""
    k = nb * QK
    blocks = kernels.quantize_q8_0(arrays(seed, (rows, k))).blocks.copy()
    for _ in range(n_nan):
        r = data.draw(st.integers(0, rows - 1), label="nan row")
        b = data.draw(st.integers(0, nb - 1), label="nan block")
        at = b * Q8_BLOCK_BYTES
        blocks[r, at : at + 2] = np.array([FP16_NAN], np.uint16).view(np.uint8)
    q = kernels.Q8Matrix.from_blocks(blocks, k)
    x = arrays(seed + 1, (k,))
    y = kernels.gemv_q8_0(q, x)
    assert np.isnan(y).any()
    np.testing.assert_array_equal(bits(kernels.lmhead_q8_0(q, x)), bits(y))
    idx, val = kernels.lmhead_argmax_q8_0(q, x)
    assert idx == int(np.argmax(y)) == int(np.flatnonzero(np.isnan(y))[0])
    assert np.isnan(val)


@given(
    rows=ROWS, k=KS, seed=SEEDS, scale=SCALES, ties=st.integers(0, 6), n_bad=st.integers(0, 3), data=st.data()
)
def test_lmhead_f32_is_gemv_f32_and_argmax_is_np_argmax(
    isa: str, rows: int, k: int, seed: int, scale: str, ties: int, n_bad: int, data: st.DataObject
) -> None:
    w = arrays(seed, (rows, k), scale, 0.2)
    plant_ties(w, np.random.default_rng(seed), ties)
    for _ in range(n_bad):  # NaN / +-Inf weights give NaN / +-Inf logits
        r = data.draw(st.integers(0, rows - 1), label="row")
        w[r, data.draw(st.integers(0, k - 1), label="col")] = data.draw(NON_FINITE, label="value")
    x = arrays(seed + 1, (k,))
    y = kernels.gemv_f32(w, x)
    np.testing.assert_array_equal(bits(kernels.lmhead_f32(w, x)), bits(y))
    idx, val = kernels.lmhead_argmax_f32(w, x)
    assert idx == int(np.argmax(y))
    assert same_float(val, y[idx])


@pytest.fixture(scope="module", params=[50257, 262144])
def vocab(request: pytest.FixtureRequest) -> tuple[kernels.Q8Matrix, np.ndarray, np.ndarray]:
    """A vocabulary-sized matrix (K = 64) whose best row is duplicated before and after it and
    also in the last tile, so the argmax must pick the lowest of tied indices across tiles."""
    n = int(request.param)
    rng = np.random.default_rng(n)
    w = rng.standard_normal((n, 64)).astype(np.float32)
    x = rng.standard_normal(64).astype(np.float32)
    best = int(np.argmax(w @ x))
    for r in (n - 1, n // 3, best + 300 if best + 300 < n else 0):
        w[r] = w[best]
    return kernels.quantize_q8_0(w), w, x


def test_lmhead_big_vocabularies(isa: str, vocab: tuple[kernels.Q8Matrix, np.ndarray, np.ndarray]) -> None:
    q, w, x = vocab
    y = kernels.gemv_q8_0(q, x)
    np.testing.assert_array_equal(bits(kernels.lmhead_q8_0(q, x)), bits(y))
    idx, val = kernels.lmhead_argmax_q8_0(q, x)
    assert (idx, val) == (int(np.argmax(y)), float(y.max()))
    assert (y == y.max()).sum() >= 2  # the planted ties are real ties
    yf = kernels.gemv_f32(w, x)
    np.testing.assert_array_equal(bits(kernels.lmhead_f32(w, x)), bits(yf))
    assert kernels.lmhead_argmax_f32(w, x) == (int(np.argmax(yf)), float(yf.max()))
