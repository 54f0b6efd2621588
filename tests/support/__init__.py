"""What the test suites share: where the committed fixtures are, the repository root, and
running one of the package's commands in a fresh interpreter.

tests/conftest.py puts tests/ on sys.path (pytest runs in importlib mode, which does not), so any
test module can `from support import FIX`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"


def run_module(
    module: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m module args` in a fresh interpreter with this environment plus env, run from
    outside the checkout's source tree so that it imports the installed package."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=str(ROOT.parent),
    )
