"""The end-to-end benchmark (pyrustml.perf.bench) as a user runs it, in --quick mode on the tiny GPT-2
fixture: every figure is in the JSON, the derived ones agree with the raw ones, the markdown
matches the JSON."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import FIX

import pyrustml

MODEL = FIX / "gpt2-tiny-hf"
TOKENS = 8  # --quick's prompt and decode lengths

RUN_FIELDS = {
    "model", "quant", "model_type", "vocab_size", "hidden_size", "n_matrices", "threads_requested",
    "threads", "threads_label", "isa", "pid", "repeat", "load_ms", "load_wall_ms", "rss_before_load_kib",
    "peak_rss_load_kib", "rss_after_load_kib", "peak_rss_reset", "peak_rss_run_kib", "rss_end_kib",
    "cold_first_token_ms", "cold_generate_wall_ms", "warm_first_token_ms", "first_prefill_ms",
    "prompt_tokens", "prompt_ms", "cached_prompt_tokens", "time_to_first_token_ms", "queue_ms",
    "decode_tokens", "step_ms",
    "bytes_per_token", "bytes_first_step", "bytes_last_step", "bytes_embedding", "bytes_attention",
    "bytes_ffn", "bytes_lm_head", "generated_tokens", "wall_s", "other_processes_pct", "steal_pct",
    "decode_ms_median", "decode_ms_p90", "decode_ms_min", "decode_ms_max", "decode_tok_s",
    "achieved_gbs", "probe_gbs", "pct_of_probe", "roofline_tok_s", "roofline_ms", "prefill_tok_s",
    "cold_over_step", "peak_over_final_rss", "probe_before_gbs", "probe_after_gbs",
    # prompt-lookup decoding of a repetitive prompt (--lookup, on by default)
    "lookup", "lookup_prompt_tokens", "lookup_tokens", "plain_eval_ms", "lookup_eval_ms", "lookup_speedup",
    "draft_tokens", "accepted_tokens", "verify_passes",
}  # fmt: skip
META_FIELDS = {
    "date", "command", "cpu_model", "logical_cpus", "physical_cores", "isa_active", "isa_supported",
    "thp", "kernel", "pyrustml", "package_dir", "library", "git", "python", "numpy", "models",
    "threads", "repeat", "prompt_tokens", "decode_tokens", "seed", "quick", "probe_mib", "probe_reps",
    "lookup", "reference", "quants",
    "loadavg_start", "loadavg_end",
}  # fmt: skip


def bench(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """python -m pyrustml.perf.bench in a fresh interpreter that imports the pyrustml these tests
    imported (installed, or the source tree), from a directory that shadows nothing."""
    js, md = tmp / "bench.json", tmp / "bench.md"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(pyrustml.__file__).resolve().parent.parent)
    r = subprocess.run(
        [sys.executable, "-P", "-m", "pyrustml.perf.bench", "--quick", *args,
         "--json", str(js), "--out", str(md)],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=120,
    )  # fmt: skip
    return r, js, md


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str]:
    r, js, md = bench(tmp_path_factory.mktemp("bench"), str(MODEL), "--threads", "1,default")
    assert r.returncode == 0, r.stderr
    return json.loads(js.read_text()), r.stdout, md.read_text()


def approx(v: float) -> Any:
    return pytest.approx(v, rel=1e-9)


def test_json_has_every_field(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    assert set(doc) == {"meta", "probes", "cpu_load", "runs", "summary", "comparison", "failures"}
    assert META_FIELDS <= set(doc["meta"])
    assert doc["meta"]["isa_active"] == pyrustml.kernels.isa_active()
    assert doc["meta"]["quick"] is True and doc["failures"] == []
    assert {"wall_s", "other_processes_pct", "steal_pct"} <= set(doc["cpu_load"])
    labels = doc["meta"]["threads"]
    assert labels[0] == "1" and len(labels) == len(set(labels))  # 'default' == 1 would run once
    assert len(doc["runs"]) == len(labels) == len(doc["summary"]) == len(doc["probes"])
    for run in doc["runs"]:
        assert set(run) == RUN_FIELDS, set(run) ^ RUN_FIELDS
        assert run["model_type"] == "gpt2" and run["model"] == str(MODEL.resolve())
        assert run["prompt_tokens"] == TOKENS and run["decode_tokens"] == TOKENS
        assert len(run["step_ms"]) == TOKENS and run["generated_tokens"] == TOKENS + 1
    assert [r["threads"] for r in doc["runs"]] == [p["threads"] for p in doc["probes"]]
    assert len({r["pid"] for r in doc["runs"]}) == len(doc["runs"])  # a fresh process each


def test_derived_figures_agree_with_the_raw_ones(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    probes = {p["threads"]: p for p in doc["probes"]}
    for p in probes.values():
        assert p["start_gbs"] > 0 and p["end_gbs"] > 0 and p["gbs"] == max(p["start_gbs"], p["end_gbs"])
    for r in doc["runs"]:
        steps = r["step_ms"]
        med = statistics.median(steps)
        assert r["decode_ms_median"] == approx(med)
        assert min(steps) <= med <= r["decode_ms_p90"] <= max(steps) == r["decode_ms_max"]
        assert r["decode_tok_s"] == approx(1000.0 / med)
        b = r["bytes_per_token"]
        assert b == approx(r["bytes_embedding"] + r["bytes_attention"] + r["bytes_ffn"] + r["bytes_lm_head"])
        assert r["bytes_first_step"] <= b <= r["bytes_last_step"]  # the KV cache grows
        assert r["achieved_gbs"] == approx(b / med * 1000.0 / 1e9)
        # The run's roofline: the better of its worker's probes around its decode.
        probe = max(r["probe_before_gbs"], r["probe_after_gbs"])
        assert probe > 0 and probes[r["threads"]]["gbs"] > 0
        assert r["probe_gbs"] == probe
        assert r["pct_of_probe"] == approx(100.0 * r["achieved_gbs"] / probe)
        assert r["roofline_tok_s"] == approx(probe * 1e9 / b)
        assert r["roofline_ms"] == approx(1000.0 / r["roofline_tok_s"])
        assert r["pct_of_probe"] == approx(100.0 * r["decode_tok_s"] / r["roofline_tok_s"])
        assert r["prefill_tok_s"] == approx(1000.0 * TOKENS / r["prompt_ms"])
        # The warm-up ran the same prompt: the measured prefill must not take it from the cache.
        assert r["cached_prompt_tokens"] == 0
        # The first token comes after the wait for a slot in the engine's batch and the prefill.
        assert r["time_to_first_token_ms"] == approx(r["queue_ms"] + r["prompt_ms"])
        assert r["prompt_ms"] > 0 and r["queue_ms"] >= 0
        assert r["cold_over_step"] == approx(r["cold_first_token_ms"] / med)
        assert r["cold_first_token_ms"] > 0 and r["warm_first_token_ms"] > 0
        assert r["load_ms"] > 0 and r["load_wall_ms"] >= r["load_ms"]
        assert r["peak_rss_reset"] is True
        assert r["peak_rss_load_kib"] >= r["rss_after_load_kib"] > r["rss_before_load_kib"] > 0
        assert r["peak_rss_run_kib"] >= r["peak_rss_load_kib"]
        assert r["peak_over_final_rss"] == approx(r["peak_rss_load_kib"] / r["rss_after_load_kib"])
        assert 0.0 <= r["other_processes_pct"] <= 100.0


def test_bytes_per_token_is_the_mean_over_the_decode_positions(
    quick_run: tuple[dict[str, Any], str, str],
) -> None:
    doc, _, _ = quick_run
    net = pyrustml.load(str(MODEL), threads=1).net
    # Decode step i runs the token at position prompt + i.
    totals = [net.decode_bytes(TOKENS + i).total for i in range(TOKENS)]
    for r in doc["runs"]:
        assert r["bytes_per_token"] == approx(statistics.fmean(totals))
        assert (r["bytes_first_step"], r["bytes_last_step"]) == (totals[0], totals[-1])


def test_summary_targets_and_markdown(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, stdout, md = quick_run
    assert stdout == md
    by_label = {r["threads_label"]: r for r in doc["runs"]}
    for row in doc["summary"]:
        run = by_label[row["threads_label"]]
        assert row["repeats"] == 1
        for metric in ("decode_ms_median", "decode_tok_s", "pct_of_probe", "prefill_tok_s", "load_ms"):
            assert row[metric] == {"median": run[metric], "min": run[metric], "max": run[metric]}
        line = next(x for x in md.splitlines() if x.startswith(f"| gpt2-tiny-hf | {row['threads']} |"))
        assert f"| {row['decode_ms_median']['median']:.2f} |" in line
        assert f"| {row['pct_of_probe']['median']:.1f} |" in line
    # Measured figures only: no project target is judged unless the user gives a reference.
    assert doc["comparison"] == [] and "target" not in md and "**no**" not in md
    assert "probe" in md and "other processes" in md


def test_reference_run_gives_ratios_and_max_tokens_is_decode_tokens(
    quick_run: tuple[dict[str, Any], str, str], tmp_path: Path
) -> None:
    doc, _, _ = quick_run
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(doc))
    r, js, md = bench(tmp_path, str(MODEL), "--threads", "1", "--max-tokens", "4", "--lookup", "0",
                      "--reference", str(ref))  # fmt: skip
    assert r.returncode == 0, r.stderr
    new = json.loads(js.read_text())
    assert new["meta"]["decode_tokens"] == 4 and len(new["runs"][0]["step_ms"]) == 4
    comp = {c["metric"]: c for c in new["comparison"]}
    old_row = next(x for x in doc["summary"] if x["threads"] == 1)
    assert comp["decode_tok_s"]["reference"] == old_row["decode_tok_s"]["median"]
    c = comp["decode_tok_s"]
    assert c["ratio"] == approx(c["median"] / c["reference"])
    assert "this / reference" in md.read_text()


def test_version_and_a_bad_reference(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pyrustml.perf.bench", "--version"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == f"pyrustml-bench {pyrustml.__version__}"
    bad = tmp_path / "x.json"
    bad.write_text("[]")
    r, _, _ = bench(tmp_path, str(MODEL), "--reference", str(bad))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "not a pyrustml-bench --json file" in r.stderr


def test_a_run_longer_than_the_context_fails_loudly(tmp_path: Path) -> None:
    r, js, _ = bench(tmp_path, str(MODEL), "--threads", "1", "--prompt-tokens", "60")
    assert r.returncode == 1
    assert "exceed the model's context of 64" in r.stderr
    assert json.loads(js.read_text())["failures"]


def test_quant_modes_run_back_to_back(tmp_path: Path) -> None:
    """--quant q8_0,q4_0: one row per mode, each run loading its mode, Q4_0 streaming fewer bytes."""
    r, js, md = bench(tmp_path, str(MODEL), "--threads", "1", "--quant", "q8_0,q4_0-pure", "--lookup", "0")
    assert r.returncode == 0, r.stderr
    doc = json.loads(js.read_text())
    assert doc["meta"]["quants"] == ["q8_0", "q4_0-pure"]
    by = {row["quant"]: row for row in doc["summary"]}
    assert set(by) == {"q8_0", "q4_0-pure"} and {run["quant"] for run in doc["runs"]} == set(by)
    assert by["q4_0-pure"]["bytes_per_token"]["median"] < 0.75 * by["q8_0"]["bytes_per_token"]["median"]
    assert "Q8_0, Q4_0-PURE" in md.read_text()
    bad, _, _ = bench(tmp_path, str(MODEL), "--quant", "q5_0")
    assert bad.returncode == 2 and "--quant" in bad.stderr
