"""Streams a consumer holds open: they never block the model, and interleaved with other calls
(in one thread or several) each still yields exactly what it would alone."""

from __future__ import annotations

import threading

import pytest
from support import FIX

import pyrustml


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
@pytest.mark.parametrize("lookup", [0, 4])
def test_interleaved_streams_equal_their_own_runs(name: str, lookup: int) -> None:
    m = pyrustml.load(str(FIX / name))
    prompts = ["one two three one two three", "a b c d e f", "zzz"]
    # Past gemma3-tiny's sliding window (8), so a rebuilt ring cache is exercised.
    want = [
        m.generate(p, max_tokens=30, temperature=0.0, ignore_eos=True, lookup=lookup).text for p in prompts
    ]
    streams = [m.stream(p, max_tokens=30, temperature=0.0, ignore_eos=True, lookup=lookup) for p in prompts]
    got = ["" for _ in prompts]
    live = list(range(len(prompts)))
    while live:  # round robin: every piece of one stream is followed by another stream's
        for i in list(live):
            try:
                got[i] += next(streams[i])
            except StopIteration:
                live.remove(i)
        # A whole call in between, too.
        assert (
            m.generate("zzz", max_tokens=3, temperature=0.0).tokens
            == m.generate("zzz", max_tokens=3, temperature=0.0).tokens
        )
    assert got == want


def test_abandoned_stream_does_not_block_other_threads() -> None:
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"))
    want = m.generate("abc", max_tokens=8, temperature=0.0).tokens
    s = m.stream("hello", max_tokens=40, temperature=0.0, ignore_eos=True)
    next(s)  # suspended mid-generation, never resumed
    result: list[list[int]] = []
    th = threading.Thread(
        target=lambda: result.append(m.generate("abc", max_tokens=8, temperature=0.0).tokens)
    )
    th.start()
    th.join(10)
    assert not th.is_alive() and result == [want]
    rest = "".join(s)  # and the stream itself still finishes correctly afterwards
    full = m.generate("hello", max_tokens=40, temperature=0.0, ignore_eos=True).text
    assert full.endswith(rest) and rest
