"""The tokenizers library as a boundary: what it throws (plain Exception, pyo3's PanicException)
becomes a TokenizerError; exponentially expanding pipelines are refused at load; lone surrogates
are prompt errors; streaming detokenization (DecodeStream) never splits a UTF-8 character and,
with its flush, always equals the decode of all ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import FIX
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

import pyrustml
from pyrustml.errors import PromptError, PyrustmlError, TokenizerError
from pyrustml.io.tokenizer import MAX_EXPANSION, StreamDecoder
from pyrustml.io.tokenizer import Tokenizer as PTokenizer


def with_tokenizer(tmp: Path, edit: object) -> Path:
    d = tmp / "gpt2"
    shutil.copytree(FIX / "gpt2-tiny-hf", d)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    edit(tok)  # type: ignore[operator]
    tok.save(str(d / "tokenizer.json"))
    return d


# A pipeline stage that multiplies the text's length: 2^30 for the normalizer, 4^5 for the decoder.
EXPONENTIAL = {
    "normalizer": lambda: normalizers.Sequence([normalizers.Replace("a", "aa")] * 30),
    "decoder": lambda: decoders.Sequence([decoders.Replace("a", "aaaa")] * 5),
}


@pytest.mark.parametrize("stage", ["normalizer", "decoder"])
def test_exponential_stage_is_refused_at_load(tmp_path: Path, stage: str) -> None:
    d = with_tokenizer(tmp_path, lambda t: setattr(t, stage, EXPONENTIAL[stage]()))
    with pytest.raises(TokenizerError, match=stage):
        pyrustml.load(str(d))


def test_a_modest_normalizer_loads(tmp_path: Path) -> None:
    def edit(t: Tokenizer) -> None:
        t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(" ", "\u2581")])

    d = with_tokenizer(tmp_path, edit)
    assert pyrustml.load(str(d)).generate("a b", max_tokens=2, temperature=0).tokens
    assert MAX_EXPANSION >= 18  # NFKD alone must pass


def test_a_regex_that_panics_is_a_tokenizer_error(tmp_path: Path) -> None:
    def edit(t: Tokenizer) -> None:
        t.pre_tokenizer = pre_tokenizers.Split(Regex("(a+)+$"), "isolated")

    d = with_tokenizer(tmp_path, edit)
    m = pyrustml.load(str(d))
    with pytest.raises(TokenizerError) as info:
        m.generate("a" * 50000 + "c", max_tokens=1)
    assert type(info.value.__cause__).__name__ == "PanicException"


def test_wordlevel_without_unk_is_a_tokenizer_error(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    Tokenizer(models.WordLevel({"a": 0, "b": 1})).save(str(d / "tokenizer.json"))
    tok = PTokenizer(str(d))
    with pytest.raises(TokenizerError, match="encode"):
        tok.encode("zzz", add_special_tokens=False)


def test_unreadable_tokenizer_json_is_a_tokenizer_error(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    (d / "tokenizer.json").write_text('{"model": {"type": "Nope"}}')
    with pytest.raises(TokenizerError):
        PTokenizer(str(d))


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
def test_lone_surrogate_prompt_is_a_prompt_error(name: str) -> None:
    m = pyrustml.load(str(FIX / name))
    with pytest.raises(PromptError, match="surrogate"):
        m.generate("abc\udc80", max_tokens=1)


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_stream_pieces_and_flush_equal_the_full_decode(name: str, data: st.DataObject) -> None:
    tok = _tokenizers()[name]
    text = data.draw(st.text(alphabet=st.sampled_from("aé日本 ö\n🙂z"), max_size=12))
    ids = tok.encode(text, add_special_tokens=False)
    # Also arbitrary ids: byte tokens that never form a character.
    ids += data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=6))
    dec = StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids]
    tail = dec.flush()
    whole = tok.decode(ids)
    assert "".join(pieces) + tail == whole
    for p in pieces:
        assert not p.endswith("\ufffd") or "\ufffd" in whole


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
def test_a_split_character_is_held_back_until_complete(name: str) -> None:
    tok = _tokenizers()[name]
    ids = tok.encode("日本", add_special_tokens=False)
    assert len(ids) > 2  # byte-level: the characters span several tokens
    dec = StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == "日本" and dec.flush() == ""
    dec = StreamDecoder(tok)
    assert [dec.push(i) for i in ids[:1]] == [""]
    assert dec.flush() == tok.decode(ids[:1])  # the lone byte, as U+FFFD


_CACHE: dict[str, PTokenizer] = {}


def _tokenizers() -> dict[str, PTokenizer]:
    if not _CACHE:
        for name in ("gpt2-tiny-hf", "gemma3-tiny"):
            _CACHE[name] = PTokenizer(str(FIX / name))
    return _CACHE


def test_every_tokenizer_error_is_in_the_family() -> None:
    assert issubclass(TokenizerError, PyrustmlError)
