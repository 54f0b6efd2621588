"""`python tools/bench.py ...` runs the end-to-end benchmark, pyrustml.perf.bench (also installed as
`pyrustml-bench`); see `python tools/bench.py --help`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("pyrustml") is None:  # run from a checkout: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyrustml.perf.bench import main

if __name__ == "__main__":
    sys.exit(main())
