"""Every kernel path below the one this machine picks (PYRUSTML_ISA forces it in a fresh
process): the model conformance suites pass on it, and greedy generation is the same on all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from child import child_env
from support import FIX, ROOT

import pyrustml

# Every name libq8/src/dispatch.c can register; those this CPU lacks are skipped.
ISA_NAMES = ["ref", "avx2", "avx512", "avx512vnni", "amx", "neon", "neon_dotprod"]
SUITES = [ROOT / "tests" / "test_gpt2.py", ROOT / "tests" / "test_gemma3.py"]
SUITE_TIMEOUT_S = 180  # each suite runs in a few seconds; this only stops a hang


def default_isa() -> str:
    """The path a process picks on its own (this process may have been started with one forced)."""
    r = subprocess.run(
        [sys.executable, "-c", "import pyrustml; print(pyrustml.kernels.isa_active())"],
        capture_output=True, text=True, env=child_env(inherit_isa=False), cwd="/", timeout=60, check=True,
    )  # fmt: skip
    return r.stdout.strip()


SUPPORTED = pyrustml.kernels.isa_supported()
BEST = default_isa()


def isa_params() -> list[object]:
    out: list[object] = []
    for name in ISA_NAMES:
        if name not in SUPPORTED:
            out.append(pytest.param(name, marks=pytest.mark.skip(reason=f"this CPU has no {name} path")))
        elif name == BEST:
            # The ordinary test run already covers the path the machine picks.
            out.append(pytest.param(name, marks=pytest.mark.skip(reason=f"{name} is the default path")))
        else:
            out.append(name)
    return out


def test_every_supported_path_is_known() -> None:
    # A new path in dispatch.c must be added to ISA_NAMES, or it would go untested here.
    assert set(SUPPORTED) <= set(ISA_NAMES), SUPPORTED
    assert BEST == SUPPORTED[-1]


@pytest.mark.parametrize("isa", isa_params())
def test_model_conformance_on_forced_path(isa: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         *map(str, SUITES)],
        capture_output=True, text=True, env=child_env(inherit_isa=False, PYRUSTML_ISA=isa), cwd=str(tmp_path),
        timeout=SUITE_TIMEOUT_S,
    )  # fmt: skip
    tail = "\n".join(r.stdout.strip().splitlines()[-15:])
    assert r.returncode == 0, f"PYRUSTML_ISA={isa}:\n{tail}\n{r.stderr[-2000:]}"
    assert " passed" in tail and "error" not in tail.lower(), tail


GREEDY = r"""
import json, sys
import pyrustml
out = {"isa": pyrustml.kernels.isa_active()}
for path in sys.argv[1:]:
    for quant in ("q8_0", "q4_0", "f32"):
        m = pyrustml.load(path, quant=quant)
        out[f"{path} {quant}"] = [
            m.generate(p, max_tokens=32, temperature=0, ignore_eos=True).tokens
            for p in ("Hello", "The quick brown fox", "a b c d e f g")
        ]
print(json.dumps(out))
"""


def greedy_on(isa: str) -> dict[str, object]:
    models = [str(FIX / n) for n in ("gpt2-tiny-hf", "gemma3-tiny", "gemma3-tiny-v5")]
    env = child_env(inherit_isa=False, PYRUSTML_ISA=isa) if isa else child_env(inherit_isa=False)
    r = subprocess.run([sys.executable, "-c", GREEDY, *models], capture_output=True, text=True, env=env,
                       cwd="/", timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return doc


def test_greedy_tokens_equal_across_paths() -> None:
    want = greedy_on("")
    assert want["isa"] == BEST
    lower = [name for name in SUPPORTED if name != BEST]
    if not lower:
        pytest.skip("this machine has a single kernel path")
    for isa in lower:
        got = greedy_on(isa)
        assert got["isa"] == isa  # the override really took effect
        diff = [k for k in want if k != "isa" and got[k] != want[k]]
        assert not diff, f"{isa} differs from {BEST} on {diff}"
