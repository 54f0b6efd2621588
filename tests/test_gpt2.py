"""GPT-2 against transformers' float32 forward on tiny random checkpoints (tools/make_fixtures.py):
every key layout, f32/f16 sharded, Q8_0, prefill vs decode, threads, and the refusals."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import FIX
from support.references import (
    assert_f32_close,
    assert_prefill_equals_decode,
    assert_q8_cosine,
    expected,
    load_reference,
)

import pyrustml
from pyrustml.errors import ContextLengthError, ModelFormatError, UnsupportedModelError
from pyrustml.io.tokenizer import StreamDecoder


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    return load_reference("gpt2-tiny")


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, str], pyrustml.Model]:
    return {}


def get(models: dict[tuple[str, str], pyrustml.Model], name: str, quant: str) -> pyrustml.Model:
    key = (name, quant)
    if key not in models:
        models[key] = pyrustml.load(str(FIX / name), quant=quant)
    return models[key]


CHECKPOINTS = ["gpt2-tiny-hf", "gpt2-tiny-openai", "gpt2-tiny-sharded"]


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_f32_logits_match_transformers(ref: dict[str, Any], models: Any, name: str) -> None:
    m = get(models, name, "f32")
    for i, seq in enumerate(ref["sequences"]):
        want, _ = expected(ref, name, i)
        got = m.logits(seq)
        assert got.shape == want.shape
        assert_f32_close(got, want, f"sequence {i}")


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_f32_greedy_matches_transformers(ref: dict[str, Any], models: Any, name: str) -> None:
    m = get(models, name, "f32")
    eos = ref["eos_token_id"]
    for i, seq in enumerate(ref["sequences"]):
        _, want = expected(ref, name, i)
        g = m.generate(seq, max_tokens=len(want), temperature=0)
        # The reference ignores EOS; our generation stops there with finish_reason "stop".
        cut = want.index(eos) if eos in want else len(want)
        assert g.tokens == want[:cut]
        assert g.finish_reason == ("stop" if cut < len(want) else "length")


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gpt2-tiny-sharded"])
def test_q8_cosine(ref: dict[str, Any], models: Any, name: str) -> None:
    m = get(models, name, "q8_0")
    for i, seq in enumerate(ref["sequences"]):
        assert_q8_cosine(m.logits(seq), expected(ref, name, i)[0], f"sequence {i}")


@pytest.mark.parametrize("quant", ["f32", "q8_0"])
def test_prefill_equals_step_by_step_decode(ref: dict[str, Any], models: Any, quant: str) -> None:
    m = get(models, "gpt2-tiny-openai", quant)
    assert_prefill_equals_decode(m, ref["sequences"][2])


def test_both_key_layouts_give_identical_logits(ref: dict[str, Any], models: Any) -> None:
    seq = ref["sequences"][1]
    a = get(models, "gpt2-tiny-hf", "q8_0").logits(seq)
    b = get(models, "gpt2-tiny-openai", "q8_0").logits(seq)
    np.testing.assert_array_equal(a, b)


def test_greedy_identical_for_every_thread_count(ref: dict[str, Any]) -> None:
    seq = ref["sequences"][2]
    outs = []
    for threads in (1, 2, 3):
        m = pyrustml.load(str(FIX / "gpt2-tiny-openai"), threads=threads)
        outs.append(m.generate(seq, max_tokens=15, temperature=0).tokens)
        outs.append(m.generate(seq, max_tokens=15, temperature=0).tokens)
    pyrustml.RuntimeConfig()  # back to the default pool
    assert all(o == outs[0] for o in outs)


def test_concurrent_callers_get_their_sequential_results(ref: dict[str, Any], models: Any) -> None:
    m = get(models, "gpt2-tiny-openai", "q8_0")
    prompts = [ref["sequences"][1], ref["sequences"][2], [5, 6, 7], [9]]
    alone = [m.generate(p, max_tokens=12, temperature=0).tokens for p in prompts]
    results: dict[int, list[int]] = {}

    def worker(k: int) -> None:
        for _ in range(2):
            results[k] = m.generate(prompts[k], max_tokens=12, temperature=0).tokens

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[k] for k in range(len(prompts))] == alone


def test_interrupted_stream_leaves_the_model_usable(ref: dict[str, Any], models: Any) -> None:
    m = get(models, "gpt2-tiny-openai", "q8_0")
    fresh = m.generate("Hello", max_tokens=10, temperature=0)
    it = m.stream("Hello", max_tokens=30, temperature=0)
    with pytest.raises(KeyboardInterrupt):
        for _ in it:
            raise KeyboardInterrupt  # the consumer is interrupted between pieces
    again = m.generate("Hello", max_tokens=10, temperature=0)
    assert again.tokens == fresh.tokens and again.text == fresh.text


def test_stream_joins_to_generate_text(models: Any) -> None:
    m = get(models, "gpt2-tiny-openai", "q8_0")
    opts: dict[str, Any] = {"max_tokens": 25, "temperature": 0.9, "seed": 7, "top_k": 50}
    pieces = list(m.stream("The quick", **opts))
    assert "".join(pieces) == m.generate("The quick", **opts).text
    assert all(p for p in pieces)


def test_stop_strings_cut_the_text(models: Any) -> None:
    m = get(models, "gpt2-tiny-openai", "q8_0")
    full = m.generate("Hello", max_tokens=30, temperature=0)
    if len(full.text) < 4:
        pytest.fail("fixture continuation too short to test stop strings")
    stop = full.text[2:4]
    g = m.generate("Hello", max_tokens=30, temperature=0, stop=[stop])
    assert g.finish_reason == "stop"
    assert g.text == full.text[: full.text.index(stop)]
    assert "".join(m.stream("Hello", max_tokens=30, temperature=0, stop=[stop])) == g.text


def test_stream_decoder_holds_back_a_split_character(models: Any) -> None:
    tok = get(models, "gpt2-tiny-openai", "q8_0").tokenizer
    ids = tok.encode("é€", add_special_tokens=False)
    assert len(ids) >= 2, "the fixture tokenizer should split these multi-byte characters"
    d = StreamDecoder(tok)
    pieces = [d.push(i) for i in ids] + [d.flush()]
    assert "".join(pieces) == "é€"
    assert all("\ufffd" not in p for p in pieces)


def test_context_limits(ref: dict[str, Any], models: Any) -> None:
    m = get(models, "gpt2-tiny-openai", "q8_0")
    n_pos = ref["model"]["n_positions"]
    with pytest.raises(ContextLengthError):
        m.generate([1] * (n_pos + 1), max_tokens=1, temperature=0)
    prompt = [3] * (n_pos - 4)
    g = m.generate(prompt, max_tokens=100, temperature=0.8, seed=1)
    assert len(prompt) + len(g.tokens) <= n_pos + 1
    if g.finish_reason == "length":
        assert len(prompt) + len(g.tokens) == n_pos + 1


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": -1.0}, {"top_p": 2.0}, {"top_k": -1}, {"max_tokens": 0}, {"temperature": float("nan")}],
)
def test_bad_generation_options(models: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        get(models, "gpt2-tiny-openai", "q8_0").generate("Hi", **kwargs)


def edited_copy(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    d = tmp_path / "model"
    shutil.copytree(FIX / "gpt2-tiny-openai", d)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("flag", ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"])
def test_unimplemented_config_flags_are_refused(tmp_path: Path, flag: str) -> None:
    d = edited_copy(tmp_path, lambda c: c.__setitem__(flag, True))
    with pytest.raises(UnsupportedModelError, match=flag):
        pyrustml.load(str(d))


def test_unknown_model_type_lists_the_supported_ones(tmp_path: Path) -> None:
    d = edited_copy(tmp_path, lambda c: c.__setitem__("model_type", "mamba"))
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        pyrustml.load(str(d))


def test_wrong_shape_in_config_is_a_format_error(tmp_path: Path) -> None:
    d = edited_copy(tmp_path, lambda c: c.__setitem__("n_embd", 32))
    with pytest.raises(ModelFormatError, match="shape"):
        pyrustml.load(str(d))


def test_missing_tensor_is_a_format_error(tmp_path: Path) -> None:
    d = edited_copy(tmp_path, lambda c: c.__setitem__("n_layer", 3))
    with pytest.raises(ModelFormatError, match=r"h\.2"):
        pyrustml.load(str(d))


def test_empty_prompt_uses_the_documented_start_token(models: Any, ref: dict[str, Any]) -> None:
    g = get(models, "gpt2-tiny-openai", "q8_0").generate("", max_tokens=3, temperature=0)
    assert g.prompt_tokens == [ref["eos_token_id"]]
