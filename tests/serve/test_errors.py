"""Bad requests get OpenAI's error object with the right status; the server keeps serving."""

from __future__ import annotations

import subprocess

import openai
import pytest
from serve_harness import FIXTURES, Server, ServerFactory, free_port
from support import run_module

GPT2 = "gpt2-tiny-hf"


def _error(r: object) -> dict[str, object]:
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi"', None),  # malformed JSON
        (b"[1, 2]", None),  # JSON, but not an object
        (b'{"model": "gpt2-tiny-hf"}', "prompt"),  # missing field
        (b'{"prompt": "hi"}', "model"),
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "max_tokens": "5"}', "max_tokens"),  # wrong type
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "temperature": "hot"}', "temperature"),
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "stream": 1}', "stream"),
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "max_tokens": 0}', "max_tokens"),  # out of range
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "top_p": 1.5}', "top_p"),
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "seed": -1}', "seed"),
        (b'{"model": "gpt2-tiny-hf", "prompt": "hi", "n": 2}', "n"),
        (b'{"model": "gpt2-tiny-hf", "prompt": {"text": "hi"}}', "prompt"),
    ],
)
def test_bad_completion_bodies_get_400(gpt2_server: Server, body: bytes, param: str | None) -> None:
    with gpt2_server.http() as h:
        r = h.post("/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = _error(r)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


def test_bad_chat_bodies_get_400(gpt2_server: Server) -> None:
    cases = [
        ({"model": GPT2}, "messages"),
        ({"model": GPT2, "messages": []}, "messages"),
        ({"model": GPT2, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": GPT2, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ]
    with gpt2_server.http() as h:
        for body, param in cases:
            r = h.post("/v1/chat/completions", json=body)
            assert r.status_code == 400, (body, r.text)
            assert _error(r)["param"] == param, body


def test_unknown_route_and_method_answer_in_openai_shape(gpt2_server: Server) -> None:
    with gpt2_server.http() as h:
        r = h.get("/v1/engines")
        assert r.status_code == 404 and _error(r)["code"] == "not_found"
        r = h.get("/v1/completions")
        assert r.status_code == 405
        _error(r)


def test_unknown_model_is_400(gpt2_server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gpt2_server.client().completions.create(model="gpt-4o", prompt="hi", max_tokens=2)
    assert info.value.status_code == 400
    assert info.value.param == "model"  # type: ignore[attr-defined]
    assert info.value.code == "model_not_found"


def test_prompt_plus_max_tokens_beyond_context_is_400(gpt2_server: Server) -> None:
    c = gpt2_server.client()
    with pytest.raises(openai.BadRequestError) as info:
        c.completions.create(model=GPT2, prompt="hello", max_tokens=1000)  # the context is 64
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "max_tokens"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as info:
        c.completions.create(model=GPT2, prompt="word " * 200, max_tokens=1)
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "prompt"  # type: ignore[attr-defined]
    # and it still serves
    assert c.completions.create(model=GPT2, prompt="hello", max_tokens=2, temperature=0).choices


def test_library_errors_map_to_400(gpt2_server: Server) -> None:
    with gpt2_server.http() as h:
        # token ids outside the vocabulary: the library's PromptError
        r = h.post("/v1/completions", json={"model": GPT2, "prompt": [5, 10**6], "max_tokens": 2})
        assert r.status_code == 400 and "vocabulary" in _error(r)["message"]  # type: ignore[operator]
        # a chat on a checkpoint without a chat template: ChatTemplateError
        chat = {"model": GPT2, "messages": [{"role": "user", "content": "x"}]}
        r = h.post("/v1/chat/completions", json=chat)
        assert r.status_code == 400 and "chat template" in _error(r)["message"]  # type: ignore[operator]
        assert h.get("/health").status_code == 200


def test_body_over_the_limit_is_413(start_server: ServerFactory) -> None:
    server = start_server(FIXTURES / GPT2, "--max-body-bytes", "2000")
    big = {"model": GPT2, "prompt": "x" * 3000, "max_tokens": 1}
    with server.http() as h:
        r = h.post("/v1/completions", json=big)
        assert r.status_code == 413
        assert _error(r)["code"] == "request_too_large"

        def chunks() -> object:  # no Content-Length: the limit holds for a chunked body too
            for _ in range(10):
                yield b" " * 500

        r = h.post("/v1/completions", content=chunks(), headers={"Content-Type": "application/json"})  # type: ignore[arg-type]
        assert r.status_code == 413
        ok = h.post("/v1/completions", json={"model": GPT2, "prompt": "x", "max_tokens": 1})
        assert ok.status_code == 200


def test_api_key(start_server: ServerFactory) -> None:
    server = start_server(FIXTURES / GPT2, api_key="s3cret")
    with server.http() as h:  # carries the right key
        assert h.get("/v1/models").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        with server.http() as h:
            h.headers.clear()
            h.headers.update(headers)
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/completions"), ("GET", "/metrics")):
                r = h.request(method, path, json={"model": GPT2, "prompt": "x"})
                assert r.status_code == 401, (headers, path)
                assert _error(r)["code"] == "invalid_api_key"
            assert h.get("/health").status_code == 200  # probes need no key
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="wrong").models.list()
    ok = server.client().completions.create(model=GPT2, prompt="x", max_tokens=1)
    assert ok.choices


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("pyrustml.serve", *args, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        [],
        [str(FIXTURES / GPT2), "--port", "http"],
        [str(FIXTURES / GPT2), "--port", "70000"],
        [str(FIXTURES / GPT2), "--parallel", "0"],
        [str(FIXTURES / GPT2), "--quant", "q2"],
        [str(FIXTURES / GPT2), "--no-such-option"],
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str]) -> None:
    p = _serve_cli(*args)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrustml-serve: error:"), p.stderr


def test_load_error_exits_1_and_public_bind_warns(tmp_path: object) -> None:
    p = _serve_cli("/nonexistent/model-dir", "--host", "0.0.0.0", "--port", str(free_port()))
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2, p.stderr
    assert lines[0].startswith("pyrustml-serve: warning: binding 0.0.0.0 without --api-key")
    assert lines[1].startswith("pyrustml-serve: error:") and "Traceback" not in p.stderr


def test_loopback_bind_does_not_warn() -> None:
    p = _serve_cli("/nonexistent/model-dir", "--port", str(free_port()))
    assert p.returncode == 1
    assert "warning" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_port_in_use_exits_1(gpt2_server: Server) -> None:
    p = _serve_cli(str(FIXTURES / GPT2), "--port", str(gpt2_server.port))
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot bind" in lines[0]
