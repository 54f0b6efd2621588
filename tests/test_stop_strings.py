"""Stop strings inside a sequence: the text handed out, piece by piece, is exactly the decoded
text cut at the first stop, whatever the token boundaries; and a token's work does not grow
with the text (only the held-back tail, shorter than the longest stop, is searched again)."""

from __future__ import annotations

import queue
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import FIX

import pyrustml
from pyrustml.generate.sampling import SamplingParams
from pyrustml.generate.sequence import Sequence
from pyrustml.io.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    m = pyrustml.load(str(FIX / "gpt2-tiny-openai"), quant="q8_0")
    t = m.tokenizer
    m.close()
    return t


def feed(tok: Tokenizer, ids: list[int], stops: list[str]) -> tuple[list[str], Sequence]:
    """Accept `ids` as generated tokens; the text events handed out and the sequence."""
    seq = Sequence([0], SamplingParams(max_tokens=len(ids) + 1), stops, tok, frozenset(), ctx=10**6)
    seq.t_start = seq.t_submit = 1.0
    for token in ids:
        if not seq.accept(token):
            break
    seq.complete()
    events: queue.SimpleQueue[Any] = seq.events  # type: ignore[assignment]
    pieces = []
    while not events.empty():
        kind, value = events.get()
        if kind == "text":
            pieces.append(value)
    return pieces, seq


WORDS = ["ab", "c", " the", "abc", "x", "\n", "é", "bca", "stop", "sto", "p", "cab"]


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=40),
    stops=st.lists(st.sampled_from(["abc", "cab", "stop", "\n\n", "ca", "zz"]), min_size=1, max_size=3),
)
def test_text_is_cut_at_the_first_stop(tok: Tokenizer, words: list[str], stops: list[str]) -> None:
    ids = [i for w in words for i in tok.encode(w, add_special_tokens=False)]
    full = tok.decode(ids)
    cuts = [full.find(s) for s in stops if s in full]
    want = full[: min(cuts)] if cuts else full
    pieces, seq = feed(tok, ids, stops)
    assert "".join(pieces) == want
    assert seq.result is not None and seq.result.text == want
    assert seq.finish == ("stop" if cuts else "length")


def test_held_back_text_stays_short(tok: Tokenizer) -> None:
    """400 tokens that keep almost completing a stop: what is held back never outgrows the
    longest stop, so the search per token is bounded (it rescanned the whole text before)."""
    stops = ["abcd", "xyz!"]
    ids = tok.encode("abc xy " * 200, add_special_tokens=False)
    seq = Sequence([0], SamplingParams(max_tokens=len(ids) + 1), stops, tok, frozenset(), ctx=10**6)
    seq.t_start = seq.t_submit = 1.0
    longest = 0
    for token in ids:
        assert seq.accept(token)
        longest = max(longest, len(seq.held))
    assert 0 < longest < max(len(s) for s in stops)
    assert seq.emitted + len(seq.held) == len(tok.decode(ids))
