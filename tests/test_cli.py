"""pyrustml-infer as a user runs it: flags and aliases, stdout/stderr split, JSON, exit codes."""

from __future__ import annotations

import json
from typing import Any

from support import FIX

MODEL = str(FIX / "gpt2-tiny-openai")


def test_greedy_run_prints_text_and_a_summary(cli: Any) -> None:
    r = cli(["--safetensors", MODEL, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello")
    for label in ("load time", "prompt eval time", "eval time"):
        assert label in r.stderr
    # llama.cpp-style aliases give the same output
    r2 = cli(["-m", MODEL, "-p", "Hello", "-n", "10", "--temp", "0", "-t", "1", "-s", "3"])
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_json_document(cli: Any) -> None:
    r = cli(["--safetensors", MODEL, "--prompt", "Hello", "-n", "6", "--temp", "0", "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"text", "prompt_tokens", "tokens", "finish_reason", "timings"}
    assert doc["finish_reason"] in ("stop", "length")
    assert len(doc["tokens"]) <= 6 and doc["prompt_tokens"]
    assert doc["timings"]["load_ms"] > 0


def test_seeded_sampling_is_reproducible(cli: Any) -> None:
    args = ["--safetensors", MODEL, "--prompt", "The", "-n", "12", "--temp", "0.9", "--seed", "11", "--json"]
    a, b = cli(args), cli(args)
    assert a.returncode == 0 and json.loads(a.stdout)["tokens"] == json.loads(b.stdout)["tokens"]


def test_bad_values_are_one_line_and_exit_2(cli: Any) -> None:
    for bad in (["--top-p", "1.5"], ["--temperature", "-1"], ["--max-tokens", "0"], ["--top-k", "-2"],
                ["--max-tokens", "abc"], ["--quant", "q4"], ["--threads", "0"]):  # fmt: skip
        r = cli(["--safetensors", MODEL, "--prompt", "x", *bad])
        assert r.returncode == 2, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (bad, r.stderr)
        assert "Traceback" not in r.stderr


def test_debug_log_reports_the_load_summary(cli: Any) -> None:
    r = cli(["--safetensors", MODEL, "--prompt", "x", "-n", "2"], env={"PYRUSTML_LOG": "debug"})
    assert r.returncode == 0
    # The seed's wording: projections counted apart ("layers"), then the fused matrices.
    assert "13 Q8_0 layers in 9 matrices, 2 QKV fusions" in r.stderr
    r = cli(["--safetensors", MODEL, "--prompt", "x", "-n", "2"], env={"RUST_LOG": "pyrustml=debug"})
    assert "Q8_0 layers in" in r.stderr
