"""This directory's helpers (harness.py, strategies.py) and reliability/child.py are imported by
name: put both directories on sys.path (the suite's importlib mode does not)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reliability"))  # child.py
