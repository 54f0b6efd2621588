"""Fixtures of the server tests; the helpers live in serve_harness.py, imported by name (pytest
runs in importlib mode, so this directory goes on sys.path)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_harness import FIXTURES, Server, ServerFactory, make_wide_gpt2, start


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """start_server(model_dir, *cli_args, api_key=None) -> Server; every one is stopped after."""
    started: list[Server] = []

    def factory(model: Path, *args: str, api_key: str | None = None) -> Server:
        s = start(model, *args, api_key=api_key)
        started.append(s)
        return s

    try:
        yield factory
    finally:
        for s in started:
            s.stop()


def _module_server(model: str) -> Iterator[Server]:
    """One server of a committed fixture for a whole test module: 8 slots, 1 thread."""
    s = start(FIXTURES / model, "--parallel", "8", "--threads", "1")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def gpt2_server() -> Iterator[Server]:
    yield from _module_server("gpt2-tiny-hf")


@pytest.fixture(scope="module")
def gemma_server() -> Iterator[Server]:
    yield from _module_server("gemma3-tiny")


@pytest.fixture(scope="session")
def wide_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wide") / "gpt2-wide"
    make_wide_gpt2(out)
    return out
