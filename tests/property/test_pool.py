"""Results do not depend on the thread count: every kernel that spreads over the pool gives
bitwise identical outputs with 1, 2, 3, 7 threads and with more threads than rows.

Restarting the pool costs a thread start per worker, so the fixed, seeded cases restart it once
per thread count and run every case on it; a hypothesis test adds random shapes, restarting the
pool per example.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.kernel_props import QK, arrays, raw

import pyrustml
from pyrustml import kernels

THREADS = (1, 2, 3, 7)
# More threads than rows: 16 threads for the first SMALL cases (at most 9 rows; the first two
# attention cases have 1 and 4 work items).
MORE_THAN_ROWS = 16
SMALL = 5
# (rows, K) of the fixed cases: loop tails, then sizes where every thread gets several chunks
SHAPES = [(1, 32), (2, 96), (3, 160), (5, 64), (9, 32), (31, 96), (33, 160), (257, 64), (50257, 64)]
TOKENS = 3


def argmax_result(idx: int, val: float) -> np.ndarray:
    return np.concatenate([raw(np.array([idx], np.int64)), raw(np.array([val], np.float32))])


Q8Case = tuple[kernels.Q8Matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def q8_cases() -> list[Q8Case]:
    """(q, w, x (3, K), bias, w with NaN rows). The best row for x[0] is copied to the middle
    and the last row, so the argmax has ties to settle across chunks and threads; the NaN copy
    has NaN logits in two rows, the first of which every thread count must report."""
    out = []
    for i, (n, k) in enumerate(SHAPES):
        rng = np.random.default_rng(i)
        w = rng.standard_normal((n, k)).astype(np.float32)
        x = rng.standard_normal((TOKENS, k)).astype(np.float32)
        best = int(np.argmax(w @ x[0]))
        w[[n // 2, n - 1]] = w[best]
        w_nan = w.copy()
        w_nan[[n - 1, n // 3], 0] = np.nan
        out.append((kernels.quantize_q8_0(w), w, x, rng.standard_normal(n).astype(np.float32), w_nan))
    return out


def run_q8(case: Q8Case) -> list[np.ndarray]:
    q, w, x, bias, _ = case
    return [
        kernels.quantize_q8_0(w).blocks,
        kernels.gemv_q8_0(q, x[0], bias),
        kernels.gemm_q8_0(q, x, bias),
        kernels.lmhead_q8_0(q, x[0]),
        argmax_result(*kernels.lmhead_argmax_q8_0(q, x[0])),
    ]


def run_f32(case: Q8Case) -> list[np.ndarray]:
    _, w, x, bias, w_nan = case
    return [
        kernels.gemv_f32(w, x[0], bias),
        kernels.gemm_f32(w, x, bias),
        kernels.lmhead_f32(w, x[0]),
        argmax_result(*kernels.lmhead_argmax_f32(w, x[0])),
        argmax_result(*kernels.lmhead_argmax_f32(w_nan, x[0])),
    ]


def attention_cases() -> list[tuple[np.ndarray, int, np.ndarray, np.ndarray, int, float]]:
    """(q, pos0, k_cache, v_cache, window, softcap): decode and prefill, (t x heads) items from 1
    (fewer than threads) to 64, one ring cache."""
    out = []
    for i, (t, heads, n_kv, d, ctx, cap, window) in enumerate(
        [
            (1, 1, 1, 16, 5, 5, 0),
            (1, 4, 2, 64, 70, 70, 0),
            (3, 8, 2, 80, 150, 150, 0),
            (8, 8, 4, 256, 40, 40, 0),
            (2, 4, 1, 32, 300, 100, 64),
        ]
    ):
        rng = np.random.default_rng(100 + i)
        kc = rng.standard_normal((n_kv, cap, d)).astype(np.float32)
        vc = rng.standard_normal((n_kv, cap, d)).astype(np.float32)
        q = rng.standard_normal((t, heads, d)).astype(np.float32)
        out.append((q, ctx - t, kc, vc, window, 30.0 * (i % 2)))
    return out


def run_all(
    isa: str, cases: list[Any], run: Callable[[Any], list[np.ndarray]], threads: int
) -> list[list[np.ndarray]]:
    assert pyrustml.RuntimeConfig(threads=threads).threads == threads
    assert kernels.isa_active() == isa
    return [[raw(r) for r in run(c)] for c in cases]


def assert_same_for_every_thread_count(
    isa: str, cases: list[Any], run: Callable[[Any], list[np.ndarray]], small: list[Any]
) -> None:
    ref = run_all(isa, cases, run, 1)
    for n in THREADS[1:]:
        got = run_all(isa, cases, run, n)
        for a, b in zip(ref, got, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y, err_msg=f"threads={n}")
    # more threads than rows (or than work items): only the small cases
    got = run_all(isa, small, run, MORE_THAN_ROWS)
    for a, b in zip(ref[: len(small)], got, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"threads={MORE_THAN_ROWS}")


@pytest.mark.usefixtures("restore_pool")
def test_q8_kernels_do_not_depend_on_thread_count(isa: str) -> None:
    cases = q8_cases()
    assert all(n < MORE_THAN_ROWS for n, _ in SHAPES[:SMALL])
    assert_same_for_every_thread_count(isa, cases, run_q8, cases[:SMALL])


@pytest.mark.usefixtures("restore_pool")
def test_f32_kernels_do_not_depend_on_thread_count(isa: str) -> None:
    cases = q8_cases()
    assert_same_for_every_thread_count(isa, cases, run_f32, cases[:SMALL])


@pytest.mark.usefixtures("restore_pool")
def test_attention_does_not_depend_on_thread_count(isa: str) -> None:
    def run(c: tuple[np.ndarray, int, np.ndarray, np.ndarray, int, float]) -> list[np.ndarray]:
        q, pos0, kc, vc, window, cap = c
        return [kernels.attention(q, pos0, kc, vc, 0.125, window, cap)]

    cases = attention_cases()
    assert_same_for_every_thread_count(isa, cases, run, cases[:2])


@pytest.mark.usefixtures("restore_pool")
@given(
    rows=st.one_of(st.sampled_from([1, 2, 3, 4, 5, 31, 33, 255, 257]), st.integers(1, 300)),
    nb=st.integers(1, 6),
    t=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_do_not_depend_on_thread_count(isa: str, rows: int, nb: int, t: int, seed: int) -> None:
    """1, 2, 3, 7 threads, and rows + 1 threads (more than rows) up to 33 rows."""
    k = nb * QK
    w = arrays(seed, (rows, k), "1", 0.2)
    w_nan = w.copy()
    w_nan[seed % rows, 0] = np.nan
    case = (kernels.quantize_q8_0(w), w, arrays(seed + 1, (t, k)), arrays(seed + 2, (rows,)), w_nan)
    counts = (*THREADS, max(8, min(rows + 1, 34)))
    results = []
    for n in counts:
        assert pyrustml.RuntimeConfig(threads=n).threads == n
        results.append([raw(r) for r in run_q8(case) + run_f32(case)])
    for n, other in zip(counts[1:], results[1:], strict=True):
        for x, y in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"threads={n}")


WARMUP_RIGHT_AFTER_START = textwrap.dedent(
    """
    import numpy as np
    import pyrustml
    from pyrustml import kernels
    q = kernels.quantize_q8_0(np.ones((64, 64), np.float32))
    for n in (2, 3, 7, 2):
        for _ in range(10):
            pyrustml.RuntimeConfig(threads=n).warmup_thread_pool()
            kernels.gemv_q8_0(q, np.ones(64, np.float32))
    print("warm")
    """
)
CHILD_TIMEOUT_S = 60  # the child normally takes about a second; a hang is a failure


def test_warmup_right_after_restarting_the_pool_returns() -> None:
    """RuntimeConfig(threads=n).warmup_thread_pool() straight after the pool (re)starts, before
    the OS has run the new workers, must still return. In a child process, so that a deadlock
    fails this test instead of hanging the suite."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        out = subprocess.run(
            [sys.executable, "-c", WARMUP_RIGHT_AFTER_START],
            capture_output=True,
            text=True,
            env=env,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"warmup_thread_pool() right after RuntimeConfig(threads=n) hung for {CHILD_TIMEOUT_S} s")
    assert out.returncode == 0, out.stderr
    assert "warm" in out.stdout
