"""Repo ids go through huggingface_hub: tested offline against a cache in the hub's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def offline(cache: Path) -> dict[str, str]:
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYRUSTML_LOG": ""}


def test_repo_id_loads_from_the_hub_cache(hub_cache: Path, cli: Any) -> None:
    r = cli(["--safetensors", "pyrustml-test/gpt2-tiny", "--prompt", "Hello", "-n", "5", "--temp", "0"],
                env=offline(hub_cache))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello")
    assert "eval time" in r.stderr


def test_uncached_repo_offline_is_one_clear_line(hub_cache: Path, cli: Any) -> None:
    r = cli(["--safetensors", "nobody/not-cached", "--prompt", "x"], env=offline(hub_cache))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "not in the local cache" in lines[0]
    assert "Traceback" not in r.stderr


def test_unknown_revision_offline_is_one_clear_line(hub_cache: Path, cli: Any) -> None:
    r = cli(["--safetensors", "pyrustml-test/gpt2-tiny", "--revision", "v9", "--prompt", "x"],
                env=offline(hub_cache))  # fmt: skip
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # The repo is cached: the message names the missing revision and what the cache holds,
    # instead of saying the repo was never downloaded.
    assert "revision 'v9' is not in the local cache" in r.stderr and "main" in r.stderr, r.stderr


def test_missing_local_directory(tmp_path: Path, cli: Any) -> None:
    r = cli(["--safetensors", str(tmp_path / "nope"), "--prompt", "x"])
    assert r.returncode == 1
    assert "no such directory" in r.stderr
