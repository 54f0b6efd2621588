"""Shared fixtures: the committed tiny checkpoints (made by tools/make_fixtures.py) and a
hub cache laid out the way huggingface_hub lays it out, for offline tests of repo ids."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# tests/support is importable from every test module (importlib mode adds nothing to sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import FIX, run_module

FIXTURES = FIX
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def fixture_dir(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_dir():
        pytest.fail(f"missing fixture {path}: run `python tools/make_fixtures.py`")
    return path


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HF_HUB_CACHE holding pyrustml-test/gpt2-tiny as a real snapshot (refs/main -> sha)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / "models--pyrustml-test--gpt2-tiny"
    snap = repo / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True)
    for f in fixture_dir("gpt2-tiny-openai").iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return cache


CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def _run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """pyrustml-infer in a fresh interpreter (python -m pyrustml behaves the same)."""
    return run_module("pyrustml", *args, timeout=timeout, env=env)


@pytest.fixture
def cli() -> CliRunner:
    return _run_cli


@pytest.fixture
def fixtures() -> Callable[[str], Path]:
    return fixture_dir
