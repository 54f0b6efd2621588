"""A bounded coverage-guided run of tools/fuzz_atheris.py (the safetensors header parser and the
config readers) when atheris is installed; `-m soak` runs it longer."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from child import child_env

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
SHORT_SECONDS = 5
SOAK_SECONDS = 120


def _corpus(tmp: Path) -> Path:
    """Seeds: the fixtures' real headers (length prefix and JSON, no data)."""
    corpus = tmp / "corpus"
    corpus.mkdir()
    for name in ("gpt2-tiny-hf", "gemma3-tiny"):
        raw = (FIX / name / "model.safetensors").read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        (corpus / name).write_bytes(raw[: 8 + n])
    return corpus


def _fuzz(tmp: Path, target: str, *limits: str) -> None:
    pytest.importorskip("atheris")
    args = [sys.executable, str(ROOT / "tools" / "fuzz_atheris.py"), target, *limits]
    if target == "header":
        args.append(str(_corpus(tmp)))
    r = subprocess.run(args, capture_output=True, text=True, env=child_env(), cwd=str(tmp), timeout=900)
    tail = r.stderr[-3000:]
    assert r.returncode == 0, tail
    assert "Done" in r.stderr, tail
    print(f"[atheris {target}] {[line for line in r.stderr.splitlines() if 'DONE' in line][-1:]}")


@pytest.mark.parametrize("target", ["header", "config"])
def test_fuzz_short(tmp_path: Path, target: str) -> None:
    _fuzz(tmp_path, target, f"-max_total_time={SHORT_SECONDS}")


@pytest.mark.soak
@pytest.mark.parametrize("target", ["header", "config"])
def test_fuzz_soak(tmp_path: Path, target: str) -> None:
    _fuzz(tmp_path, target, f"-max_total_time={SOAK_SECONDS}")
