"""Raw libq8 entry points write exactly their output: every element of it (no fill word is left)
and nothing around it (the guard words before and after stay intact), with the bits the checked
wrapper returns. One table of entry points, each drawn with the sizes that matter to it (row
counts around the 16-row panels and 256-row vocabulary tiles, odd float32 lengths, several tokens).
Attention's guards stay in test_attention.py, where the KV writes of each chunk schedule are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quantize
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from support.kernel_props import Q8_BLOCK_BYTES, QK, SEEDS, arrays

from pyrustml import kernels
from pyrustml.engine._ffi import ffi, lib

ONE_TOKEN = st.just(1)
UNIT_SCALE = st.just("1")


def _rows(*edges: int, most: int) -> SearchStrategy[int]:
    return st.one_of(st.sampled_from(list(edges)), st.integers(1, most))


def _blocks(most: int) -> SearchStrategy[int]:
    return st.one_of(st.sampled_from([1, 3, 5, 2, 4]), st.integers(1, most)).map(lambda nb: nb * QK)


@dataclass
class Draw:
    w: np.ndarray  # (rows, k)
    x: np.ndarray  # (t, k)
    bias: np.ndarray | None  # (rows,)
    guarded_floats: Any
    guarded_bytes: Any

    @property
    def rows(self) -> int:
        return int(self.w.shape[0])

    @property
    def k(self) -> int:
        return int(self.w.shape[1])

    @property
    def t(self) -> int:
        return int(self.x.shape[0])

    def fp(self, a: np.ndarray | None) -> Any:
        return ffi.NULL if a is None else ffi.from_buffer("float[]", a)


# An entry point's run: calls it (asserting Q8_OK) and returns (guarded output, wanted values,
# whether every element must be written) for each output.
Written = list[tuple[Any, np.ndarray, bool]]


def _gemv_q8(d: Draw) -> Written:
    q = kernels.quantize_q8_0(d.w)
    out = d.guarded_floats((d.rows,))
    assert lib.q8_gemv(q.ptr(), d.rows, d.k, d.fp(d.x), d.fp(d.bias), out.ptr()) == lib.Q8_OK
    return [(out, kernels.gemv_q8_0(q, d.x[0], d.bias), True)]


def _gemm_q8(d: Draw) -> Written:
    q = kernels.quantize_q8_0(d.w)
    out = d.guarded_floats((d.t, d.rows))
    assert lib.q8_gemm(q.ptr(), d.rows, d.k, d.fp(d.x), d.t, d.fp(d.bias), out.ptr()) == lib.Q8_OK
    return [(out, kernels.gemm_q8_0(q, d.x, d.bias), True)]


def _f32_products(d: Draw) -> Written:
    wp, xp, b = d.fp(d.w), d.fp(d.x), d.fp(d.bias)
    out_v = d.guarded_floats((d.rows,))
    assert lib.q8_gemv_f32(wp, d.rows, d.k, xp, b, out_v.ptr()) == lib.Q8_OK
    out_m = d.guarded_floats((d.t, d.rows))
    assert lib.q8_gemm_f32(wp, d.rows, d.k, xp, d.t, b, out_m.ptr()) == lib.Q8_OK
    return [
        (out_v, kernels.gemv_f32(d.w, d.x[0], d.bias), True),
        (out_m, kernels.gemm_f32(d.w, d.x, d.bias), True),
    ]


def _lmhead(d: Draw) -> Written:
    q = kernels.quantize_q8_0(d.w)
    x = d.x[0]
    xp = d.fp(x)
    out_q = d.guarded_floats((d.rows,))
    assert lib.q8_lmhead(q.ptr(), d.rows, d.k, xp, out_q.ptr()) == lib.Q8_OK
    out_f = d.guarded_floats((d.rows,))
    assert lib.q8_lmhead_f32(d.fp(d.w), d.rows, d.k, xp, out_f.ptr()) == lib.Q8_OK
    # the fused argmax writes exactly one int64 and one float
    idx = d.guarded_floats((2,))  # 8 bytes: room for the int64
    val = d.guarded_floats((1,))
    rc = lib.q8_lmhead_argmax(q.ptr(), d.rows, d.k, xp, ffi.cast("int64_t *", idx.ptr()), val.ptr())
    assert rc == lib.Q8_OK
    y = kernels.gemv_q8_0(q, x)
    want_idx = np.array([int(np.argmax(y))], dtype=np.int64).view(np.float32)
    return [
        (out_q, y, True),
        (out_f, kernels.gemv_f32(d.w, x), True),
        (idx, want_idx, True),
        (val, np.array([y.max()], dtype=np.float32), True),
    ]


def _quantize(d: Draw) -> Written:
    out = d.guarded_bytes(d.rows * d.k // QK * Q8_BLOCK_BYTES)
    rc = lib.q8_quantize(ffi.from_buffer("char[]", d.w), lib.Q8_DTYPE_F32, d.rows, d.k, out.ptr())
    assert rc == lib.Q8_OK
    with np.errstate(all="ignore"):  # gguf warns where 1 / d overflows (zero quants, as libq8)
        want = np.asarray(quantize(d.w, GGMLQuantizationType.Q8_0))
    return [(out, want.reshape(-1), False)]  # blocks have no fill marker: the bytes are compared


@dataclass(frozen=True)
class Entry:
    run: Callable[[Draw], Written]
    rows: SearchStrategy[int]
    k: SearchStrategy[int]
    t: SearchStrategy[int] = ONE_TOKEN
    bias: bool = True  # whether a bias may be drawn
    scale: SearchStrategy[str] = UNIT_SCALE
    zero: float = 0.0


ENTRIES = {
    "gemv_q8_0": Entry(_gemv_q8, _rows(1, 2, 3, 4, 5, 7, 8, 31, 33, most=70), _blocks(12)),
    "gemm_q8_0": Entry(
        _gemm_q8,
        _rows(1, 2, 3, 4, 5, 15, 16, 17, 31, 33, 63, 64, 65, 129, most=70),
        _blocks(10),
        st.integers(1, 8),
    ),
    "gemv_gemm_f32": Entry(
        _f32_products,
        _rows(1, 2, 3, 4, 5, 15, 16, 17, 31, 33, most=50),
        st.one_of(st.sampled_from([1, 2, 15, 16, 17, 31, 32, 33, 96, 160]), st.integers(1, 300)),
        st.integers(1, 7),
    ),
    "lmhead": Entry(
        _lmhead, _rows(1, 2, 3, 4, 5, 31, 33, 255, 256, 257, 511, 513, 1000, most=600), _blocks(8), bias=False
    ),
    "quantize": Entry(
        _quantize,
        _rows(1, 2, 3, 4, 5, 31, 33, most=70),
        _blocks(12),
        bias=False,
        scale=st.sampled_from(["1", "1e-40", "mixed"]),
        zero=0.2,
    ),
}


@pytest.mark.parametrize("name", list(ENTRIES))
@given(data=st.data(), seed=SEEDS)
def test_raw_entry_point_writes_only_its_output(
    isa: str, guarded_floats: Any, guarded_bytes: Any, name: str, data: st.DataObject, seed: int
) -> None:
    e = ENTRIES[name]
    rows, k, t = data.draw(e.rows, "rows"), data.draw(e.k, "k"), data.draw(e.t, "t")
    with_bias = e.bias and data.draw(st.booleans(), "with_bias")
    d = Draw(
        w=arrays(seed, (rows, k), data.draw(e.scale, "scale"), e.zero),
        x=arrays(seed + 1, (t, k)),
        bias=arrays(seed + 2, (rows,)) if with_bias else None,
        guarded_floats=guarded_floats,
        guarded_bytes=guarded_bytes,
    )
    for i, (out, want, full) in enumerate(e.run(d)):
        assert out.guards_intact(), f"output {i} wrote outside its region"
        if full:
            assert out.fully_written(), f"output {i} left elements unwritten"
        got = out.region.reshape(-1).view(np.uint8)
        np.testing.assert_array_equal(
            got, np.ascontiguousarray(want).reshape(-1).view(np.uint8), f"output {i}"
        )
