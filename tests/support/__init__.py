"""What the test suites share: where the committed fixtures are, and the repository root.

tests/conftest.py puts tests/ on sys.path (pytest runs in importlib mode, which does not), so any
test module can `from support import FIX`."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
