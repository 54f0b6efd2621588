"""Several Python threads on one model (and on two models sharing the process-wide C pool):
every call returns exactly what it returns when the calls run one after another."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from support import FIX

import pyrustml

N_THREADS = 8
CALLS = 5
MAX_TOKENS = 16
JOIN_S = 120.0  # a deadlock fails the test instead of hanging the suite


def prompt(t: int, c: int) -> str:
    # A different prompt (and length) per thread and per call, so a result handed to the wrong
    # caller, or two forward passes interleaved in one KV cache, shows up as a mismatch.
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "off"]
    return f"Thread {t} call {c}: " + " ".join(words[(t + i * c) % len(words)] for i in range(1 + t + c))


Result = tuple[list[int], list[int], str, str]


def result(g: pyrustml.Generation) -> Result:
    return (g.prompt_tokens, g.tokens, g.text, g.finish_reason)


def run_threads(n: int, work: Callable[[int], None]) -> None:
    """Start n threads at the same moment (a barrier) and fail on any error or a hang."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(t: int) -> None:
        try:
            barrier.wait()
            work(t)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(t,), daemon=True) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(JOIN_S)
    assert not any(th.is_alive() for th in threads), "a thread did not finish: deadlock?"
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def models() -> dict[str, pyrustml.Model]:
    return {name: pyrustml.load(str(FIX / name)) for name in ("gpt2-tiny-hf", "gemma3-tiny")}


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
def test_threads_greedy_equal_sequential(models: dict[str, pyrustml.Model], name: str) -> None:
    m = models[name]
    want = {
        (t, c): result(m.generate(prompt(t, c), max_tokens=MAX_TOKENS, temperature=0))
        for t in range(N_THREADS)
        for c in range(CALLS)
    }
    # The prompts must really lead to different outputs, or a mix-up could go unseen.
    assert len({tuple(w[1][:8]) for w in want.values()}) >= len(want) // 2
    got: dict[tuple[int, int], Result] = {}

    def work(t: int) -> None:
        for c in range(CALLS):
            got[(t, c)] = result(m.generate(prompt(t, c), max_tokens=MAX_TOKENS, temperature=0))

    run_threads(N_THREADS, work)
    bad = [k for k in want if got.get(k) != want[k]]
    assert not bad, f"{len(bad)} of {len(want)} calls differ from their sequential result, e.g. {bad[:3]}"


def test_mixed_calls_on_two_models_share_the_pool(models: dict[str, pyrustml.Model]) -> None:
    """generate (greedy and seeded sampling), stream and logits from 8 threads over two models at
    once: the C pool serves submitters of both models concurrently."""
    names = ["gpt2-tiny-hf", "gemma3-tiny"]

    def call(t: int, c: int) -> object:
        m = models[names[t % 2]]
        kind = (t + c) % 4
        p = prompt(t, c)
        if kind == 0:
            return result(m.generate(p, max_tokens=MAX_TOKENS, temperature=0))
        if kind == 1:
            return result(m.generate(p, max_tokens=MAX_TOKENS, temperature=0.9, top_p=0.9, seed=t * 10 + c))
        if kind == 2:
            return "".join(m.stream(p, max_tokens=MAX_TOKENS, temperature=0))
        return m.logits(m.encode(p)).tobytes()

    want = {(t, c): call(t, c) for t in range(N_THREADS) for c in range(CALLS)}
    got: dict[tuple[int, int], object] = {}

    def work(t: int) -> None:
        for c in range(CALLS):
            got[(t, c)] = call(t, c)

    run_threads(N_THREADS, work)
    bad = [k for k in want if got.get(k) != want[k]]
    assert not bad, f"{len(bad)} of {len(want)} calls differ from their sequential result, e.g. {bad[:3]}"


def test_load_with_other_thread_counts_while_generating(models: dict[str, pyrustml.Model]) -> None:
    """load() restarts the process-wide pool with its own thread count; generations running
    meanwhile on other threads keep their results (rows have one writer whatever the count)."""
    m = models["gemma3-tiny"]
    want = {(t, c): result(m.generate(prompt(t, c), max_tokens=MAX_TOKENS, temperature=0))
            for t in range(1, 4) for c in range(CALLS)}  # fmt: skip
    got: dict[tuple[int, int], Result] = {}
    loaded: list[np.ndarray] = []

    def work(t: int) -> None:
        if t == 0:
            for threads in (1, 3, 2, 1, 2):
                other = pyrustml.load(str(FIX / "gpt2-tiny-hf"), threads=threads)
                loaded.append(other.logits([1, 2, 3]))
            return
        for c in range(CALLS):
            got[(t, c)] = result(m.generate(prompt(t, c), max_tokens=MAX_TOKENS, temperature=0))

    try:
        run_threads(4, work)
    finally:
        pyrustml.RuntimeConfig(None)  # the default pool for the tests that follow
    assert all(np.array_equal(a, loaded[0]) for a in loaded)
    bad = [k for k in want if got.get(k) != want[k]]
    assert not bad, f"{len(bad)} of {len(want)} calls differ from their sequential result, e.g. {bad[:3]}"
