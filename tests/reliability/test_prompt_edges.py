"""Prompts at the edges: empty, whitespace-only, long digit runs, emoji ZWJ sequences, a BOM, NBSP
and NUL; streams cut in the middle of a multi-byte character; and the errors for prompts that
are not prompts (bad token ids, wrong types). The tiny fixtures are random models: their greedy
continuations are byte salad, which is exactly what exercises the streaming decoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support import FIX

import pyrustml
from pyrustml.errors import ContextLengthError, PromptError, PromptTypeError, PyrustmlError
from pyrustml.io.tokenizer import StreamDecoder, Tokenizer

REPLACEMENT = "\ufffd"
EDGE_STRINGS = [
    "",
    " ",
    "\t",
    "\n\n",
    "👩\u200d👩\u200d👧\u200d👦",  # family: four emoji joined by ZERO WIDTH JOINERs
    "\ufeff//",  # a byte-order mark, then text
    "a\xa0\xa0\x00b",  # NBSPs and a NUL
    "é€😀",  # 2-, 3- and 4-byte UTF-8
]
NEW_TOKENS = 12
MODELS = ["gpt2-tiny-hf", "gemma3-tiny-v5"]


@pytest.fixture(scope="module")
def models() -> dict[str, pyrustml.Model]:
    return {name: pyrustml.load(str(FIX / name), quant="q8_0") for name in MODELS}


def start_token(m: pyrustml.Model) -> int:
    """The documented start token: GPT-2's <|endoftext|>, Gemma's <bos>."""
    text = "<|endoftext|>" if m.net.model_type == "gpt2" else "<bos>"
    i = m.tokenizer.token_id(text)
    assert i is not None
    return i


def greedy(m: pyrustml.Model, prompt: str | list[int], n: int = NEW_TOKENS) -> pyrustml.Generation:
    return m.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True)


def check_stream(m: pyrustml.Model, prompt: str | list[int], n: int = NEW_TOKENS) -> pyrustml.Generation:
    """generate and stream agree; the text is the decoding of the generated ids; only the final
    piece (the flush at the end) may end in a held-back, unfinished character."""
    g = greedy(m, prompt, n)
    pieces = list(m.stream(prompt, max_tokens=n, temperature=0, ignore_eos=True))
    assert "".join(pieces) == g.text
    assert all(pieces)
    assert not any(p.endswith(REPLACEMENT) for p in pieces[:-1])
    assert g.text == m.tokenizer.decode(g.tokens)
    g.text.encode("utf-8")  # valid text: no lone surrogates
    assert len(g.tokens) == n and g.finish_reason == "length"
    return g


# ---- the edge strings, through encode, generate and stream -----------------------------------
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("text", EDGE_STRINGS, ids=[repr(s) for s in EDGE_STRINGS])
def test_edge_string_encodes_and_generates(models: dict[str, pyrustml.Model], name: str, text: str) -> None:
    m = models[name]
    body = m.tokenizer.encode(text, add_special_tokens=False)
    assert m.tokenizer.decode(body) == text  # byte-level BPE loses nothing, not even NUL or BOM
    ids = m.encode(text)
    if name.startswith("gemma"):
        assert ids == [start_token(m), *body]  # Gemma: BOS first, always
    else:
        assert ids == (body or [start_token(m)])  # GPT-2: nothing added, unless it is empty
    g = check_stream(m, text)
    assert g.prompt_tokens == ids


@pytest.mark.parametrize("name", MODELS)
def test_empty_prompt_is_the_start_token(models: dict[str, pyrustml.Model], name: str) -> None:
    m = models[name]
    assert m.encode("") == [start_token(m)]
    assert m.encode([]) == [start_token(m)]
    assert greedy(m, "").tokens == greedy(m, [start_token(m)]).tokens


@pytest.mark.parametrize("name", MODELS)
def test_digit_runs_up_to_and_past_the_context(models: dict[str, pyrustml.Model], name: str) -> None:
    """500 digits encode (and decode back); they do not fit the tiny models' contexts, which is
    the documented ContextLengthError, and the longest run that fits generates normally."""
    m = models[name]
    digits = "7" * 500
    ids = m.encode(digits)
    assert m.tokenizer.decode(m.tokenizer.encode(digits, add_special_tokens=False)) == digits
    assert len(ids) > m.net.max_positions
    with pytest.raises(ContextLengthError, match=str(len(ids))):
        greedy(m, digits)
    with pytest.raises(ContextLengthError):
        list(m.stream(digits, max_tokens=2))
    fit = "7" * m.net.max_positions
    while len(m.encode(fit)) > m.net.max_positions:
        fit = fit[:-1]
    g = m.generate(fit, max_tokens=4, temperature=0, ignore_eos=True)
    assert len(g.prompt_tokens) == m.net.max_positions
    assert len(g.tokens) == 1  # the context is full after the first new token


# ---- streams cut inside a character -----------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_generation_cut_at_every_length(models: dict[str, pyrustml.Model], name: str) -> None:
    """max_tokens = 1 .. N on prompts whose greedy continuation holds incomplete UTF-8: every
    cut gives the decoding of exactly those ids (an unfinished character is one U+FFFD at the
    end, never a broken string), and the stream gives the same text."""
    m = models[name]
    mid_char_cuts = 0
    for prompt in EDGE_STRINGS[4:]:
        full = greedy(m, prompt)
        for k in range(1, NEW_TOKENS + 1):
            g = check_stream(m, prompt, k)
            assert g.tokens == full.tokens[:k]
            mid_char_cuts += g.text.endswith(REPLACEMENT)
    assert mid_char_cuts >= 3, "the fixture no longer produces cuts inside a character"


def token_bytes(tok: Tokenizer, i: int) -> int:
    """How many bytes of text a byte-level BPE token stands for (one alphabet symbol each)."""
    piece = tok.tok.id_to_token(i)
    assert piece is not None
    return len(piece)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("text", EDGE_STRINGS[4:], ids=[repr(s) for s in EDGE_STRINGS[4:]])
def test_stream_decoder_holds_back_partial_utf8(
    models: dict[str, pyrustml.Model], name: str, text: str
) -> None:
    """Feed the ids of text one by one and stop after every prefix: what was pushed out is
    exactly the complete characters so far, and the flush adds at most one U+FFFD for the
    unfinished one (as a lossy UTF-8 decoder of those bytes would)."""
    tok = models[name].tokenizer
    ids = tok.encode(text, add_special_tokens=False)
    utf8 = text.encode("utf-8")
    assert len(ids) > len(text), "these characters should take several byte tokens each"
    nbytes = 0
    for k in range(len(ids) + 1):
        d = StreamDecoder(tok)
        pushed = "".join(d.push(i) for i in ids[:k])
        if k:
            nbytes += token_bytes(tok, ids[k - 1])
        prefix = utf8[:nbytes]
        assert pushed == prefix.decode("utf-8", errors="ignore")
        assert REPLACEMENT not in pushed
        final = pushed + d.flush()
        assert final == prefix.decode("utf-8", errors="replace")
        assert final.count(REPLACEMENT) <= 1 and final.rstrip(REPLACEMENT) == pushed
    assert nbytes == len(utf8)


def test_stream_decoder_passes_a_real_replacement_character_through(
    models: dict[str, pyrustml.Model],
) -> None:
    """U+FFFD in the text itself is held only until the next token, not forever."""
    tok = models["gpt2-tiny-hf"].tokenizer
    ids = tok.encode("a\ufffdb", add_special_tokens=False)
    d = StreamDecoder(tok)
    pieces = [d.push(i) for i in ids]
    assert "".join(pieces) == "a\ufffdb" and d.flush() == ""


# ---- prompts that are not prompts --------------------------------------------------------------
def vocab(m: pyrustml.Model) -> int:
    return m.net.vocab_size


BAD_IDS: list[Any] = [[-1], [0, -5], ["vocab"], [2**70], [3, "vocab+1"]]
BAD_TYPES: list[Any] = [
    None, 5, 3.5, b"bytes", (1, 2), {1, 2}, [True], [1, False], [1.0], ["a"], [[1]], [None],
    [np.bool_(True)], [np.float32(1)], np.array([1, 2]),
]  # fmt: skip


def _ids(m: pyrustml.Model, spec: list[Any]) -> list[Any]:
    return [vocab(m) if x == "vocab" else vocab(m) + 1 if x == "vocab+1" else x for x in spec]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("spec", BAD_IDS, ids=[str(s) for s in BAD_IDS])
def test_token_ids_outside_the_vocabulary(
    models: dict[str, pyrustml.Model], name: str, spec: list[Any]
) -> None:
    """A PromptError (one family, and a ValueError as argument errors are) naming the first bad
    id and the vocabulary size, from every entry point; the model stays usable."""
    m = models[name]
    before = greedy(m, [1, 2], 3).tokens
    ids = _ids(m, spec)
    bad = [i for i in ids if not 0 <= i < vocab(m)]
    for call in (
        lambda: m.generate(ids, max_tokens=2),
        lambda: list(m.stream(ids, max_tokens=2)),
        lambda: m.logits(ids),
    ):
        with pytest.raises(PromptError, match="vocabulary") as err:
            call()
        assert isinstance(err.value, ValueError) and isinstance(err.value, PyrustmlError)
        assert str(bad[0]) in str(err.value) and str(vocab(m)) in str(err.value)
    assert greedy(m, [1, 2], 3).tokens == before


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("prompt", BAD_TYPES, ids=[repr(p) for p in BAD_TYPES])
def test_prompts_of_the_wrong_type(models: dict[str, pyrustml.Model], name: str, prompt: Any) -> None:
    """A PromptTypeError (one family, and a TypeError) naming what was passed instead."""
    m = models[name]
    for call in (lambda: m.generate(prompt, max_tokens=2), lambda: list(m.stream(prompt, max_tokens=2))):
        with pytest.raises(
            PromptTypeError, match="prompt must be a string or a list of integer token ids"
        ) as err:
            call()
        assert isinstance(err.value, TypeError) and isinstance(err.value, PyrustmlError)
        assert type(prompt).__name__ in str(err.value)


def test_numpy_integer_ids_are_token_ids(models: dict[str, pyrustml.Model]) -> None:
    m = models["gpt2-tiny-hf"]
    want = greedy(m, [5, 6, 7]).tokens
    assert greedy(m, [np.int64(5), np.int32(6), np.uint16(7)]).tokens == want
    assert greedy(m, list(np.array([5, 6, 7]))).tokens == want
