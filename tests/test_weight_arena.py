"""WeightArena: matrices carved one after another from huge-page slabs keep their own bytes,
their alignment and their memory for as long as they live."""

from __future__ import annotations

import gc

import numpy as np

from pyrustml import kernels
from pyrustml.engine._ffi import ffi
from pyrustml.kernels import WEIGHT_SLAB_BYTES, Q8Matrix, WeightArena


def addr(m: Q8Matrix) -> int:
    return int(ffi.cast("uintptr_t", m.ptr()))


def test_matrices_are_consecutive_aligned_and_independent() -> None:
    rng = np.random.default_rng(0)
    arena = WeightArena()
    shapes = [(48, 64), (17, 96), (768, 32), (5, 32)]
    ref = [kernels.quantize_q8_0(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    carved = [Q8Matrix(*r.shape, arena) for r in ref]
    for m, r in zip(carved, ref, strict=True):
        packed = Q8Matrix.from_blocks(r.blocks, r.shape[1])
        ffi.memmove(m.ptr(), packed.ptr(), packed.nbytes)
    starts = [addr(m) for m in carved]
    for a, m, b in zip(starts, carved, starts[1:], strict=False):
        assert a % 64 == 0 and b == a + (m.nbytes + 63) // 64 * 64  # load order is memory order
    x = rng.standard_normal(96).astype(np.float32)
    for m, r in zip(carved, ref, strict=True):
        np.testing.assert_array_equal(m.blocks, r.blocks)
        xk = x[: r.shape[1]]
        np.testing.assert_array_equal(kernels.gemv_q8_0(m, xk), kernels.gemv_q8_0(r, xk))


def test_a_slab_outlives_the_arena_while_a_matrix_uses_it() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    expect = kernels.quantize_q8_0(w).blocks
    arena = WeightArena()
    m = Q8Matrix(64, 64, arena)
    src = kernels.quantize_q8_0(w)
    ffi.memmove(m.ptr(), src.ptr(), m.nbytes)
    del src
    del arena
    gc.collect()
    for _ in range(8):  # churn the allocator: a freed slab would be reused and overwritten
        junk = [np.full(1 << 20, 0x5A, dtype=np.uint8) for _ in range(16)]
        del junk
    np.testing.assert_array_equal(m.blocks, expect)


def test_a_matrix_that_does_not_fit_starts_a_slab_of_its_own_size() -> None:
    """Slabs start 2 MiB aligned (q8_alloc); nothing is written, so nothing becomes resident."""
    huge = 2 << 20
    arena = WeightArena()
    small = Q8Matrix(16, 32, arena)
    assert addr(small) % huge == 0
    big = Q8Matrix(65536, 1024, arena)  # 71 MiB packed: more than a slab
    assert big.nbytes > WEIGHT_SLAB_BYTES
    assert addr(big) % huge == 0  # a new slab, sized to it
    after = Q8Matrix(16, 32, arena)
    assert addr(after) % huge == 0  # the big one filled its slab: another new one
