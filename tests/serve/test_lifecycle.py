"""What happens around a request: a client that leaves mid-stream, a full queue, SIGTERM.

These run on the wider GPT-2 (a few ms per token) with long ignore_eos streams, so the test acts
while a stream is still running; every wait is bounded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from serve_harness import Server, ServerFactory, sse_lines

LONG = 1000  # tokens: seconds of decoding on the wide model (context 1024)


def _body(server: Server, max_tokens: int = LONG, stream: bool = True) -> dict[str, object]:
    return {
        "model": "gpt2-wide",
        "prompt": "Once upon a time",
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }


@contextlib.contextmanager
def _admitted_stream(server: Server) -> Iterator[None]:
    """A streaming completion that the server admitted (200), its client connected for the block
    and gone after it."""
    with server.http() as h, h.stream("POST", "/v1/completions", json=_body(server)) as r:
        assert r.status_code == 200
        yield


def _wait_for(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_disconnect_frees_the_sequence(start_server: ServerFactory, wide_gpt2: Path) -> None:
    server = start_server(wide_gpt2, "--threads", "1", "--parallel", "2")
    before = server.metrics()["pyrustml_generated_tokens_total"]
    with _admitted_stream(server):
        # Random weights may hold text back (bytes that are not yet UTF-8): wait for the engine,
        # not for an event.
        _wait_for(lambda: server.metrics()["pyrustml_active_sequences"] == 1, 30, "the sequence to run")
    # the connection is closed: the sequence leaves at its next step
    _wait_for(lambda: server.metrics()["pyrustml_active_sequences"] == 0, 10, "active sequences == 0")
    m = server.metrics()
    assert m["pyrustml_http_requests_in_flight"] == 0
    generated = m["pyrustml_generated_tokens_total"] - before
    assert 1 <= generated < LONG / 2, generated  # it stopped early, it did not run to max_tokens
    time.sleep(0.5)
    assert server.metrics()["pyrustml_generated_tokens_total"] - before == generated  # and stays stopped
    ok = server.client().completions.create(model="gpt2-wide", prompt="hi", max_tokens=3, temperature=0)
    assert ok.usage is not None and ok.usage.completion_tokens >= 1


def test_disconnect_while_queued_frees_the_request(start_server: ServerFactory, wide_gpt2: Path) -> None:
    server = start_server(wide_gpt2, "--threads", "1", "--parallel", "1")
    with _admitted_stream(server):  # running
        with _admitted_stream(server):  # queued
            _wait_for(lambda: server.metrics()["pyrustml_queued_sequences"] == 1, 30, "a queued sequence")
        # the queued client left: its request is gone, the running one goes on
        _wait_for(lambda: server.metrics()["pyrustml_queued_sequences"] == 0, 10, "the queue to empty")
        _wait_for(lambda: server.metrics()["pyrustml_http_requests_in_flight"] == 1, 10, "its release")
        assert server.metrics()["pyrustml_active_sequences"] == 1


def _threads(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/task"))


def test_requests_hold_no_thread_of_their_own(start_server: ServerFactory, wide_gpt2: Path) -> None:
    """The engine thread hands each request's text to the event loop (pump.py): running and
    queued requests add no thread, so clients cost no thread each and one that leaves has none
    to leave blocked. (The count may only fall: an idle worker of anyio's pool may retire.)"""
    server = start_server(wide_gpt2, "--threads", "1", "--parallel", "2")

    def sequences(active: int, queued: int) -> None:
        def pred() -> bool:
            m = server.metrics()
            return m["pyrustml_active_sequences"] == active and m["pyrustml_queued_sequences"] == queued

        _wait_for(pred, 30, f"{active} active and {queued} queued sequences")

    with contextlib.ExitStack() as streams:
        for active, queued in ((1, 0), (2, 0), (2, 1)):
            streams.enter_context(_admitted_stream(server))
            sequences(active, queued)
            if (active, queued) == (1, 0):
                base = _threads(server)  # the engine, libq8's pool, the loop, anyio's worker
        assert _threads(server) <= base
    sequences(0, 0)
    _wait_for(lambda: server.metrics()["pyrustml_http_requests_in_flight"] == 0, 10, "every release")


def test_full_queue_gets_503_with_retry_after(start_server: ServerFactory, wide_gpt2: Path) -> None:
    server = start_server(wide_gpt2, "--threads", "1", "--parallel", "1", "--max-queue", "1")
    with server.http() as h1, server.http() as h2, server.http() as h3:
        with (
            h1.stream("POST", "/v1/completions", json=_body(server)) as r1,
            h2.stream("POST", "/v1/completions", json=_body(server)) as r2,
        ):
            assert r1.status_code == 200 and r2.status_code == 200  # both admitted, r1 running
            r3 = h3.post("/v1/completions", json=_body(server, 4, stream=False))
            assert r3.status_code in (429, 503)
            assert int(r3.headers["retry-after"]) >= 1
            assert set(r3.json()["error"]) == {"message", "type", "param", "code"}
    _wait_for(lambda: server.metrics()["pyrustml_http_requests_in_flight"] == 0, 10, "requests to finish")
    with server.http() as h:
        assert h.post("/v1/completions", json=_body(server, 4, stream=False)).status_code == 200


def test_sigterm_drains_then_exits_0(start_server: ServerFactory, wide_gpt2: Path) -> None:
    server = start_server(wide_gpt2, "--threads", "1", "--drain-timeout", "60")
    n = 200  # long enough to be running at SIGTERM, short enough to finish within the drain bound
    got: dict[str, object] = {}

    def consume() -> None:
        body = {**_body(server, n), "stream_options": {"include_usage": True}}
        with server.http() as h, h.stream("POST", "/v1/completions", json=body) as r:
            data = list(sse_lines(r))
        got["data"] = data

    t = threading.Thread(target=consume)
    t.start()
    _wait_for(lambda: server.metrics()["pyrustml_http_requests_in_flight"] == 1, 30, "the stream to start")
    server.proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: _health(server) == 503, 5, "/health to say draining")
    with server.http() as h:
        r = h.post("/v1/completions", json=_body(server, 2, stream=False))
    assert r.status_code == 503 and "retry-after" in r.headers
    assert server.proc.wait(60) == 0
    t.join(30)
    data = got["data"]
    assert isinstance(data, list) and data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["usage"]["completion_tokens"] == n  # the stream ran to its end


def test_sigterm_drain_is_bounded(start_server: ServerFactory, wide_gpt2: Path) -> None:
    server = start_server(wide_gpt2, "--threads", "1", "--drain-timeout", "1")
    done = threading.Event()

    def consume() -> None:
        try:
            with server.http() as h, h.stream("POST", "/v1/completions", json=_body(server)) as r:
                for _ in sse_lines(r):
                    pass
        except httpx.HTTPError:
            pass  # cut off at the end of the drain: expected
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    _wait_for(lambda: server.metrics()["pyrustml_http_requests_in_flight"] == 1, 30, "the stream to start")
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert time.monotonic() - t0 < 15  # 1 s of drain, then uvicorn's bounded shutdown
    assert done.wait(10)


def _health(server: Server) -> int:
    try:
        return httpx.get(server.url + "/health", timeout=2).status_code
    except httpx.TransportError:
        return -1
