"""The README's promises that a test can hold: the two command lines a new user copies, what CI
runs of them, and the order of the development section."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def first_block() -> list[str]:
    return README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()


def test_starts_with_two_lines_that_make_their_own_environment() -> None:
    assert README.index("```bash") < README.index("\n## ")  # before any section
    run, test = first_block()
    venv = "python3 -m venv .venv && . .venv/bin/activate && pip install "
    assert run.startswith(venv + ". && pyrustml-infer --safetensors openai-community/gpt2 --prompt")
    assert test == venv + "'.[test]' && pytest"


def test_ci_runs_the_test_line_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    grep = re.search(r"test_line=\$\((grep [^\n]*README\.md)\)", ci)
    assert grep is not None
    found = subprocess.run(
        ["bash", "-c", grep.group(1)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert found.stdout.strip() == first_block()[1]


def test_development_makes_the_random_checkpoints_before_using_them() -> None:
    dev = README.split("## Development", 1)[1]
    for arch, path in (("gpt2", "/tmp/gpt2-random"), ("gemma3-1b", "/tmp/gemma3-random")):
        made = dev.index(f"make_random_model.py --arch {arch} --out {path}")
        uses = [m.start() for m in re.finditer(re.escape(path), dev) if m.start() != dev.index(path, made)]
        assert all(u > made for u in uses), path


def test_no_internal_words() -> None:
    assert "seed's" not in README
    assert "RUST_LOG" in README and "alias" in README
