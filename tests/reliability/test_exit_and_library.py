"""Interpreter exit with the pool's workers spinning, and a PYRUSTML_LIBQ8 that is not libq8.

A worker that spins inside libq8 when the library is unmapped dies by SIGSEGV: the spin time
(PYRUSTML_SPIN_US) decides how often. With a spin of 100 ms every exit used to crash; the library
is now never unloaded and its destructor joins the workers, so every run must exit 0."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest
from child import child_env
from support import FIX

GENERATE_AND_EXIT = r"""
import sys
import pyrustml
m = pyrustml.load(sys.argv[1], threads=2)
print(m.generate("Hello", max_tokens=4, temperature=0).tokens, flush=True)
"""


def run_python(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """python args in a fresh interpreter, in cwd, with child_env(**env); a minute at most."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=child_env(**env),
        cwd=str(cwd),
        timeout=60,
    )


def generate_and_exit(cwd: Path, spin_us: str) -> subprocess.CompletedProcess[str]:
    return run_python(cwd, "-c", GENERATE_AND_EXIT, str(FIX / "gpt2-tiny-hf"), PYRUSTML_SPIN_US=spin_us)


@pytest.mark.parametrize("spin_us", ["100000", "20000"])
def test_exit_with_long_spinning_workers_is_clean(tmp_path: Path, spin_us: str) -> None:
    for _ in range(4):
        r = generate_and_exit(tmp_path, spin_us)
        assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
        assert r.stdout.startswith("[")


@pytest.mark.parametrize("spin_us", ["-5", "abc", "99999999999999999999999", ""])
def test_hostile_spin_settings_still_run(tmp_path: Path, spin_us: str) -> None:
    r = generate_and_exit(tmp_path, spin_us)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])


def test_a_library_without_q8_symbols_is_a_library_error(tmp_path: Path) -> None:
    other = ctypes.util.find_library("z") or ctypes.util.find_library("m")
    if other is None:
        pytest.skip("no system library to stand in for a wrong libq8")
    script = (
        "import pyrustml.errors as e\n"
        "try:\n"
        "    import pyrustml.engine._ffi\n"
        "except e.LibraryError as exc:\n"
        "    print('LibraryError', exc)\n"
    )
    r = run_python(tmp_path, "-c", script, PYRUSTML_LIBQ8=other)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("LibraryError"), r.stdout
    assert "q8_" in r.stdout
