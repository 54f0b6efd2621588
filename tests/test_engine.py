"""Continuous batching: every request gets exactly the tokens and text it would get alone, for
any mix of requests, arrival order, slot count and thread count; cancelled requests free their
slot; the prefix cache keeps shared prompt positions; usage, logprobs and context cuts."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FIX

import pyrustml
from pyrustml.errors import ContextLengthError, OptionError, OptionTypeError, PromptTypeError

NAMES = ["gpt2-tiny-hf", "gemma3-tiny"]
_models: dict[tuple[str, int], pyrustml.Model] = {}


def model(name: str, parallel: int = 4) -> pyrustml.Model:
    key = (name, parallel)
    if key not in _models:
        _models[key] = pyrustml.load(str(FIX / name), parallel=parallel)
    return _models[key]


# A request: prompt token ids, options. Greedy, seeded sampling, penalties, lookup, stops.
REQUESTS: list[tuple[list[int], dict[str, Any]]] = [
    ([5, 9, 2, 7], {"max_tokens": 12, "temperature": 0}),
    (
        [3, 3, 3, 8, 1, 4, 9, 9, 2, 6, 5, 3, 3, 8],
        {"max_tokens": 9, "temperature": 0.9, "seed": 4, "top_k": 20},
    ),
    ([11], {"max_tokens": 15, "temperature": 0.7, "seed": 1, "top_p": 0.9, "min_p": 0.05}),
    ([2, 4, 6, 8, 2, 4, 6, 8, 2, 4], {"max_tokens": 14, "temperature": 0, "lookup": 4}),
    ([7, 1, 7, 1], {"max_tokens": 10, "temperature": 0, "repetition_penalty": 1.3}),
    ([9, 8, 7, 6, 5], {"max_tokens": 8, "temperature": 1.2, "seed": 9, "ignore_eos": True}),
]

_solo: dict[tuple[str, int], tuple[list[int], str, str]] = {}


def solo(name: str, i: int) -> tuple[list[int], str, str]:
    """Request i alone, on a model with a single slot (nothing else can share its steps)."""
    if (name, i) not in _solo:
        ids, opts = REQUESTS[i]
        g = model(name, parallel=1).generate(ids, **opts)
        _solo[(name, i)] = (g.tokens, g.text, g.finish_reason)
    return _solo[(name, i)]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(0, len(REQUESTS) - 1), min_size=1, max_size=8),
    delays=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.003]), min_size=8, max_size=8),
    parallel=st.sampled_from([1, 2, 4]),
)
def test_random_arrivals_equal_solo_runs(
    name: str, picks: list[int], delays: list[float], parallel: int
) -> None:
    """Requests arrive from threads in random order and at random times; each result equals the
    request's solo run, whatever shared its steps."""
    m = model(name, parallel)
    results: dict[int, tuple[list[int], str, str]] = {}
    errors: list[BaseException] = []

    def client(k: int, i: int) -> None:
        try:
            time.sleep(delays[k])
            ids, opts = REQUESTS[i]
            g = m.generate(ids, **opts)
            results[k] = (g.tokens, g.text, g.finish_reason)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k, i)) for k, i in enumerate(picks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k, i in enumerate(picks):
        assert results[k] == solo(name, i), (k, i)


@pytest.mark.parametrize("name", NAMES)
def test_generate_batch_and_streams_equal_solo(name: str) -> None:
    m = model(name)
    batch = m.generate_batch([ids for ids, _ in REQUESTS[:1]] * 3, **REQUESTS[0][1])
    assert len(batch) == 3
    assert all((g.tokens, g.text, g.finish_reason) == solo(name, 0) for g in batch)
    pair = m.generate_batch(tuple([ids for ids, _ in REQUESTS[:1]] * 2), **REQUESTS[0][1])
    assert [g.tokens for g in pair] == [batch[0].tokens] * 2  # a tuple of prompts as a list
    with pytest.raises(PromptTypeError, match="list or tuple"):
        m.generate_batch("one prompt", max_tokens=1)  # a str is one prompt, not a batch
    streams = [m.stream(ids, **opts) for ids, opts in REQUESTS]
    texts = ["".join(s) for s in streams]
    for i, (s, text) in enumerate(zip(streams, texts, strict=True)):
        assert s.generation is not None
        assert (s.generation.tokens, text, s.generation.finish_reason) == solo(name, i)


def test_cancelled_stream_frees_its_slot() -> None:
    m = model("gpt2-tiny-hf", parallel=1)
    s = m.stream([1, 2, 3], max_tokens=10_000, temperature=0, ignore_eos=True)
    next(iter(s))
    s.close()
    deadline = time.monotonic() + 10
    while m.stats().active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert m.stats().active == 0
    # The single slot is free again: the next request runs (and equals its solo run).
    assert m.generate(REQUESTS[0][0], **REQUESTS[0][1]).tokens == solo("gpt2-tiny-hf", 0)[0]


class _Sink:
    """Model.submit's event sink: records each event and the thread that handed it over."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.threads: set[str] = set()
        self.ended = threading.Event()

    def put(self, event: tuple[str, object], /) -> None:
        self.events.append(event)
        self.threads.add(threading.current_thread().name)
        if event[0] in ("done", "error"):
            self.ended.set()


@pytest.mark.parametrize("name", NAMES)
def test_submit_hands_the_events_to_a_sink_in_order(name: str) -> None:
    m = model(name)
    prompt, opts = REQUESTS[1]
    sink = _Sink()
    request = m.submit(prompt, sink, **opts)
    del request  # the sink, not the handle, is the consumer: dropping it cancels nothing
    assert sink.ended.wait(30)
    kinds = [k for k, _ in sink.events]
    assert kinds == ["text"] * (len(kinds) - 1) + ["done"]
    gen = sink.events[-1][1]
    assert isinstance(gen, pyrustml.Generation)
    assert "".join(str(v) for _, v in sink.events[:-1]) == gen.text
    assert (gen.tokens, gen.text, gen.finish_reason) == solo(name, 1)
    assert sink.threads == {"pyrustml-engine"}  # on the engine thread, as the step ends


def test_a_sink_without_put_is_refused_before_anything_runs() -> None:
    m = model("gpt2-tiny-hf")
    before = m.stats().requests
    for bad in (None, print, object()):
        with pytest.raises(OptionTypeError, match="put"):
            m.submit([1, 2, 3], bad, max_tokens=2)  # type: ignore[arg-type]
    assert m.stats().requests == before


def test_closing_a_submission_frees_its_slot_without_an_end_event() -> None:
    m = model("gpt2-tiny-hf", parallel=1)
    first, closed = threading.Event(), threading.Event()

    class Holding(_Sink):
        """Holds the engine at the first piece until the request is closed (a real sink must
        not block; here it pins the moment of close() inside a running generation)."""

        def put(self, event: tuple[str, object], /) -> None:
            super().put(event)
            if not first.is_set():
                first.set()
                closed.wait(10)

    sink = Holding()
    request = m.submit([1, 2, 3], sink, max_tokens=10_000, temperature=0, ignore_eos=True)
    assert first.wait(30)
    request.close()
    closed.set()
    deadline = time.monotonic() + 10
    while m.stats().active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert m.stats().active == 0
    assert [k for k, _ in sink.events] == ["text"] and not sink.ended.is_set()
    assert m.generate(REQUESTS[0][0], **REQUESTS[0][1]).tokens == solo("gpt2-tiny-hf", 0)[0]


def test_a_sink_that_raises_cancels_its_request_not_the_engine() -> None:
    m = model("gpt2-tiny-hf", parallel=2)

    class Raising(_Sink):
        def put(self, event: tuple[str, object], /) -> None:
            super().put(event)
            raise ValueError("a broken sink")

    def tokens_within(seconds: float) -> list[int]:
        """A greedy request's tokens, from a daemon thread: a dead engine fails this, not hangs it."""
        out: list[list[int]] = []
        th = threading.Thread(
            target=lambda: out.append(m.generate(REQUESTS[0][0], **REQUESTS[0][1]).tokens), daemon=True
        )
        th.start()
        th.join(seconds)
        assert out, "the engine stopped serving"
        return out[0]

    bad = Raising()
    m.submit([1, 2, 3], bad, max_tokens=10_000, temperature=0, ignore_eos=True)
    # Beside it, and after it, requests run as they would alone.
    assert tokens_within(30) == solo("gpt2-tiny-hf", 0)[0]
    deadline = time.monotonic() + 10
    while m.stats().active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert m.stats().active == 0
    assert len(bad.events) == 1  # cut off at its first event
    assert tokens_within(30) == solo("gpt2-tiny-hf", 0)[0]


def test_closing_inside_the_last_step_sends_no_end() -> None:
    """close() while the step that finishes the request runs: its text may still come, its end
    (done) never does."""
    m = model("gpt2-tiny-hf", parallel=1)

    class Closing(_Sink):
        request: Any = None

        def put(self, event: tuple[str, object], /) -> None:
            super().put(event)
            if self.request is not None:
                self.request.close()

    sink = Closing()
    sink.request = m.submit([1, 2, 3], sink, max_tokens=1, temperature=0, ignore_eos=True)
    deadline = time.monotonic() + 10
    while (m.stats().active or m.stats().queued) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert not sink.ended.is_set() and {k for k, _ in sink.events} <= {"text"}


def test_a_sink_gets_each_pieces_logprobs_before_it() -> None:
    m = model("gpt2-tiny-hf")
    sink = _Sink()
    m.submit(REQUESTS[0][0], sink, logprobs=True, top_logprobs=2, **REQUESTS[0][1])
    assert sink.ended.wait(30)
    gen = sink.events[-1][1]
    assert isinstance(gen, pyrustml.Generation) and gen.logprobs is not None
    sent = [e for k, v in sink.events if k == "logprobs" for e in v]  # type: ignore[attr-defined]
    assert [e.token for e in sent] == [e.token for e in gen.logprobs] == gen.tokens
    kinds = [k for k, _ in sink.events]
    for i, k in enumerate(kinds[:-1]):
        if k == "logprobs":
            assert kinds[i + 1] in ("text", "done")  # entries travel just ahead of their text


def test_a_closed_stream_yields_nothing_more() -> None:
    m = model("gpt2-tiny-hf", parallel=1)
    s = m.stream([1, 2, 3], max_tokens=5, temperature=0, ignore_eos=True)
    deadline = time.monotonic() + 10
    while (m.stats().active or m.stats().queued) and time.monotonic() < deadline:
        time.sleep(0.005)
    s.close()  # finished in the engine, unread here
    assert list(s) == [] and s.generation is None


def test_prefix_cache_reuses_shared_positions() -> None:
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"), parallel=2)
    system = list(range(3, 40))
    a = m.generate([*system, 5, 6], max_tokens=4, temperature=0)
    b = m.generate([*system, 7, 8, 9], max_tokens=4, temperature=0)
    assert a.usage.cached_tokens == 0
    assert b.usage.cached_tokens == len(system)
    fresh = pyrustml.load(str(FIX / "gpt2-tiny-hf"), parallel=1).generate(
        [*system, 7, 8, 9], max_tokens=4, temperature=0
    )
    assert b.tokens == fresh.tokens and fresh.usage.cached_tokens == 0
    st_ = m.stats()
    assert st_.cached_tokens == len(system) and st_.prompt_tokens == 2 * len(system) + 5


def test_usage_logprobs_and_context_cut() -> None:
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"), ctx=20, parallel=2)
    g = m.generate([1, 2, 3], max_tokens=5, temperature=0, ignore_eos=True, logprobs=True, top_logprobs=3)
    assert (g.usage.prompt_tokens, g.usage.completion_tokens, g.usage.total_tokens) == (3, 5, 8)
    assert all(isinstance(v, int) for v in g.usage.as_dict().values())
    assert g.logprobs is not None and len(g.logprobs) == 5
    logits = m.logits([1, 2, 3, *g.tokens[:-1]])
    for j, lp in enumerate(g.logprobs):
        row = logits[2 + j].astype(np.float64)
        ref = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        assert lp.token == g.tokens[j] == int(np.argmax(row))
        assert abs(lp.logprob - ref[lp.token]) < 1e-4
        assert [t for t, _, _ in lp.top] == [int(i) for i in np.argsort(-row, kind="stable")[:3]]
        assert lp.top[0][2] == pytest.approx(lp.logprob, abs=1e-6)
    # max_tokens past the context: cut, and said so.
    g = m.generate([1, 2, 3], max_tokens=50, temperature=0, ignore_eos=True)
    # Positions 3 .. 19 hold generated tokens; the last one is chosen but never fed.
    assert g.finish_reason == "length" and g.truncated and len(g.tokens) == 20 - 3 + 1
    g = m.generate([1, 2, 3], max_tokens=4, temperature=0, ignore_eos=True)
    assert not g.truncated
    with pytest.raises(ContextLengthError):
        m.generate(list(range(1, 22)), max_tokens=1)
    with pytest.raises(OptionError):
        m.generate([1], max_tokens=1, top_logprobs=50)


def test_many_threads_share_steps() -> None:
    """16 concurrent greedy requests on 8 slots run in far fewer engine steps than one after
    another: their decode rows share steps (each weight streamed once per step for all of them).
    They are queued while the engine is held, so the count does not depend on thread timing."""
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"), parallel=8)
    before = m.stats().steps
    with m.exclusive():
        streams = [m.stream([k + 1, 2], max_tokens=20, temperature=0, ignore_eos=True) for k in range(16)]
    out = {k: _tokens(s) for k, s in enumerate(streams)}
    steps = m.stats().steps - before
    assert steps < 16 * 20 / 2, steps  # alone: 16 x 20 steps; two full batches need ~2 x 20
    single = pyrustml.load(str(FIX / "gpt2-tiny-hf"), parallel=1)
    for k in range(16):
        assert out[k] == single.generate([k + 1, 2], max_tokens=20, temperature=0, ignore_eos=True).tokens


def _tokens(s: pyrustml.TextStream) -> list[int]:
    for _ in s:
        pass
    assert s.generation is not None
    return s.generation.tokens


def test_prompt_rows_beside_decode_rows_follow_the_step_times() -> None:
    """A joining prompt's rows per step cost at most INTERFERENCE of a decode step, by the
    engine's own running timings, within [MIN_PREFILL_ROWS, prefill_rows]."""
    from pyrustml.generate.scheduler import INTERFERENCE, MIN_PREFILL_ROWS, PREFILL_ROWS

    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"), parallel=2)
    eng = m.engine
    assert eng.prompt_rows() == PREFILL_ROWS  # nothing timed yet
    eng._timed(0.010, 0)  # a decode-only step of 10 ms
    assert eng.prompt_rows() == PREFILL_ROWS  # no prompt row timed yet
    eng._timed(0.010 + 16 * 0.002, 16)  # 16 prompt rows beside it added 2 ms each
    assert eng.row_s == pytest.approx(0.002)
    assert int(INTERFERENCE * 10 / 2) < MIN_PREFILL_ROWS  # what fits is below the floor
    assert eng.prompt_rows() == MIN_PREFILL_ROWS
    for _ in range(40):  # cheap rows: the cap holds
        eng._timed(0.010 + 16 * 0.00001, 16)
    assert eng.prompt_rows() == PREFILL_ROWS
    for _ in range(40):
        eng._timed(0.010 + 16 * 0.0005, 16)  # 0.5 ms a row
    fit = int(INTERFERENCE * 0.010 / 0.0005 + 1e-9)
    assert MIN_PREFILL_ROWS < fit < PREFILL_ROWS
    assert eng.prompt_rows() in (fit - 1, fit)  # the running estimates converge to 0.5 ms
    # A real run with a joining prompt times its decode steps afresh; the outputs are unchanged.
    eng.decode_s = eng.row_s = 0.0
    first = m.stream([5, 6], max_tokens=30, temperature=0, ignore_eos=True)
    next(iter(first))
    joiner = m.generate(list(range(1, 60)), max_tokens=4, temperature=0, ignore_eos=True)
    alone = pyrustml.load(str(FIX / "gpt2-tiny-hf"), parallel=1)
    assert (
        joiner.tokens
        == alone.generate(list(range(1, 60)), max_tokens=4, temperature=0, ignore_eos=True).tokens
    )
    assert _tokens(first) == alone.generate([5, 6], max_tokens=30, temperature=0, ignore_eos=True).tokens
    assert eng.decode_s > 0
