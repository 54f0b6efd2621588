"""pyrustml-audit: run models with the profiler on and write the performance audit.

    pyrustml-audit SOURCE [SOURCE ...] [--prompt TEXT] [--max-tokens N] [--threads T]
                   [--repeat R] [--out report.md] [--format md|json] [--plot timings.png]

For each model: load (timed, pool warmed), one cold 1-token forward, then R greedy runs of the
prompt with the profiler attached (eos ignored, so every run decodes N tokens). The read
bandwidth is probed by libq8 in the same process, before the models run. The analysis and the
markdown come from pyrustml.perf.report; this module only runs things and collects the record.
Interpreted on purpose (not mypyc-compiled): it runs once per process.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from typing import Any

from .. import __version__
from ..errors import PyrustmlError
from . import report

DEFAULT_PROMPT = "The history of the printing press begins"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"pyrustml-audit: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyrustml-audit", description="Profile models and write a performance audit.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="local checkpoint directory or hub repo id")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--max-tokens", type=int, default=32, help="decode steps per run (default 32)")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--repeat", type=int, default=3, help="runs per model (default 3)")
    p.add_argument("--quant", choices=["q8_0", "q4_0", "q4_0-pure", "f32"], default="q8_0")
    p.add_argument("--out", default=None, help="write the report here (default: stdout)")
    p.add_argument("--format", choices=["md", "json"], default="md")
    p.add_argument("--plot", default=None, help="PNG of per-step stacked bars and a per-layer heat map")
    p.add_argument("--version", action="version", version=f"pyrustml-audit {__version__}")
    return p


def model_facts(model: Any) -> dict[str, Any]:
    """The config line of the report."""
    net = model.net
    params = net.lm_head.n * net.lm_head.k
    for attn, ffn in net.layer_weights():
        params += sum(m.n * m.k for m in (*attn, *ffn))
    return {
        "model_type": net.model_type,
        "layers": net.n_layers,
        "hidden": net.hidden_size,
        "vocab": net.vocab_size,
        "params": params,
        "matrices": net.n_matrices,
        "projections": net.n_projections,
        "fusions": dict(net.fusions),
        "quant": model.quant,
        "threads": model.runtime.threads,
        "isa": _isa(),
    }


def _isa() -> str:
    from ..engine.kernels import isa_active

    return str(isa_active())


def decode_bytes(model: Any, steps: list[dict[str, Any]]) -> dict[str, float] | None:
    """Mean bytes a decode step streamed, by component, over the recorded decode steps."""
    decodes = [s for s in steps if s["kind"] == "decode"]
    if not decodes:
        return None
    acc = {"embedding": 0.0, "layers": 0.0, "lm_head": 0.0, "kv_cache": 0.0}
    for s in decodes:
        sb = model.net.decode_bytes(s["pos"])
        acc["embedding"] += sb.embedding
        acc["layers"] += sum(sb.attention) + sum(sb.ffn)
        acc["lm_head"] += sb.lm_head
        acc["kv_cache"] += sb.kv_cache
    return {k: v / len(decodes) for k, v in acc.items()}


def collect(
    model: Any, name: str, steps: list[Any], cold_forward_ms: float | None, probe_gbs: float | None
) -> dict[str, Any]:
    """The run record report.analyze takes."""
    raw = [s.as_dict() for s in steps]
    return {
        "name": name,
        "config": model_facts(model),
        "load_ms": model.load_ms,
        "warmup_ms": model.warmup_ms,
        "cold_forward_ms": cold_forward_ms,
        "steps": raw,
        "bytes": decode_bytes(model, raw),
        "probe_gbs": probe_gbs,
    }


def host_reference(model: Any, ids: list[int], steps: int) -> dict[str, Any]:
    """Decode steps alternating with fixed reads on the same pool: one of as many bytes as a step
    streams, then one per layer of as many bytes as a layer streams. A fixed read's spread is
    what the host alone does to memory-bound work in this run: no step (or layer) measured here
    can be steadier than it. Runs on model.net directly (each step's greedy token is fed back)
    and leaves the model's KV cache in no known state: call it last."""
    from ..engine.kernels import ReadProbe

    net = model.net
    prompt = ids[: net.prefill_chunk]
    positions = range(len(prompt), len(prompt) + steps)
    streams = [net.decode_bytes(p) for p in positions]
    # A read probe takes at least 1 MiB (a tiny test model streams less); the report shows the
    # size actually read.
    step_probe = ReadProbe(max(int(sum(s.total for s in streams) / steps), 1 << 20))
    layer_bytes = sum(sum(s.attention) + sum(s.ffn) for s in streams) / (steps * net.n_layers)
    layer_probe = ReadProbe(max(int(layer_bytes), 1 << 20))
    net.forward_chunk(prompt, 0)
    token = net.argmax_row(len(prompt) - 1)
    step_ms: list[float] = []
    read_ms: list[float] = []
    layer_read_ms: list[float] = []
    for pos in positions:
        t0 = time.perf_counter_ns()
        net.forward_chunk([token], pos)
        token = net.argmax_row(0)
        step_ms.append((time.perf_counter_ns() - t0) / 1e6)
        read_ms.append(step_probe.read_seconds() * 1e3)
        layer_read_ms += [layer_probe.read_seconds() * 1e3 for _ in range(net.n_layers)]
    return {
        "bytes": step_probe.nbytes,
        "layer_bytes": layer_probe.nbytes,
        "step_ms": step_ms,
        "read_ms": read_ms,
        "layer_read_ms": layer_read_ms,
    }


def audit_model(
    source: str, prompt: str, max_tokens: int, threads: int | None, repeat: int, quant: str, probe: float
) -> dict[str, Any]:
    from .. import load

    model = load(source, quant=quant, threads=threads)
    ids = model.encode(prompt)
    # Cold warmup: the first forward pass after load (one token, lm_head and argmax included).
    cold = model.generate(ids[:1], max_tokens=1, temperature=0.0, ignore_eos=True)
    prof = model.enable_profiling()
    for _ in range(repeat):
        model.generate(ids, max_tokens=max_tokens + 1, temperature=0.0, ignore_eos=True)
    model.disable_profiling()
    run = collect(model, os.path.basename(source.rstrip("/")) or source, prof.steps,
                  cold.timings.prompt_ms, probe)  # fmt: skip
    run["host_reference"] = host_reference(model, ids, max_tokens)
    del model
    gc.collect()
    return run


def machine_facts(probe: float) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "isa": _isa(),
        "probe_gbs": probe,
        "python": platform.python_version(),
    }


