"""The profiler, the audit report and their command lines, on the tiny checkpoints.

Checks: every section is there, its numbers parse, components add up to the measured steps,
jitter is max/min of what was recorded, and the JSON and the markdown carry the same numbers."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import FIX, run_module

import pyrustml
from pyrustml.perf import report
from pyrustml.perf.audit import collect

GPT2 = str(FIX / "gpt2-tiny-hf")
GEMMA = str(FIX / "gemma3-tiny")
SECTIONS = (
    "### Warmup and Prefill",
    "### Decode Step Timings",
    "### Layer-Level Analysis",
    "### Component Breakdown",
    "### Memory Bandwidth",
    "### Bottleneck Summary",
)


def _profiled_run(path: str, n: int = 12, repeat: int = 1) -> tuple[Any, Any, list[Any]]:
    model = pyrustml.load(path, threads=2)
    prof = model.enable_profiling()
    gens = [
        model.generate([1, 2, 3, 4, 5], max_tokens=n, temperature=0.0, ignore_eos=True) for _ in range(repeat)
    ]
    model.disable_profiling()
    return model, prof, gens


@pytest.mark.parametrize("path", [GPT2, GEMMA])
def test_steps_cover_the_run_and_components_add_up(path: str) -> None:
    model = pyrustml.load(path, threads=2)
    prof = model.enable_profiling()
    before = time.perf_counter_ns()
    gen = model.generate([1, 2, 3, 4, 5], max_tokens=12, temperature=0.0, ignore_eos=True)
    after = time.perf_counter_ns()
    model.disable_profiling()
    steps = prof.steps
    kinds = [s.kind for s in steps]
    assert kinds == ["prefill"] + ["decode"] * (len(gen.tokens) - 1)
    assert steps[0].tokens == 5 and [s.pos for s in steps[1:]] == list(range(5, 5 + 11))
    for s in steps:
        assert len(s.attention_ns) == len(s.ffn_ns) == model.net.n_layers
        assert all(v > 0 for v in s.attention_ns + s.ffn_ns)
        assert s.lm_head_ns > 0 and s.total_ns > 0
        # The laps are contiguous from the step's start to its end: nothing is lost or counted twice.
        assert s.components_ns == s.total_ns
        # ... and in order on one clock (libq8's marks are CLOCK_MONOTONIC, perf_counter_ns's):
        # with no lap negative, every mark lies inside the step.
        assert min(s.embedding_ns, s.norm_ns, s.glue_ns, s.lm_head_ns, s.sampling_ns) >= 0
    # The steps are disjoint, in order, and inside the call that ran them (one monotonic clock).
    ends = [s.start_ns + s.total_ns for s in steps]
    assert before <= steps[0].start_ns
    assert all(e <= s.start_ns for e, s in zip(ends, steps[1:], strict=False))
    assert ends[-1] <= after
    # Against the generation loop's own clock (Timings.step_ms: from the first token to the last,
    # read inside the steps that produced them). Only orderings are compared, never durations (a
    # shared machine's preemptions would make any tolerance flaky): the loop's span holds every
    # decode step but the last, and lies within the profiled steps' span. 1 us for float seconds.
    loop_ns = sum(gen.timings.step_ms) * 1e6
    assert sum(s.total_ns for s in steps[1:-1]) <= loop_ns + 1000
    assert loop_ns <= ends[-1] - steps[0].start_ns + 1000


def test_profiling_off_records_nothing() -> None:
    model, prof, _ = _profiled_run(GPT2, n=3)
    assert model.net.prof is None
    before = len(prof.steps)
    model.generate("Hi", max_tokens=3, temperature=0.0)
    assert len(prof.steps) == before


def test_sampling_steps_time_lm_head_and_sampler_apart() -> None:
    model = pyrustml.load(GPT2, threads=1)
    prof = model.enable_profiling()
    model.generate("Hi", max_tokens=6, temperature=0.8, top_k=5, seed=1, ignore_eos=True)
    assert all(s.sampling_ns > 0 and s.lm_head_ns > 0 for s in prof.steps)


def _analysis(path: str, repeat: int = 2) -> dict[str, Any]:
    model, prof, _ = _profiled_run(path, n=10, repeat=repeat)
    run = collect(model, Path(path).name, prof.steps, 12.5, 30.0)
    return report.analyze(run)


def test_analysis_statistics_are_those_of_the_record() -> None:
    a = _analysis(GEMMA)
    decodes = [s for s in a["steps_raw"] if s["kind"] == "decode"]
    assert len(decodes) == 2 * 9 and a["warmup"]["prefill_runs"] == 2
    totals = [s["total_ns"] / 1e6 for s in decodes]
    assert a["step"]["min"] == pytest.approx(min(totals)) and a["step"]["max"] == pytest.approx(max(totals))
    assert a["step"]["ratio"] == pytest.approx(max(totals) / min(totals))
    layer = [(x + y) / 1e6 for s in decodes for x, y in zip(s["attention_ns"], s["ffn_ns"], strict=True)]
    assert a["layers"]["layer"]["ratio"] == pytest.approx(max(layer) / min(layer))
    assert a["layers"]["layer"]["p50"] <= a["layers"]["layer"]["p90"] <= a["layers"]["layer"]["p99"]
    # Component means add up to the mean step (the "other" row takes what no lap covered).
    assert a["components_sum_ms"] == pytest.approx(a["step"]["mean"], rel=0.02)
    assert sum(c["share"] for c in a["components"].values()) == pytest.approx(1.0, rel=0.02)
    # Bandwidth rows follow from bytes and time.
    bw = a["bandwidth"]
    lm = bw["components"]["lm_head"]
    assert lm["gbs"] == pytest.approx(lm["bytes"] / (lm["mean_ms"] * 1e6))
    assert lm["pct_probe"] == pytest.approx(100 * lm["gbs"] / 30.0)
    assert bw["roofline_tok_s"] == pytest.approx(30.0e9 / bw["step_bytes"])


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def test_a_probe_below_what_the_run_achieved_is_explained_once() -> None:
    model, prof, _ = _profiled_run(GPT2, n=6, repeat=1)
    steps = list(prof.steps)
    for probe, low in ((1e-6, True), (1e6, False)):  # GB/s: far below / far above any real figure
        a = report.analyze(collect(model, "gpt2", steps, 12.5, probe))
        md = report.markdown([a])
        assert bool(a["bandwidth"]["probe_below_achieved"]) is low
        assert md.count("The probe measured less bandwidth") == (1 if low else 0)
        bw_table = md.split("| Component | MB/step |")[1].split("\n\n")[0].splitlines()[2:]
        beyond = [ln.rsplit("|", 2)[1] for ln in bw_table]
        assert len(beyond) == len(report.COMPONENTS)
        remaining = [ln for ln in md.splitlines() if "remaining" in ln]
        # Never a negative "beyond floor" or "remaining" time.
        assert not any(re.search(r"-\d", x) for x in beyond + remaining), md
        assert bool(remaining) is not low


def test_markdown_has_every_section_and_the_json_numbers() -> None:
    analyses = [_analysis(GPT2), _analysis(GEMMA)]
    md = report.markdown(analyses)
    for sec in SECTIONS:
        assert md.count(sec) == 2, sec
    assert "## Comparative Analysis" in md
    assert all(isinstance(x, float) for x in _numbers(md))
    # The same numbers: each markdown figure below is the JSON's, at the markdown's precision.
    doc = json.loads(json.dumps(analyses))
    for a in doc:
        sect = md.split(f"## {a['name']} ")[1].split("\n---")[0]
        st = a["step"]
        assert f"{st['min']:.3f}-{st['max']:.3f} ms ({st['ratio']:.2f}x max/min)" in sect
        assert f"| Layer jitter (max/min) | **{a['layers']['layer']['ratio']:.2f}x** |" in sect
        for k in report.COMPONENTS:
            c = a["components"][k]
            assert f"| {report.LABELS[k]} | {c['mean_ms']:.3f} ms |" in sect
        for r in a["decode_steps"][: report.STEP_ROWS_SHOWN]:
            assert f"| {r['step'] + 1} | {r['layers_ms']:.3f} ms | {r['projection_ms']:.3f} ms " in sect
        assert f"**{a['bandwidth']['roofline_fraction'] * 100:.1f}% of the roofline**" in sect


def _audit(args: list[str]) -> subprocess.CompletedProcess[str]:
    return run_module("pyrustml.perf.audit", *args, timeout=300)


def test_audit_command_writes_markdown_and_json(tmp_path: Path) -> None:
    md_path, js_path = tmp_path / "report.md", tmp_path / "report.json"
    common = ["--max-tokens", "6", "--repeat", "2", "--threads", "2"]
    r = _audit([GPT2, GEMMA, *common, "--out", str(md_path)])
    assert r.returncode == 0, r.stderr
    md = md_path.read_text()
    for sec in SECTIONS:
        assert md.count(sec) == 2, sec
    assert "## Comparative Analysis" in md and "read bandwidth probed at" in md
    r = _audit([GPT2, *common, "--format", "json", "--out", str(js_path)])
    assert r.returncode == 0, r.stderr
    doc = json.loads(js_path.read_text())
    assert doc["machine"]["probe_gbs"] > 0
    (a,) = doc["models"]
    assert len(a["decode_steps"]) == 2 * 6 and a["warmup"]["cold_forward_ms"] > 0
    assert a["config"]["fusions"] == {"qkv": 2} and a["bandwidth"]["probe_gbs"] == doc["machine"]["probe_gbs"]
    # The host reference: 6 more steps, each with a fixed read of its size and one per layer.
    h = a["host_reference"]
    assert h["steps"]["n"] == h["read"]["n"] == h["step_over_read"]["n"] == 6
    assert h["layer_read"]["n"] == 6 * a["config"]["layers"]
    assert h["bytes"] >= 1 << 20 and h["layer_bytes"] >= 1 << 20
    assert 0 < h["read"]["min"] <= h["read"]["p50"] <= h["read"]["max"]
    assert (
        md.count("### Host Reference") == 2 and md.count("fixed reads of a step's and a layer's bytes") == 2
    )


def test_host_reference_rows_follow_from_the_record() -> None:
    model, prof, _ = _profiled_run(GPT2, n=4)
    run = collect(model, "gpt2", prof.steps, 1.0, 30.0)
    run["host_reference"] = {
        "bytes": 3 << 20,
        "layer_bytes": 1 << 20,
        "step_ms": [2.0, 3.0, 4.0],
        "read_ms": [1.0, 2.0, 1.0],
        "layer_read_ms": [0.5, 0.25, 1.0, 0.5, 0.5, 0.5],
    }
    h = report.analyze(run)["host_reference"]
    assert (h["steps"]["ratio"], h["read"]["ratio"], h["layer_read"]["ratio"]) == (2.0, 2.0, 4.0)
    assert (h["step_over_read"]["min"], h["step_over_read"]["max"]) == (1.5, 4.0)
    md = report.markdown([report.analyze(run)])
    assert "| Fixed read, a step's bytes | 1.000 ms | 1.000 ms | 2.000 ms | 2.00x |" in md
    assert "| Step / its read | 1.500 | 2.000 | 4.000 | 2.67x |" in md
    assert "a layer's bytes on the same threads, in this run: 2.00x and 4.00x" in md


def test_read_probe_reads_a_fixed_buffer() -> None:
    from pyrustml.errors import KernelArgumentError
    from pyrustml.kernels import ReadProbe

    with pytest.raises(KernelArgumentError, match="1 MiB"):
        ReadProbe(1000)
    p = ReadProbe((3 << 20) + 5)
    assert p.nbytes == 3 << 20
    assert all(p.read_seconds() > 0 for _ in range(3))


def test_audit_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    r = _audit(
        [GPT2, "--max-tokens", "4", "--repeat", "1", "--out", str(tmp_path / "r.md"), "--plot", str(png)]
    )
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_version() -> None:
    r = _audit(["--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"pyrustml-audit {pyrustml.__version__}"


def test_audit_bad_input_is_one_line() -> None:
    r = _audit([str(FIX / "no-such-model"), "--max-tokens", "2"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _audit([GPT2, "--repeat", "0"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_cli_profile_prints_steps_and_tables(cli: Any) -> None:
    r = cli(
        ["--safetensors", GPT2, "--prompt", "Hello", "-n", "5", "--temp", "0", "--ignore-eos", "--profile"]
    )
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if re.match(r"pyrustml: (prefill|decode) pos \d+:", ln)]
    assert len(lines) == 5 and lines[0].startswith("pyrustml: prefill")
    for ln in lines:
        layers, proj, total = (float(x) for x in re.findall(r"(\d+\.\d+) ms", ln))
        assert layers + proj <= total * 1.02
    for sec in SECTIONS[:4] + SECTIONS[5:]:
        assert sec in r.stderr
    assert r.stdout.startswith("Hello")
    # Debug logging turns the same profile on.
    r = cli(
        ["--safetensors", GPT2, "--prompt", "Hi", "-n", "2", "--temp", "0"], env={"PYRUSTML_LOG": "debug"}
    )
    assert r.returncode == 0 and "### Component Breakdown" in r.stderr
