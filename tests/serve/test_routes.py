"""The OpenAI routes over real HTTP with the official client: results equal the library's own
(greedy and seeded), streaming equals non-streaming, usage and logprobs are right."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_harness import FIXTURES, Server, sse_lines

import pyrustml

GPT2 = "gpt2-tiny-hf"
GEMMA = "gemma3-tiny"
PROMPTS = ["The quick brown fox", "Once upon a time", "hello world", "In the beginning", "a b c d"]


@pytest.fixture(scope="module")
def gpt2_lib() -> pyrustml.Model:
    return pyrustml.load(str(FIXTURES / GPT2), threads=1)


@pytest.fixture(scope="module")
def gemma_lib() -> pyrustml.Model:
    return pyrustml.load(str(FIXTURES / GEMMA), threads=1)


def test_models_and_health(gpt2_server: Server) -> None:
    models = gpt2_server.client().models.list()
    assert [m.id for m in models.data] == [GPT2]
    with gpt2_server.http() as h:
        assert h.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("prompt", PROMPTS[:3])
def test_completion_greedy_equals_library(gpt2_server: Server, gpt2_lib: pyrustml.Model, prompt: str) -> None:
    r = gpt2_server.client().completions.create(model=GPT2, prompt=prompt, max_tokens=20, temperature=0)
    want = gpt2_lib.generate(prompt, max_tokens=20, temperature=0)
    assert r.choices[0].text == want.text
    assert r.choices[0].finish_reason == want.finish_reason
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(gpt2_lib.encode(prompt))
    assert r.usage.completion_tokens == len(want.tokens)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_token_prompt(gpt2_server: Server, gpt2_lib: pyrustml.Model) -> None:
    ids = gpt2_lib.encode("token ids in")
    r = gpt2_server.client().completions.create(model=GPT2, prompt=ids, max_tokens=8, temperature=0)
    assert r.choices[0].text == gpt2_lib.generate(ids, max_tokens=8, temperature=0).text


def test_completion_stream_equals_non_stream(gpt2_server: Server) -> None:
    c = gpt2_server.client()
    args = {"model": GPT2, "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0.8, "seed": 7}
    whole = c.completions.create(**args)  # type: ignore[call-overload]
    chunks = list(c.completions.create(stream=True, stream_options={"include_usage": True}, **args))  # type: ignore[call-overload]
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == whole.choices[0].text
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(ch.usage is None for ch in chunks[:-1])


def test_stream_wire_format_ends_with_done(gpt2_server: Server) -> None:
    body = {"model": GPT2, "prompt": "hello", "max_tokens": 5, "temperature": 0, "stream": True}
    with gpt2_server.http() as h, h.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = list(sse_lines(r))
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert all(e["object"] == "text_completion" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert "usage" not in events[-1]  # only with stream_options.include_usage


def test_chat_greedy_and_stream(gemma_server: Server, gemma_lib: pyrustml.Model) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    c = gemma_server.client()
    r = c.chat.completions.create(model=GEMMA, messages=messages, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    want = gemma_lib.chat(messages, max_tokens=16, temperature=0)
    assert r.choices[0].message.content == want.text
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == want.finish_reason
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(gemma_lib.render_chat(messages))
    assert r.usage.completion_tokens == len(want.tokens)
    chunks = list(
        c.chat.completions.create(
            model=GEMMA,
            messages=messages,  # type: ignore[arg-type]
            max_completion_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == want.text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(want.tokens)


def test_chat_seeded_sampling_equals_library(gemma_server: Server, gemma_lib: pyrustml.Model) -> None:
    messages = [{"role": "user", "content": "Tell me a story"}]
    opts = {"temperature": 0.9, "top_p": 0.9, "seed": 1234, "max_tokens": 20}
    r = gemma_server.client().chat.completions.create(
        model=GEMMA,
        messages=messages,  # type: ignore[arg-type]
        extra_body={"top_k": 40, "min_p": 0.01, "repeat_penalty": 1.1},
        **opts,  # type: ignore[arg-type]
    )
    want = gemma_lib.chat(messages, top_k=40, min_p=0.01, repetition_penalty=1.1, **opts)  # type: ignore[arg-type]
    assert r.choices[0].message.content == want.text


def test_stop_strings(gpt2_server: Server, gpt2_lib: pyrustml.Model) -> None:
    full = gpt2_lib.generate("The quick brown fox", max_tokens=30, temperature=0).text
    assert len(full) > 6
    stop = full[4:6]
    c = gpt2_server.client()
    for s in (stop, [stop, "\x00never"]):
        r = c.completions.create(
            model=GPT2, prompt="The quick brown fox", max_tokens=30, temperature=0, stop=s
        )
        assert r.choices[0].text == full[: full.index(stop)]
        assert r.choices[0].finish_reason == "stop"


def test_ignore_eos_runs_to_max_tokens(gpt2_server: Server) -> None:
    r = gpt2_server.client().completions.create(
        model=GPT2, prompt="x", max_tokens=40, temperature=0, extra_body={"ignore_eos": True}
    )
    assert r.usage is not None and r.usage.completion_tokens == 40
    assert r.choices[0].finish_reason == "length"


def test_chat_logprobs(gemma_server: Server, gemma_lib: pyrustml.Model) -> None:
    messages = [{"role": "user", "content": "hi"}]
    r = gemma_server.client().chat.completions.create(
        model=GEMMA,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    want = gemma_lib.chat(messages, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    assert want.logprobs is not None
    got = r.choices[0].logprobs
    assert got is not None and got.content is not None
    assert len(got.content) == len(want.tokens) == len(want.logprobs)
    for g, w in zip(got.content, want.logprobs, strict=True):
        assert g.token == w.text
        assert g.logprob == pytest.approx(w.logprob, abs=1e-6)
        assert [t.token for t in g.top_logprobs] == [t for _, t, _ in w.top]
        assert len(g.top_logprobs) == 3
        assert g.logprob <= 0.0
        # greedy: the chosen token is the most likely one
        assert g.logprob == pytest.approx(max(t.logprob for t in g.top_logprobs), abs=1e-6)


def test_completion_logprobs_streamed(gpt2_server: Server) -> None:
    c = gpt2_server.client()
    args = {"model": GPT2, "prompt": "hello world", "max_tokens": 10, "temperature": 0, "logprobs": 2}
    whole = c.completions.create(**args)  # type: ignore[call-overload]
    lp = whole.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
    assert len(lp.tokens) == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(lp.tokens) == whole.choices[0].text
    assert lp.top_logprobs is not None and all(len(t) <= 2 for t in lp.top_logprobs)
    streamed_tokens: list[str] = []
    streamed_lps: list[float] = []
    for ch in c.completions.create(stream=True, **args):  # type: ignore[call-overload]
        if ch.choices and ch.choices[0].logprobs is not None:
            streamed_tokens += ch.choices[0].logprobs.tokens or []
            streamed_lps += ch.choices[0].logprobs.token_logprobs or []
    assert streamed_tokens == lp.tokens
    assert streamed_lps == pytest.approx(lp.token_logprobs, abs=1e-6)


def _solo_and_concurrent(server: Server, requests: list[dict[str, object]]) -> tuple[list[str], list[str]]:
    c = server.client()

    def stream_text(req: dict[str, object]) -> str:
        chunks = c.completions.create(stream=True, **req)  # type: ignore[call-overload]
        return "".join(ch.choices[0].text for ch in chunks if ch.choices)

    solo = [stream_text(r) for r in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(stream_text, requests))
    return solo, together


@pytest.mark.parametrize("sampling", ["greedy", "seeded"])
def test_eight_concurrent_streams_equal_solo(gpt2_server: Server, sampling: str) -> None:
    reqs: list[dict[str, object]] = []
    for i in range(8):
        r: dict[str, object] = {
            "model": GPT2,
            "prompt": PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)),
            "max_tokens": 12 + 3 * i,  # different lengths: sequences join and leave mid-batch
            "extra_body": {"ignore_eos": True},
        }
        r |= {"temperature": 0} if sampling == "greedy" else {"temperature": 1.0, "seed": 100 + i}
        reqs.append(r)
    solo, together = _solo_and_concurrent(gpt2_server, reqs)
    assert together == solo
    assert len(set(solo)) > 1  # the requests differ, so a mix-up would show


def test_metrics_format(gpt2_server: Server) -> None:
    gpt2_server.client().completions.create(model=GPT2, prompt="count me", max_tokens=3, temperature=0)
    with gpt2_server.http() as h:
        r = h.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name, kind in [
        ("pyrustml_requests_total", "counter"),
        ("pyrustml_generated_tokens_total", "counter"),
        ("pyrustml_prompt_tokens_total", "counter"),
        ("pyrustml_prefix_cache_hit_tokens_total", "counter"),
        ("pyrustml_active_sequences", "gauge"),
        ("pyrustml_queued_sequences", "gauge"),
        ("pyrustml_step_seconds", "summary"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text, name
    m = gpt2_server.metrics()
    assert m["pyrustml_requests_total"] >= 1
    assert m["pyrustml_generated_tokens_total"] >= 3
    assert m["pyrustml_step_seconds_count"] >= 1 and m["pyrustml_step_seconds_sum"] > 0
    assert 'pyrustml_http_requests_total{route="completions",status="200"}' in text


def test_served_model_name(start_server: object, tmp_path: Path) -> None:
    server = start_server(FIXTURES / GPT2, "--served-model-name", "my-gpt")  # type: ignore[operator]
    c = server.client()
    assert [m.id for m in c.models.list().data] == ["my-gpt"]
    r = c.completions.create(model="my-gpt", prompt="hi", max_tokens=2, temperature=0)
    assert r.model == "my-gpt"
