"""The parent side: runs a batch of cases in a fresh interpreter (runner.py) under a deadline and
an RLIMIT_AS cap, and checks the contract: every case either works (and its result is
well-formed) or raises a PyrustmlError subclass; the process never dies by a signal, never
hangs, never prints a Python traceback, never lets a foreign exception out."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from child import child_env

HERE = Path(__file__).resolve().parent
AS_LIMIT = 2 << 30  # bytes of address space: a loaded tiny model uses about 0.3 GiB
BATCH_DEADLINE_S = 60.0

# Counters for the report (printed by the tests with -s).
STATS: dict[str, int] = {}


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def encode(value: Any) -> Any:
    """Values JSON cannot carry as themselves, tagged for runner._decode."""
    import numpy as np

    if isinstance(value, np.generic):  # first: np.float64 is a float too
        return {"__numpy__": [type(value).__name__, encode(value.item())]}
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, bytes):
        import base64

        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    return value


def run_batch(cases: list[dict[str, Any]], deadline: float = BATCH_DEADLINE_S) -> list[dict[str, Any]]:
    """Run the cases in one child and assert the contract; returns the per-case results."""
    with tempfile.TemporaryDirectory(prefix="pyrustml-adv-") as tmp:
        cases_file = Path(tmp) / "cases.json"
        cases_file.write_text(json.dumps([encode(c) for c in cases]))
        work = Path(tmp) / "work"
        work.mkdir()
        try:
            r = subprocess.run(
                [sys.executable, str(HERE / "runner.py"), str(cases_file), str(work)],
                capture_output=True,
                text=True,
                errors="replace",
                env=child_env(RUST_BACKTRACE="0", PYTHONFAULTHANDLER="1"),
                cwd=tmp,
                timeout=deadline,
                preexec_fn=_limit,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            done = len(out.splitlines())
            raise AssertionError(
                f"hang: the batch passed its {deadline:.0f} s deadline at case {done}: "
                f"{json.dumps(encode(cases[min(done, len(cases) - 1)]))[:600]}"
            ) from None
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    where = cases[min(len(results), len(cases) - 1)]
    signal = f" = signal {-r.returncode}" if r.returncode < 0 else ""
    assert r.returncode == 0, (
        f"the child died (exit {r.returncode}{signal}) "
        f"at case {len(results)}: {json.dumps(encode(where))[:600]}\n{r.stderr[-2000:]}"
    )
    assert len(results) == len(cases), (len(results), len(cases), r.stderr[-2000:])
    assert "Traceback (most recent call last)" not in r.stderr, r.stderr[-3000:]
    for res, case in zip(results, cases, strict=True):
        STATS[res["outcome"]] = STATS.get(res["outcome"], 0) + 1
        STATS[f"kind:{case['kind']}"] = STATS.get(f"kind:{case['kind']}", 0) + 1
        if res["outcome"] == "family":
            STATS[f"error:{res['error']}"] = STATS.get(f"error:{res['error']}", 0) + 1
        assert res["outcome"] in ("ok", "family"), (
            f"contract broken by {json.dumps(encode(case))[:600]}:\n{json.dumps(res, indent=1)[:2500]}"
        )
    return results


def report() -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(STATS.items()))


def soak() -> bool:
    return os.environ.get("PYRUSTML_ADVERSARIAL_SOAK") == "1"
