"""Prompt-lookup speculative decoding: the drafts it proposes, and output identical to plain
greedy decoding whatever the drafts, the stops, the window or the cache reuse."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support import FIX

import pyrustml
from pyrustml.generate.prompt_lookup import PromptLookup

MODELS = ["gpt2-tiny-hf", "gemma3-tiny", "gemma3-tiny-v5"]
_cache: dict[str, Any] = {}


def model(name: str) -> Any:
    if name not in _cache:
        _cache[name] = pyrustml.load(str(FIX / name))
    return _cache[name]


def test_draft_follows_the_first_occurrence_of_the_longest_suffix() -> None:
    lk = PromptLookup([5, 6, 7, 8, 9, 6, 7, 1, 2, 3])
    assert lk.draft(4) == []  # suffix 3, 2 3, 1 2 3 never seen before
    lk.push(6)
    assert lk.draft(3) == [7, 8, 9]  # "6" first occurred at index 1
    lk.push(7)
    assert lk.draft(2) == [8, 9]  # "6 7": its first occurrence, not the later one followed by 1
    lk.push(1)
    assert lk.draft(5) == [2, 3, 6, 7, 1]  # "6 7 1" (3-gram) beats the shorter suffixes
    assert lk.draft(0) == []
    # A loop of period 1: the first occurrence has the longest continuation.
    loop = PromptLookup([4, 4, 4, 4, 4])
    assert loop.draft(3) == [4, 4]  # "4 4 4" first ended at index 3


def _prompts(m: Any) -> list[list[int]]:
    rng = np.random.default_rng(7)
    v = min(m.net.vocab_size, 300)
    passage = rng.integers(3, v, 12).tolist()
    start = [m.bos_id] if m.bos_id is not None else []
    return [
        start + passage * 3,  # a passage quoted three times
        start + rng.integers(3, v, 20).tolist(),  # no repeats in the prompt
        [*start, 7, 7, 7, 7],
    ]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", [1, 3, 16])
def test_output_equals_plain_greedy(name: str, n: int) -> None:
    m = model(name)
    # Long enough to run past gemma3-tiny's sliding window (8) with drafts in flight.
    budget = min(60, m.net.max_positions - 40)
    for ids in _prompts(m):
        for ignore_eos in (True, False):
            plain = m.generate(ids, max_tokens=budget, temperature=0.0, ignore_eos=ignore_eos)
            spec = m.generate(ids, max_tokens=budget, temperature=0.0, ignore_eos=ignore_eos, lookup=n)
            assert spec.tokens == plain.tokens and spec.text == plain.text
            assert spec.finish_reason == plain.finish_reason
            t = spec.timings
            assert 0 <= t.accepted_tokens <= t.draft_tokens


def test_drafts_are_proposed_and_accepted_on_repetitive_text() -> None:
    m = model("gemma3-tiny")
    ids = _prompts(m)[0]
    g = m.generate(ids, max_tokens=40, temperature=0.0, ignore_eos=True, lookup=8)
    assert g.timings.draft_tokens > 0 and g.timings.accepted_tokens > 0
    # Fewer forward passes than tokens: each verify pass yields its accepted drafts too.
    assert len(g.timings.step_ms) < len(g.tokens) - 1


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 5])
def test_budget_and_stop_strings_cut_where_greedy_does(max_tokens: int) -> None:
    m = model("gpt2-tiny-hf")
    ids = _prompts(m)[0]
    plain = m.generate(ids, max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    spec = m.generate(ids, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, lookup=8)
    assert spec.tokens == plain.tokens
    long = m.generate(ids, max_tokens=30, temperature=0.0, ignore_eos=True)
    if len(long.text) > 6:
        stop = long.text[3:6]
        a = m.generate(ids, max_tokens=30, temperature=0.0, ignore_eos=True, stop=[stop])
        b = m.generate(ids, max_tokens=30, temperature=0.0, ignore_eos=True, stop=[stop], lookup=8)
        assert a.text == b.text and a.finish_reason == b.finish_reason == "stop"


def test_chat_cache_reuse_after_drafts_equals_a_fresh_run() -> None:
    """Drafts write the cache past the accepted tokens; the next turn's reuse must account for
    it (gemma3-tiny's sliding layers keep a ring of window + chunk slots)."""
    m = model("gemma3-tiny")
    fresh = pyrustml.load(str(FIX / "gemma3-tiny"))
    msgs = [{"role": "user", "content": "abc abc abc abc"}]
    first = m.chat(msgs, max_tokens=20, temperature=0.0, lookup=8)
    msgs2 = [*msgs, {"role": "assistant", "content": first.text}, {"role": "user", "content": "abc"}]
    again = m.chat(msgs2, max_tokens=20, temperature=0.0, lookup=8)
    want = fresh.generate(fresh.render_chat(msgs2), max_tokens=20, temperature=0.0)
    assert again.tokens == want.tokens


def test_lookup_needs_greedy_and_a_sane_size() -> None:
    m = model("gpt2-tiny-hf")
    for bad in ({"temperature": 0.7}, {"temperature": 0.0, "repetition_penalty": 1.2}):
        with pytest.raises(ValueError, match="greedy"):
            m.generate("Hi", max_tokens=3, lookup=4, **bad)
    for n in (-1, 65):
        with pytest.raises(ValueError, match="lookup"):
            m.generate("Hi", max_tokens=3, temperature=0.0, lookup=n)


def test_cli_lookup_flag(cli: Any) -> None:
    path = str(FIX / "gpt2-tiny-openai")
    base = ["--safetensors", path, "--prompt", "a b a b a b", "-n", "12", "--temp", "0", "--json"]
    a, b = cli(base), cli([*base, "--lookup", "4"])
    assert a.returncode == 0 and b.returncode == 0, b.stderr
    import json

    assert json.loads(a.stdout)["completion_token_ids"] == json.loads(b.stdout)["completion_token_ids"]
    bad = cli([*base[:-1], "--temp", "0.8", "--lookup", "4"])
    assert bad.returncode == 2 and "greedy" in bad.stderr and "Traceback" not in bad.stderr
