"""This directory's shared helpers (child.py) are imported by name: put the directory on sys.path
(the suite's importlib mode does not)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