def plot(analyses: list[dict[str, Any]], path: str) -> None:
    """Per-step stacked bars of the components and a per-layer heat map, one row per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PyrustmlError("--plot needs matplotlib: pip install 'pyrustml[plot]'") from exc
    import numpy as np

    fig, axes = plt.subplots(len(analyses), 2, figsize=(14, 4 * len(analyses)), squeeze=False)
    for row, a in enumerate(analyses):
        decodes = [s for s in a["steps_raw"] if s["kind"] == "decode"]
        split = [report._components_ms(s) for s in decodes]
        comp = {k: np.array([c[k] for c in split]) for k in report.COMPONENTS}
        ax = axes[row][0]
        bottom = np.zeros(len(decodes))
        x = np.arange(1, len(decodes) + 1)
        for k in report.COMPONENTS:
            ax.bar(x, comp[k], bottom=bottom, label=report.LABELS[k], width=1.0)
            bottom += comp[k]
        ax.set_title(f"{a['name']}: decode step components")
        ax.set_xlabel("decode step")
        ax.set_ylabel("ms")
        ax.legend(fontsize="small")
        heat = np.array([[(s["attention_ns"][i] + s["ffn_ns"][i]) / 1e6 for s in decodes]
                         for i in range(a["config"]["layers"])])  # fmt: skip
        ax = axes[row][1]
        im = ax.imshow(heat, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(f"{a['name']}: layer time (ms)")
        ax.set_xlabel("decode step")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for flag, v in (("--max-tokens", args.max_tokens), ("--repeat", args.repeat)):
        if v < 1:
            print(f"pyrustml-audit: error: {flag} must be >= 1", file=sys.stderr)
            return 2
    if args.threads is not None and args.threads < 1:
        print("pyrustml-audit: error: --threads must be >= 1", file=sys.stderr)
        return 2
    try:
        from ..engine.kernels import probe_read_bandwidth
        from ..engine.pool import RuntimeConfig

        RuntimeConfig(args.threads).warmup_thread_pool()
        probe = probe_read_bandwidth()
        runs = [
            audit_model(s, args.prompt, args.max_tokens, args.threads, args.repeat, args.quant, probe)
            for s in args.sources
        ]
        analyses = [report.analyze(r) for r in runs]
        machine = machine_facts(probe)
        if args.format == "json":
            text = json.dumps({"machine": machine, "models": analyses}, indent=1)
        else:
            pre = [
                f"> Date: {machine['date']}; {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
                f"kernels {machine['isa']}; read bandwidth probed at {probe:.1f} GB/s",
                f"> `pyrustml-audit {' '.join(sys.argv[1:] if argv is None else argv)}`: {args.repeat} runs "
                f"of {args.max_tokens} greedy decode steps per model, after a cold 1-token forward",
            ]
            text = report.markdown(analyses, preamble=pre)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        else:
            sys.stdout.write(text + "\n")
        if args.plot:
            plot(analyses, args.plot)
        return 0
    except KeyboardInterrupt:
        print("pyrustml-audit: interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:
        print(f"pyrustml-audit: error: {exc}", file=sys.stderr)
        return 2
    except (PyrustmlError, OSError) as exc:
        print(f"pyrustml-audit: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("pyrustml-audit: error: out of memory", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
