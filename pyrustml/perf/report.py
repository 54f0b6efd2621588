"""The performance audit's analysis and its markdown: plain functions over the timings record.

`analyze(run)` turns what a run recorded (pyrustml.engine.profiler.StepRecord dicts plus the model's
facts, the bytes a decode step streams and the probed bandwidth) into one JSON-able dict;
`markdown(analyses)` formats those dicts in the structure of the seed's audit (config line,
warmup and prefill, decode step timings, layer-level analysis, component breakdown, bottleneck
summary) plus the bandwidth sections. The markdown is made only from the analysis dict, so the
JSON and the markdown carry the same numbers. No clock is read here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Json = dict[str, Any]

NS_PER_MS = 1e6
# Components of a step, in the order of the forward pass; "other" is the generation loop's own
# time between the forward pass and the lm_head plus what no lap covered.
COMPONENTS = ("embedding", "layers", "final_norm", "lm_head", "sampling", "other")
LABELS = {
    "embedding": "Embedding",
    "layers": "Layers",
    "final_norm": "Final norm",
    "lm_head": "Projection (lm_head)",
    "sampling": "Sampling",
    "other": "Other (loop glue)",
}
STEP_ROWS_SHOWN = 16  # decode rows printed in the markdown table (the JSON keeps all)


def _ms(ns: float) -> float:
    return float(ns) / NS_PER_MS


def _stats(values: list[float]) -> Json:
    """min, max, max/min, mean and percentiles of a sample (empty: zeros)."""
    if not values:
        return {"n": 0, "min": 0.0, "max": 0.0, "ratio": 0.0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    a = np.asarray(values, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return {
        "n": len(values),
        "min": lo,
        "max": hi,
        "ratio": hi / lo if lo > 0 else 0.0,
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
    }


def _components_ms(step: Json) -> dict[str, float]:
    layers = sum(step["attention_ns"]) + sum(step["ffn_ns"])
    named = step["embedding_ns"] + layers + step["norm_ns"] + step["lm_head_ns"] + step["sampling_ns"]
    return {
        "embedding": _ms(step["embedding_ns"]),
        "layers": _ms(layers),
        "final_norm": _ms(step["norm_ns"]),
        "lm_head": _ms(step["lm_head_ns"]),
        "sampling": _ms(step["sampling_ns"]),
        "other": _ms(step["total_ns"] - named),
    }


def analyze(run: Json) -> Json:
    """run: {"name", "config": {...}, "load_ms", "warmup_ms", "cold_forward_ms" (or None),
    "steps": [StepRecord.as_dict()...], "bytes": {component: bytes per decode step} (or None),
    "probe_gbs" (or None)}. Decode statistics cover every recorded decode step (the thread pool
    is warmed at load, so every one of them is after warmup)."""
    steps: list[Json] = run["steps"]
    prefills = [s for s in steps if s["kind"] == "prefill"]
    decodes = [s for s in steps if s["kind"] == "decode"]
    out: Json = {"name": run["name"], "config": run["config"], "load_ms": run["load_ms"]}

    # Warmup and prefill: the medians over the runs' prefills.
    pre_ms = [_ms(s["total_ns"]) for s in prefills]
    pre_tokens = int(np.median([s["tokens"] for s in prefills])) if prefills else 0
    pre_med = float(np.median(pre_ms)) if pre_ms else 0.0
    out["warmup"] = {
        "pool_warmup_ms": run["warmup_ms"],
        "cold_forward_ms": run.get("cold_forward_ms"),
        "prefill_tokens": pre_tokens,
        "prefill_ms": pre_med,
        "prefill_ms_per_token": pre_med / pre_tokens if pre_tokens else 0.0,
        "prefill_tok_s": 1000.0 * pre_tokens / pre_med if pre_med > 0 else 0.0,
        "prefill_runs": len(prefills),
    }

    # Decode steps: layers, projection, total (the seed's table), every step.
    split = [_components_ms(s) for s in decodes]  # each step's components, once
    rows = []
    for i, (s, c) in enumerate(zip(decodes, split, strict=True)):
        rows.append(
            {
                "step": i + 1,
                "pos": s["pos"],
                "layers_ms": c["layers"],
                "projection_ms": c["lm_head"],
                "total_ms": _ms(s["total_ns"]),
            }
        )
    out["decode_steps"] = rows
    totals = [r["total_ms"] for r in rows]
    out["step"] = _stats(totals)
    out["decode_tok_s"] = 1000.0 / out["step"]["p50"] if totals else 0.0

    # Layer-level analysis: one layer = its attention block + its feed-forward block.
    layer_ms: list[float] = []
    attn_ms: list[float] = []
    ffn_ms: list[float] = []
    for s in decodes:
        for a, f in zip(s["attention_ns"], s["ffn_ns"], strict=True):
            attn_ms.append(_ms(a))
            ffn_ms.append(_ms(f))
            layer_ms.append(_ms(a + f))
    attn_sum, ffn_sum = sum(attn_ms), sum(ffn_ms)
    out["layers"] = {
        "layer": _stats(layer_ms),
        "attention": _stats(attn_ms),
        "ffn": _stats(ffn_ms),
        "attention_share": attn_sum / (attn_sum + ffn_sum) if attn_sum + ffn_sum > 0 else 0.0,
        "per_layer_mean_ms": [
            float(np.mean([_ms(s["attention_ns"][i] + s["ffn_ns"][i]) for s in decodes])) if decodes else 0.0
            for i in range(len(decodes[0]["attention_ns"]) if decodes else 0)
        ],
    }

    # Component breakdown: mean and range per component; the means add up to the mean step.
    per = {k: [c[k] for c in split] for k in COMPONENTS}
    mean_total = out["step"]["mean"]
    comps: Json = {}
    for k in COMPONENTS:
        st = _stats(per[k])
        comps[k] = {
            "mean_ms": st["mean"],
            "min_ms": st["min"],
            "max_ms": st["max"],
            "share": st["mean"] / mean_total if mean_total > 0 else 0.0,
        }
    out["components"] = comps
    out["components_sum_ms"] = sum(c["mean_ms"] for c in comps.values())

    out["host_reference"] = _host_reference(run.get("host_reference"))
    out["bandwidth"] = _bandwidth(run.get("bytes"), run.get("probe_gbs"), comps, out["step"])
    out["bottleneck"] = _bottleneck(out)
    out["steps_raw"] = steps
    return out


def _host_reference(ref: Json | None) -> Json | None:
    """Decode steps against the fixed read timed after each (audit.host_reference)."""
    if not ref or not ref.get("step_ms"):
        return None
    steps, reads = list(ref["step_ms"]), list(ref["read_ms"])
    return {
        "bytes": ref["bytes"],
        "layer_bytes": ref["layer_bytes"],
        "steps": _stats(steps),
        "read": _stats(reads),
        "step_over_read": _stats([s / r for s, r in zip(steps, reads, strict=True) if r > 0]),
        "layer_read": _stats(list(ref["layer_read_ms"])),
    }


def _bandwidth(nbytes: Json | None, probe: float | None, comps: Json, step: Json) -> Json | None:
    """Bytes streamed per component, achieved GB/s, share of the probed read bandwidth, and the
    time each component spends beyond its bandwidth floor (where the remaining time goes)."""
    if not nbytes or not probe or probe <= 0:
        return None
    rows: Json = {}
    total_bytes = 0.0
    for k in ("embedding", "layers", "lm_head"):
        b = float(nbytes.get(k, 0.0))
        total_bytes += b
        ms = comps[k]["mean_ms"]
        floor_ms = b / (probe * 1e9) * 1000.0
        rows[k] = {
            "bytes": b,
            "mean_ms": ms,
            "gbs": b / (ms * 1e6) if ms > 0 else 0.0,
            "pct_probe": 100.0 * (b / (ms * 1e6)) / probe if ms > 0 else 0.0,
            "floor_ms": floor_ms,
            "excess_ms": ms - floor_ms,
        }
    for k in ("final_norm", "sampling", "other"):
        ms = comps[k]["mean_ms"]
        rows[k] = {
            "bytes": 0.0,
            "mean_ms": ms,
            "gbs": 0.0,
            "pct_probe": 0.0,
            "floor_ms": 0.0,
            "excess_ms": ms,
        }
    mean_ms = step["mean"]
    roof_ms = total_bytes / (probe * 1e9) * 1000.0
    # A probe below what a component (or the whole step) achieved measured a slower host than the
    # run had: on a shared machine the bandwidth moves within seconds. Floors computed from it are
    # too high, and the time "beyond" them comes out negative.
    beat = [k for k, r in rows.items() if r["gbs"] > probe]
    if mean_ms > 0 and roof_ms > mean_ms:
        beat.append("step")
    return {
        "probe_gbs": probe,
        "probe_below_achieved": beat,
        "kv_cache_bytes": float(nbytes.get("kv_cache", 0.0)),
        "components": rows,
        "step_bytes": total_bytes,
        "step_gbs": total_bytes / (mean_ms * 1e6) if mean_ms > 0 else 0.0,
        "roofline_ms": roof_ms,
        "roofline_tok_s": 1000.0 / roof_ms if roof_ms > 0 else 0.0,
        "roofline_fraction": roof_ms / mean_ms if mean_ms > 0 else 0.0,
    }


def _bottleneck(a: Json) -> Json:
    comps = a["components"]
    bw = a["bandwidth"]
    if bw is not None and not bw["probe_below_achieved"]:
        # The component with the most time beyond what streaming its bytes must cost.
        primary = max(bw["components"], key=lambda k: bw["components"][k]["excess_ms"])
        reason = f"{bw['components'][primary]['excess_ms']:.3f} ms per step beyond its bandwidth floor"
    else:
        primary = max(comps, key=lambda k: comps[k]["mean_ms"])
        reason = f"{comps[primary]['share'] * 100:.1f}% of the step"
    return {
        "primary": primary,
        "reason": reason,
        "lm_head_share": comps["lm_head"]["share"],
        "step_jitter": a["step"]["ratio"],
        "layer_jitter": a["layers"]["layer"]["ratio"],
    }


# ---- markdown ---------------------------------------------------------------------------------


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def _ratio(share: float) -> str:
    return f"{share * 100:.0f}:{(1 - share) * 100:.0f}"


def _config_line(c: Json) -> str:
    fusions = ", ".join(f"{n} {k.upper() if k == 'qkv' else k} fusions" for k, n in c["fusions"].items())
    return (
        f"**Config**: {c['layers']} layers, {c['hidden']} dim, vocab {c['vocab']}, "
        f"{c['params'] / 1e6:.1f}M matrix params, {c['projections']} {c['quant'].upper()} layers in "
        f"{c['matrices']} matrices, "
        f"{fusions or 'no fusions'}; {c['threads']} threads, kernels {c['isa']}"
    )


def _model_md(a: Json) -> list[str]:
    w, st, ly, comps = a["warmup"], a["step"], a["layers"], a["components"]
    md = [f"## {a['name']} ({a['config']['model_type']})", "", _config_line(a["config"]), ""]
    md += ["### Warmup and Prefill", "", "| Phase | Time | Notes |", "|-------|------|-------|"]
    md.append(f"| Load | {_f(a['load_ms'], 1)} ms | read, quantize, warm the pool |")
    md.append(f"| Thread-pool warmup | {_f(w['pool_warmup_ms'])} ms | part of load |")
    if w["cold_forward_ms"] is not None:
        md.append(
            f"| Cold warmup | {_f(w['cold_forward_ms'])} ms | first forward pass after load (1 token) |"
        )
    md.append(
        f"| Prefill ({w['prefill_tokens']} tokens) | {_f(w['prefill_ms'])} ms | "
        f"{_f(w['prefill_ms_per_token'])} ms/token, {_f(w['prefill_tok_s'], 1)} tok/s "
        f"(median of {w['prefill_runs']}) |"
    )
    md += ["", "### Decode Step Timings", "", "| Token | Layers | Projection | Total |", "|---|---|---|---|"]
    rows = a["decode_steps"]
    for r in rows[:STEP_ROWS_SHOWN]:
        md.append(
            f"| {r['step'] + 1} | {_f(r['layers_ms'])} ms | {_f(r['projection_ms'])} ms "
            f"| {_f(r['total_ms'])} ms |"
        )
    if len(rows) > STEP_ROWS_SHOWN:
        md.append(f"| ({len(rows) - STEP_ROWS_SHOWN} more steps in the JSON) | | | |")
    md += [
        "",
        f"**Step jitter**: {_f(st['min'])}-{_f(st['max'])} ms ({_f(st['ratio'], 2)}x max/min) over "
        f"{st['n']} steps; p50 {_f(st['p50'])} ms, p90 {_f(st['p90'])} ms, p99 {_f(st['p99'])} ms; "
        f"{_f(a['decode_tok_s'], 1)} tok/s at p50",
        "",
        "### Layer-Level Analysis",
        "",
        "| Metric | Value |",
        "|--------|-------|",
        f"| Layer min | {_f(ly['layer']['min'])} ms |",
        f"| Layer max | {_f(ly['layer']['max'])} ms |",
        f"| Layer jitter (max/min) | **{_f(ly['layer']['ratio'], 2)}x** |",
        f"| Layer p50 / p90 / p99 | {_f(ly['layer']['p50'])} / {_f(ly['layer']['p90'])} / "
        f"{_f(ly['layer']['p99'])} ms |",
        f"| Attention range | {_f(ly['attention']['min'])}-{_f(ly['attention']['max'])} ms |",
        f"| FFN range | {_f(ly['ffn']['min'])}-{_f(ly['ffn']['max'])} ms |",
        f"| Attention:FFN ratio | {_ratio(ly['attention_share'])} |",
    ]
    md += _host_reference_md(a["host_reference"])
    md += [
        "",
        "### Component Breakdown",
        "",
        "| Component | Mean | Range | % of Total |",
        "|-----------|------|-------|------------|",
    ]
    for k in COMPONENTS:
        c = comps[k]
        md.append(
            f"| {LABELS[k]} | {_f(c['mean_ms'])} ms | {_f(c['min_ms'])}-{_f(c['max_ms'])} ms | "
            f"{c['share'] * 100:.1f}% |"
        )
    md.append(
        f"| **Sum of components** | {_f(a['components_sum_ms'])} ms | measured step mean "
        f"{_f(st['mean'])} ms | {a['components_sum_ms'] / st['mean'] * 100 if st['mean'] else 0:.1f}% |"
    )
    bw = a["bandwidth"]
    if bw is not None:
        md += [
            "",
            "### Memory Bandwidth",
            "",
            f"Read bandwidth probed by libq8 in this run: **{_f(bw['probe_gbs'], 1)} GB/s**. "
            f"A decode step streams {bw['step_bytes'] / 1e6:.1f} MB (weights and KV cache, "
            f"{bw['kv_cache_bytes'] / 1e6:.2f} MB of it KV cache): roofline "
            f"{_f(bw['roofline_ms'])} ms/token = {_f(bw['roofline_tok_s'], 1)} tok/s; measured mean "
            f"{_f(st['mean'])} ms = **{bw['roofline_fraction'] * 100:.1f}% of the roofline**, "
            f"{_f(bw['step_gbs'], 1)} GB/s.",
            "",
        ]
        low = bw["probe_below_achieved"]
        if low:
            best = max(bw["step_gbs"], *(r["gbs"] for r in bw["components"].values()))
            who = ", ".join(LABELS.get(k, "the whole step") for k in low)
            md += [
                "",
                f"**The probe measured less bandwidth ({_f(bw['probe_gbs'], 1)} GB/s) than this run achieved "
                f"({_f(best, 1)} GB/s, {who}): the host's bandwidth "
                "changed during the run (a shared or busy machine), so the floors and the roofline above "
                "are too slow and no time beyond them is reported; run the audit again on a quiet machine.**",
            ]
        md += [
            "",
            "| Component | MB/step | Mean | GB/s | % of probe | Floor | Beyond floor |",
            "|-----------|---------|------|------|------------|-------|--------------|",
        ]
        for k in COMPONENTS:
            r = bw["components"][k]
            beyond = f"{_f(r['excess_ms'])} ms" if r["excess_ms"] >= 0 else "below the floor (see above)"
            md.append(
                f"| {LABELS[k]} | {r['bytes'] / 1e6:.2f} | {_f(r['mean_ms'])} ms | {_f(r['gbs'], 1)} | "
                f"{r['pct_probe']:.1f}% | {_f(r['floor_ms'])} ms | {beyond} |"
            )
    b = a["bottleneck"]
    md += [
        "",
        "### Bottleneck Summary",
        "",
        f"- **Primary**: {LABELS[b['primary']]} ({b['reason']})",
        f"- **lm_head**: {b['lm_head_share'] * 100:.1f}% of the step",
        f"- **Jitter**: step {_f(b['step_jitter'], 2)}x, layer {_f(b['layer_jitter'], 2)}x (max/min)",
    ]
    href = a["host_reference"]
    if href is not None:
        md[-1] += (
            f"; fixed reads of a step's and a layer's bytes on the same threads, in this run: "
            f"{_f(href['read']['ratio'], 2)}x and {_f(href['layer_read']['ratio'], 2)}x"
        )
    if bw is not None and not bw["probe_below_achieved"]:
        where = sorted(bw["components"].items(), key=lambda kv: -kv[1]["excess_ms"])
        gap = st["mean"] - bw["roofline_ms"]
        parts = ", ".join(f"{LABELS[k]} {_f(r['excess_ms'])} ms" for k, r in where if r["excess_ms"] > 0)
        md.append(f"- **Where the remaining {_f(gap)} ms above the roofline goes**: {parts}")
    return md


def _host_reference_md(h: Json | None) -> list[str]:
    if h is None:
        return []
    md = [
        "",
        "### Host Reference",
        "",
        f"Decode steps, each followed by a read of {h['bytes'] / 1e6:.1f} MB (what a step streams) "
        f"and then one read of {h['layer_bytes'] / 1e6:.1f} MB (a layer's) per layer, on the same "
        f"threads, {h['steps']['n']} steps after the runs above. A read is the same work every time: "
        "its spread is the host's, and no step or layer can be steadier than the read of its size.",
        "",
        "| Series | Min | p50 | Max | Max/min | p99/p50 |",
        "|--------|-----|-----|-----|---------|---------|",
    ]
    for label, key, unit in (
        ("Decode step", "steps", " ms"),
        ("Fixed read, a step's bytes", "read", " ms"),
        ("Step / its read", "step_over_read", ""),
        ("Fixed read, a layer's bytes", "layer_read", " ms"),
    ):
        st = h[key]
        p99 = st["p99"] / st["p50"] if st["p50"] > 0 else 0.0
        md.append(
            f"| {label} | {_f(st['min'])}{unit} | {_f(st['p50'])}{unit} | {_f(st['max'])}{unit} | "
            f"{_f(st['ratio'], 2)}x | {_f(p99, 2)}x |"
        )
    return md


def _comparative(analyses: list[Json]) -> list[str]:
    names = [a["name"] for a in analyses]
    md = ["## Comparative Analysis", "", "| Metric | " + " | ".join(names) + " |"]
    md.append("|---" * (len(names) + 1) + "|")

    def row(label: str, cells: list[str]) -> None:
        md.append(f"| {label} | " + " | ".join(cells) + " |")

    row("Matrix params", [f"{a['config']['params'] / 1e6:.1f}M" for a in analyses])
    row("Layers", [str(a["config"]["layers"]) for a in analyses])
    row("Vocab size", [f"{a['config']['vocab']:,}" for a in analyses])
    row("Step time", [f"{_f(a['step']['min'])}-{_f(a['step']['max'])} ms" for a in analyses])
    row("Decode tok/s (p50)", [_f(a["decode_tok_s"], 1) for a in analyses])
    row("Step jitter", [f"{_f(a['step']['ratio'], 2)}x" for a in analyses])
    row("Layer jitter", [f"{_f(a['layers']['layer']['ratio'], 2)}x" for a in analyses])
    row("lm_head %", [f"{a['components']['lm_head']['share'] * 100:.1f}%" for a in analyses])
    row(
        "Attention:FFN",
        [_ratio(a["layers"]["attention_share"]) for a in analyses],
    )
    row("Prefill tok/s", [_f(a["warmup"]["prefill_tok_s"], 1) for a in analyses])
    if all(a["bandwidth"] is not None for a in analyses):
        row("GB/s (step)", [_f(a["bandwidth"]["step_gbs"], 1) for a in analyses])
        row("% of roofline", [f"{a['bandwidth']['roofline_fraction'] * 100:.1f}%" for a in analyses])
    return md


def markdown(
    analyses: list[Json], title: str = "Performance Audit", preamble: list[str] | None = None
) -> str:
    md = [f"# {title}", ""]
    if preamble:
        md += [*preamble, ""]
    for a in analyses:
        md += [*_model_md(a), "", "---", ""]
    if len(analyses) >= 2:
        md += [*_comparative(analyses), ""]
    return "\n".join(md)


def step_line(rec: Json) -> str:
    """The per-step stderr line of --profile: layers, projection, total."""
    c = _components_ms(rec)
    return (
        f"pyrustml: {rec['kind']} pos {rec['pos']}: layers {c['layers']:.3f} ms, "
        f"projection {c['lm_head']:.3f} ms, total {_ms(rec['total_ns']):.3f} ms"
    )
