"""Feedback while loading: load(progress=...) reports every tensor's bytes as it is converted, and
pyrustml-infer draws a tqdm bar from it on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import select
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support import FIX

import pyrustml
from pyrustml.io.progress import wanted


def _tensor_bytes(directory: Path) -> int:
    """The data bytes of every tensor, read from the safetensors headers here (not by pyrustml)."""
    total = 0
    for f in directory.glob("*.safetensors"):
        raw = f.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        header.pop("__metadata__", None)
        total += sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
    return total


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gpt2-tiny-sharded", "gemma3-tiny"])
def test_progress_counts_every_tensor_once(name: str) -> None:
    calls: list[tuple[int, int]] = []
    pyrustml.load(str(FIX / name), threads=1, progress=lambda done, total: calls.append((done, total)))
    total = _tensor_bytes(FIX / name)
    assert calls and all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)  # grows with each tensor
    assert done[-1] == total


def test_bar_only_for_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYRUSTML_LOG", raising=False)
    assert wanted(False) is sys.stderr.isatty()
    assert wanted(True) is False
    monkeypatch.setenv("PYRUSTML_LOG", "error")
    assert wanted(False) is False


def _cli_on_a_terminal(args: list[str], env: dict[str, str] | None = None) -> str:
    """pyrustml-infer with stderr on a pseudo-terminal; returns what it wrote there."""
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "pyrustml", *args], stdout=subprocess.DEVNULL, stderr=slave,
        env={**os.environ, **(env or {})}, cwd=str(FIX.parent.parent.parent),
    )  # fmt: skip
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=60)
    os.close(master)
    return out.decode("utf-8", "replace")


def test_cli_bar_on_a_terminal_and_off_when_asked() -> None:
    model = str(FIX / "gemma3-tiny")
    base = ["-m", model, "-p", "hi", "-n", "1", "--temp", "0", "--raw"]
    assert "loading weights" in _cli_on_a_terminal(base)
    assert "loading weights" not in _cli_on_a_terminal([*base, "--quiet"])
    assert "loading weights" not in _cli_on_a_terminal(base, env={"PYRUSTML_LOG": "error"})
