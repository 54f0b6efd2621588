"""Helpers of the server tests (imported by name: conftest.py puts this directory on sys.path):
a real pyrustml-serve in a subprocess on a free 127.0.0.1 port, the official OpenAI client
pointed at it, and a wider GPT-2 (slow enough per token that a test can act while a stream is
still running: disconnect, drain, a full queue)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures"
START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A port nobody listens on now: bind port 0 and let the kernel pick one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int
    api_key: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1",
            api_key=api_key or self.api_key or "unused",
            max_retries=0,  # a 503 or 429 must reach the test, not be retried
            timeout=60.0,
        )

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of /metrics, by name."""
        with self.http() as h:
            r = h.get("/metrics")
        r.raise_for_status()
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start(model: Path, *args: str, api_key: str | None = None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "pyrustml.serve", str(model), "--port", str(port), "--log-level", "warning"]
    if api_key:
        cmd += ["--api-key", api_key]
    proc = subprocess.Popen(
        [*cmd, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(FIXTURES.parent.parent.parent),  # outside the source tree: the installed package runs
    )
    server = Server(proc, port, api_key)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"pyrustml-serve exited {proc.returncode} at start:\n{out}")
        try:
            if httpx.get(server.url + "/health", timeout=2.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"pyrustml-serve did not answer /health within {START_TIMEOUT_S} s")


ServerFactory = Callable[..., Server]


ServerFactory = Callable[..., Server]

WIDE = {"n_embd": 768, "n_layer": 6, "n_head": 12, "n_positions": 1024}


def make_wide_gpt2(out: Path) -> None:
    """gpt2-tiny-hf's tokenizer with a GPT-2 768 wide, 6 deep, 1024 positions (random weights,
    ~45 MB in Q8_0): a few milliseconds per token, so a 900-token stream lasts seconds."""
    src = FIXTURES / "gpt2-tiny-hf"
    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, out / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(WIDE)
    (out / "config.json").write_text(json.dumps(cfg))
    w, n_pos, vocab = cfg["n_embd"], cfg["n_positions"], cfg["vocab_size"]
    rng = np.random.default_rng(0)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).astype(np.float32)

    tensors = {
        "transformer.wte.weight": normal(vocab, w),
        "transformer.wpe.weight": normal(n_pos, w),
        "transformer.ln_f.weight": np.ones(w, np.float32),
        "transformer.ln_f.bias": np.zeros(w, np.float32),
    }
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        tensors |= {
            p + "ln_1.weight": np.ones(w, np.float32),
            p + "ln_1.bias": np.zeros(w, np.float32),
            p + "ln_2.weight": np.ones(w, np.float32),
            p + "ln_2.bias": np.zeros(w, np.float32),
            p + "attn.c_attn.weight": normal(w, 3 * w),
            p + "attn.c_attn.bias": normal(3 * w),
            p + "attn.c_proj.weight": normal(w, w),
            p + "attn.c_proj.bias": normal(w),
            p + "mlp.c_fc.weight": normal(w, 4 * w),
            p + "mlp.c_fc.bias": normal(4 * w),
            p + "mlp.c_proj.weight": normal(4 * w, w),
            p + "mlp.c_proj.bias": normal(w),
        }
    from safetensors.numpy import save_file

    save_file(tensors, str(out / "model.safetensors"))


def sse_lines(response: httpx.Response) -> Iterator[str]:
    """The data fields of a streamed response's events, as the client library would read them."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]
