"""End-to-end benchmark: load, cold first token, prefill and decode against the memory roofline.

    pyrustml-bench /tmp/gpt2-random /tmp/gemma3-random --repeat 3 --json bench.json
    python tools/bench.py --make-models /tmp --repeat 3 --out table.md
    python -m pyrustml.perf.bench --quick tests/fixtures/gpt2-tiny-hf

Every checkpoint is loaded with Q8_0 weights at each thread count (--threads, default "1,default";
"default" is one thread per physical core), --repeat times. Each (repeat, model, threads) is one
fresh worker process, so its load starts from nothing (peak RSS, cold caches, a new thread pool)
and no model's memory or kernels warm another's. The worker, in order:

1. load: wall time of pyrustml.load and Model.load_ms; peak RSS during the load (VmHWM, reset
   with /proc/self/clear_refs just before it, so the interpreter's import peak is not counted)
   against the resident size (VmRSS) right after it;
2. cold first token: the first generate after the load, on a 1-token prompt, max_tokens=1:
   Timings.first_token_ms is one single-token forward pass plus the lm_head argmax, the same work
   as a warm decode step, so the ratio cold / warm step shows what a first call pays extra
   (page faults of untouched buffers, cold code and caches, pool wake-up);
3. one unmeasured warm-up prefill of the prompt (its time is kept in the JSON as first_prefill_ms):
   the first batched pass touches the prefill buffers' pages, which a user pays once per process;
4. the measured run: a --prompt-tokens token-id prompt (a fixed pseudo-random sequence of ordinary
   ids, BOS first where the checkpoint wants one) then --decode-tokens greedy decode steps with
   ignore_eos=True (max_tokens = decode + 1: the first token comes from the prefill).
   prefill tok/s = prompt tokens / Timings.prompt_ms, which ends at the first token (TTFT), so it
   includes the last row's lm_head; decode figures come from Timings.step_ms (one forward of one
   token plus the lm_head argmax per step): median, p90, tok/s = 1000 / median ms.

Bytes per token = Transformer.decode_bytes(pos).total (weights, one embedding row, the KV cache the
step reads) averaged over the decode positions; GB/s = bytes / median step; the roofline is the
libq8 read-bandwidth probe of the same thread count, run by the worker itself just before and just
after its measured run; the better of the two is the reference, so % of probe is the conservative
figure: roofline tok/s = probe / bytes, % of probe = GB/s / probe. Probing next to the decode, not
only at the start and end of the whole benchmark, matters on a shared host: its bandwidth has been
seen to move from 28 to 60 GB/s within a minute. The start and end probes are reported too.

The CPU time other processes used while each worker ran (from /proc/stat, minus this process and
its reaped children) is reported next to its figures: this benchmark measures a shared machine.
The summary is the median over the repeats with min-max. Progress goes to stderr; stdout carries
only the markdown report (also --out FILE); --json FILE keeps every raw figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..engine import kernels
from ..engine._ffi import library_path
from ..engine.host import CpuShare, physical_cores, rss_bytes
from ..engine.pool import RuntimeConfig
from ..io.weights import QUANTS
from ..model import Generation, Model, load

PROMPT_TOKENS = 128
DECODE_TOKENS = 128
QUICK_TOKENS = 8
PROBE_MIB = 256
PROBE_REPS = 5
QUICK_PROBE_MIB = 32
QUICK_PROBE_REPS = 2
NOISY_PCT = 5.0  # other-process CPU above this share of the machine marks figures as suspect

# Checkpoints --make-models writes with tools/make_random_model.py: (--arch, directory name).
RANDOM_MODELS = (
    ("gpt2", "gpt2-random"),
    ("gemma3-1b", "gemma3-random"),
    ("llama", "llama-random"),  # Llama 3.2 1B
    ("qwen2", "qwen2-random"),  # Qwen2.5 0.5B
)


# ---- the worker: one fresh process per (repeat, model, threads) ---------------------------


def proc_status_kib() -> dict[str, int]:
    """Resident size (psutil) and its peak in KiB; the peak is Linux's VmHWM (0 elsewhere), the one
    counter reset_peak_rss can restart."""
    out = {"VmRSS": rss_bytes() // 1024, "VmHWM": 0}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "VmHWM":
                out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def reset_peak_rss() -> bool:
    """Make VmHWM restart from the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def prompt_ids(model: Model, n: int, seed: int) -> list[int]:
    """n token ids: BOS first if the checkpoint adds one, then ids drawn with a fixed seed from
    those the tokenizer knows, skipping BOS and every EOS (so no id ends or restarts a text)."""
    vocab = min(model.net.vocab_size, model.tokenizer.vocab_size)
    skip = set(model.eos_ids)
    if model.bos_id is not None:
        skip.add(model.bos_id)
    if len(skip) >= vocab:
        raise ValueError("the vocabulary has no ordinary token ids")
    ids: list[int] = [model.bos_id] if model.add_bos and model.bos_id is not None else []
    rng = random.Random(seed)  # randrange on ints is stable across Python versions
    while len(ids) < n:
        i = rng.randrange(vocab)
        if i not in skip:
            ids.append(i)
    return ids[:n]


def greedy(model: Model, ids: list[int], max_tokens: int) -> Generation:
    """A fixed-length greedy run: every sampling option pinned, so generation_config's sampling
    defaults cannot route a step through the Python sampler instead of the fused argmax."""
    return model.generate(
        ids, max_tokens=max_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
        repetition_penalty=1.0, ignore_eos=True,
    )  # fmt: skip


def measure_lookup(model: Model, prompt: list[int], decode_tokens: int, lookup: int) -> dict[str, Any]:
    """Prompt-lookup decoding on a repetitive prompt (a passage of the prompt quoted three times,
    as when a text is edited or summarized): the same greedy tokens with and without drafts,
    and the time each takes. A random-weight model's continuation is not the passage, so what
    gets accepted is whatever repeats in its own output."""
    start = prompt[:1] if model.add_bos else []
    passage = prompt[len(start) : len(start) + 40]
    ids = start + passage * 3
    budget = min(decode_tokens, model.net.max_positions - len(ids) - 1)
    plain = greedy(model, ids, budget)
    spec = model.generate(ids, max_tokens=budget, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                          repetition_penalty=1.0, ignore_eos=True, lookup=lookup)  # fmt: skip
    if spec.tokens != plain.tokens:
        raise RuntimeError("prompt-lookup decoding changed the greedy output")
    return {
        "lookup": lookup,
        "lookup_prompt_tokens": len(ids),
        "lookup_tokens": len(plain.tokens),
        "plain_eval_ms": plain.timings.eval_ms,
        "lookup_eval_ms": spec.timings.eval_ms,
        "lookup_speedup": plain.timings.eval_ms / spec.timings.eval_ms if spec.timings.eval_ms > 0 else 0.0,
        "draft_tokens": spec.timings.draft_tokens,
        "accepted_tokens": spec.timings.accepted_tokens,
        "verify_passes": len(spec.timings.step_ms),
    }


def measure(
    source: str, threads: int | None, prompt_tokens: int, decode_tokens: int, seed: int, lookup: int = 0,
    probe_mib: int = 0, probe_reps: int = 0, quant: str = "q8_0",
) -> dict[str, Any]:  # fmt: skip
    """Everything one worker measures, as raw figures (see the module docstring)."""
    hwm_reset = reset_peak_rss()
    before = proc_status_kib()
    t0 = time.perf_counter()
    model = load(source, quant=quant, threads=threads)
    load_wall_ms = (time.perf_counter() - t0) * 1000.0
    after = proc_status_kib()  # read before anything else allocates
    net = model.net
    if prompt_tokens + decode_tokens > net.max_positions:
        raise ValueError(
            f"{prompt_tokens} prompt + {decode_tokens} decode positions exceed the model's "
            f"context of {net.max_positions}"
        )
    prompt = prompt_ids(model, prompt_tokens, seed)

    t1 = time.perf_counter()
    cold = greedy(model, prompt[:1], 1)
    cold_wall_ms = (time.perf_counter() - t1) * 1000.0
    warm_one = greedy(model, prompt[:1], 1)
    first_prefill = greedy(model, prompt, 1)
    # The roofline of this run: the pool this model uses, probed right before and right after it.
    probe_before = kernels.probe_read_bandwidth(probe_mib << 20, probe_reps) if probe_mib else 0.0
    # The engine keeps a finished sequence's cache as a prefix cache: the same prompt again
    # would prefill one token, not prompt_tokens. Forget it, and check that nothing was reused.
    with model.exclusive():
        pass
    run = greedy(model, prompt, decode_tokens + 1)
    if run.timings.cached_tokens:
        raise RuntimeError(
            f"the measured prefill reused {run.timings.cached_tokens} cached prompt tokens: its "
            "tok/s would not be a prefill's"
        )
    probe_after = kernels.probe_read_bandwidth(probe_mib << 20, probe_reps) if probe_mib else 0.0
    steps = list(run.timings.step_ms)
    if len(steps) != decode_tokens or run.timings.prompt_tokens != prompt_tokens:
        raise RuntimeError(
            f"expected {prompt_tokens} prompt tokens and {decode_tokens} decode steps, got "
            f"{run.timings.prompt_tokens} and {len(steps)}"
        )
    # Step i runs the token at position prompt_tokens + i (then the lm_head).
    streams = [net.decode_bytes(prompt_tokens + i) for i in range(decode_tokens)]
    spec = measure_lookup(model, prompt, decode_tokens, lookup) if lookup else {}
    end = proc_status_kib()
    return {
        **spec,
        "model": source,
        "quant": quant,
        "model_type": net.model_type,
        "vocab_size": net.vocab_size,
        "hidden_size": net.hidden_size,
        "n_matrices": net.n_matrices,
        "threads_requested": threads,
        "threads": model.runtime.threads,
        "isa": kernels.isa_active(),
        "pid": os.getpid(),
        "load_ms": model.load_ms,
        "load_wall_ms": load_wall_ms,
        "rss_before_load_kib": before["VmRSS"],
        "peak_rss_load_kib": after["VmHWM"],
        "rss_after_load_kib": after["VmRSS"],
        "peak_rss_reset": hwm_reset,
        "peak_rss_run_kib": end["VmHWM"],
        "rss_end_kib": end["VmRSS"],
        "cold_first_token_ms": cold.timings.first_token_ms,
        "cold_generate_wall_ms": cold_wall_ms,
        "warm_first_token_ms": warm_one.timings.first_token_ms,
        "first_prefill_ms": first_prefill.timings.prompt_ms,
        "prompt_tokens": run.timings.prompt_tokens,
        "prompt_ms": run.timings.prompt_ms,
        "cached_prompt_tokens": run.timings.cached_tokens,  # 0: every prompt token ran
        "time_to_first_token_ms": run.timings.first_token_ms,  # queue_ms + prompt_ms
        "queue_ms": run.timings.queue_ms,
        "decode_tokens": len(steps),
        "step_ms": steps,
        "bytes_per_token": statistics.fmean(s.total for s in streams),
        "bytes_first_step": streams[0].total,
        "bytes_last_step": streams[-1].total,
        "bytes_embedding": statistics.fmean(s.embedding for s in streams),
        "bytes_attention": statistics.fmean(sum(s.attention) for s in streams),  # incl. KV reads
        "bytes_ffn": statistics.fmean(sum(s.ffn) for s in streams),
        "bytes_lm_head": statistics.fmean(s.lm_head for s in streams),
        "generated_tokens": len(run.tokens),
        "probe_before_gbs": probe_before,
        "probe_after_gbs": probe_after,
    }


def worker_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="pyrustml.perf.bench --worker")
    ap.add_argument("--worker", required=True, help="JSON: source, threads, prompt/decode tokens, seed")
    ap.add_argument("--worker-out", type=Path, required=True)
    a = ap.parse_args(argv)
    spec = json.loads(a.worker)
    res = measure(
        str(spec["source"]), spec["threads"], int(spec["prompt_tokens"]), int(spec["decode_tokens"]),
        int(spec["seed"]), int(spec.get("lookup", 0)), int(spec.get("probe_mib", 0)),
        int(spec.get("probe_reps", 0)), str(spec.get("quant", "q8_0")),
    )  # fmt: skip
    a.worker_out.write_text(json.dumps(res))
    return 0


# ---- machine facts ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "unknown"


def git_commit() -> str:
    """The checkout's commit when the package runs from one ('' when installed elsewhere)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ""
    try:
        r = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


CpuLoad = CpuShare  # other processes' CPU share while a worker ran


# ---- the driver -------------------------------------------------------------------------


def parse_threads(text: str) -> list[int | None]:
    """'1,default' -> [1, None]; None is RuntimeConfig's default (one per physical core)."""
    out: list[int | None] = []
    for tok in (t.strip().lower() for t in text.split(",")):
        if not tok:
            continue
        if tok == "default":
            out.append(None)
            continue
        try:
            n = int(tok)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"thread counts are integers or 'default', got {tok!r}"
            ) from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {n}")
        out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("no thread counts given")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="pyrustml-bench", description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc.split("\n\n", 2)[-1],
    )  # fmt: skip
    ap.add_argument("models", nargs="*", help="checkpoint directories (or hub repo ids)")
    ap.add_argument("--model", action="append", default=[], help="another checkpoint (repeatable)")
    ap.add_argument("--make-models", type=Path, metavar="DIR",
                    help="also benchmark DIR/{gpt2,gemma3,llama,qwen2}-random, writing the missing "
                    "ones with tools/make_random_model.py (needs a checkout)")  # fmt: skip
    ap.add_argument(
        "--threads",
        type=parse_threads,
        default=parse_threads("1,default"),
        help="comma-separated pool sizes; 'default' = one per physical core (default 1,default)",
    )
    ap.add_argument("--repeat", type=int, default=None, help="fresh-process runs of each (default 1)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help=f"default {PROMPT_TOKENS}")
    ap.add_argument("--decode-tokens", "--max-tokens", dest="decode_tokens", type=int, default=None,
                    help=f"decode steps per run (default {DECODE_TOKENS})")  # fmt: skip
    ap.add_argument("--probe-mib", type=int, default=None, help=f"probe buffer (default {PROBE_MIB})")
    ap.add_argument("--probe-reps", type=int, default=None, help=f"probe passes (default {PROBE_REPS})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt's token ids")
    ap.add_argument("--quant", default="q8_0",
                    help="comma-separated weight quant modes, each run for every model and thread "
                    "count, alternating within a repeat so their ratios are paired "
                    "(q8_0, q4_0, q4_0-pure, f32; default q8_0)")  # fmt: skip
    ap.add_argument("--lookup", type=int, default=8, metavar="N",
                    help="also decode a repetitive prompt with N-token lookup drafts (0: skip)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per worker")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK_TOKENS}-token prompt and decode, small probe (explicit options win)",
    )
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every raw figure here")
    ap.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the markdown here")
    ap.add_argument("--reference", type=Path, default=None, metavar="FILE",
                    help="a previous run's --json: add a table of this run against it")  # fmt: skip
    ap.add_argument("--version", action="version", version=f"pyrustml-bench {__version__}")
    a = ap.parse_args(argv)
    quick: bool = a.quick
    a.repeat = 1 if a.repeat is None else a.repeat
    a.prompt_tokens = (
        (QUICK_TOKENS if quick else PROMPT_TOKENS) if a.prompt_tokens is None else a.prompt_tokens
    )
    a.decode_tokens = (
        (QUICK_TOKENS if quick else DECODE_TOKENS) if a.decode_tokens is None else a.decode_tokens
    )
    a.probe_mib = (QUICK_PROBE_MIB if quick else PROBE_MIB) if a.probe_mib is None else a.probe_mib
    a.probe_reps = (QUICK_PROBE_REPS if quick else PROBE_REPS) if a.probe_reps is None else a.probe_reps
    for name in ("repeat", "prompt_tokens", "decode_tokens", "probe_mib", "probe_reps"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    a.quants = [q.strip() for q in a.quant.split(",") if q.strip()]
    for q in a.quants:
        if q not in QUANTS:
            ap.error(f"--quant takes {', '.join(QUANTS)}, got {q!r}")
    if not a.quants:
        ap.error("--quant needs at least one mode")
    a.sources = [*a.models, *a.model]
    if not a.sources and a.make_models is None:
        ap.error("give checkpoint directories, --model, or --make-models DIR")
    return a


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_models(directory: Path) -> list[str]:
    """DIR/gpt2-random, gemma3-random, llama-random and qwen2-random, generated where missing
    (full size: ~0.5, 2, 2.5 and 1 GB, minutes each)."""
    script = Path(__file__).resolve().parents[2] / "tools" / "make_random_model.py"
    if not script.is_file():
        raise SystemExit(f"--make-models needs a pyrustml checkout: {script} is missing")
    out: list[str] = []
    for arch, name in RANDOM_MODELS:
        d = directory / name
        if not all((d / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")):
            _log(f"writing a random {arch} checkpoint to {d} ...")
            # The generator's listing goes to stderr: stdout carries only the report.
            subprocess.run([sys.executable, str(script), "--arch", arch, "--out", str(d)],
                           check=True, stdout=sys.stderr)  # fmt: skip
        out.append(str(d))
    return out


def _source(s: str) -> str:
    """Local directories absolute (workers run elsewhere); anything else is a hub repo id."""
    p = Path(s)
    return str(p.resolve()) if p.exists() else s


def run_worker(
    source: str, threads: int | None, args: argparse.Namespace, tmp: Path, quant: str = "q8_0"
) -> dict[str, Any]:
    """One fresh interpreter running measure(); -P and PYTHONPATH make it import this very
    pyrustml (the installed one, or the source tree we run from), whatever the directory."""
    out = tmp / f"worker-{time.monotonic_ns()}.json"
    spec = {"source": source, "threads": threads, "prompt_tokens": args.prompt_tokens,
            "decode_tokens": args.decode_tokens, "seed": args.seed, "lookup": args.lookup,
            "probe_mib": args.probe_mib, "probe_reps": args.probe_reps, "quant": quant}  # fmt: skip
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "pyrustml.perf.bench",
        "--worker",
        json.dumps(spec),
        "--worker-out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=False)
    if r.returncode != 0 or not out.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise RuntimeError(
            f"worker for {source} (threads {threads}) exited {r.returncode}: " + " | ".join(tail)
        )
    res: dict[str, Any] = json.loads(out.read_text())
    return res


def derive(run: dict[str, Any], fallback_gbs: float) -> None:
    """The figures computed from a worker's raw ones and its probes, added to run in place
    (fallback_gbs: the benchmark's own start/end probe, for a worker whose probes failed)."""
    probe_gbs = max(float(run.get("probe_before_gbs", 0.0)), float(run.get("probe_after_gbs", 0.0)))
    if probe_gbs <= 0.0:
        probe_gbs = fallback_gbs
    steps: list[float] = run["step_ms"]
    med = statistics.median(steps)
    b = float(run["bytes_per_token"])
    run["decode_ms_median"] = med
    run["decode_ms_p90"] = float(np.percentile(steps, 90))
    run["decode_ms_min"] = min(steps)
    run["decode_ms_max"] = max(steps)
    run["decode_tok_s"] = 1000.0 / med
    run["achieved_gbs"] = b / (med / 1000.0) / 1e9
    run["probe_gbs"] = probe_gbs
    run["pct_of_probe"] = 100.0 * run["achieved_gbs"] / probe_gbs
    run["roofline_tok_s"] = probe_gbs * 1e9 / b
    run["roofline_ms"] = 1000.0 / run["roofline_tok_s"]
    run["prefill_tok_s"] = 1000.0 * run["prompt_tokens"] / run["prompt_ms"]
    run["cold_over_step"] = run["cold_first_token_ms"] / med
    run["peak_over_final_rss"] = run["peak_rss_load_kib"] / run["rss_after_load_kib"]


SUMMARY_METRICS = (
    "load_ms", "peak_rss_load_kib", "rss_after_load_kib", "peak_over_final_rss", "cold_first_token_ms",
    "warm_first_token_ms", "cold_over_step", "first_prefill_ms", "prompt_ms", "prefill_tok_s",
    "time_to_first_token_ms", "decode_ms_median", "decode_ms_p90", "decode_tok_s", "bytes_per_token",
    "achieved_gbs", "probe_gbs", "pct_of_probe", "roofline_tok_s", "other_processes_pct",
)  # fmt: skip


LOOKUP_METRICS = ("lookup_speedup", "accepted_tokens", "draft_tokens", "lookup_tokens")


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, thread label): each metric's median, min and max over the repeats."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["model"], r.get("quant", "q8_0"), r["threads_label"]), []).append(r)
    rows: list[dict[str, Any]] = []
    for (model, quant, label), rs in groups.items():
        name = Path(model).name or model
        row: dict[str, Any] = {
            "model": model, "name": name if quant == "q8_0" else f"{name} {quant}", "quant": quant,
            "model_type": rs[0]["model_type"], "threads_label": label, "threads": rs[0]["threads"],
            "repeats": len(rs),
        }  # fmt: skip
        for m in (*SUMMARY_METRICS, *LOOKUP_METRICS):
            if not all(m in r for r in rs):
                continue  # the lookup figures exist only when --lookup ran
            vals = [float(r[m]) for r in rs]
            row[m] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
        rows.append(row)
    return rows


def compare(rows: list[dict[str, Any]], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """This run's medians against those of a reference run (a --json file the user gave), for the
    rows of the same model name and thread count: ratio = this / reference."""
    ref = {(r["name"], r["threads"]): r for r in reference.get("summary", [])}
    out: list[dict[str, Any]] = []
    for row in rows:
        old = ref.get((row["name"], row["threads"]))
        if old is None:
            continue
        for metric in COMPARED:
            if metric in row and metric in old and float(old[metric]["median"]) > 0:
                new_v, old_v = float(row[metric]["median"]), float(old[metric]["median"])
                out.append({"model": row["name"], "threads": row["threads"], "metric": metric,
                            "median": new_v, "reference": old_v, "ratio": new_v / old_v})  # fmt: skip
    return out


COMPARED = ("decode_tok_s", "prefill_tok_s", "load_ms", "peak_rss_load_kib", "pct_of_probe")


# ---- report -----------------------------------------------------------------------------


def _cell(stat: dict[str, float], spec: str, scale: float = 1.0) -> str:
    med = format(stat["median"] * scale, spec)
    lo, hi = format(stat["min"] * scale, spec), format(stat["max"] * scale, spec)
    return med if lo == hi else f"{med} ({lo}-{hi})"


COLUMNS = (
    # header, metric, format, scale
    ("load s", "load_ms", ".2f", 1e-3),
    ("load peak RSS MiB", "peak_rss_load_kib", ".0f", 1 / 1024),
    ("RSS after load MiB", "rss_after_load_kib", ".0f", 1 / 1024),
    ("peak / after", "peak_over_final_rss", ".2f", 1.0),
    ("cold 1st token ms", "cold_first_token_ms", ".1f", 1.0),
    ("cold / warm step", "cold_over_step", ".2f", 1.0),
    ("prefill tok/s", "prefill_tok_s", ".0f", 1.0),
    ("TTFT ms", "time_to_first_token_ms", ".1f", 1.0),
    ("decode ms/tok", "decode_ms_median", ".2f", 1.0),
    ("p90 ms", "decode_ms_p90", ".2f", 1.0),
    ("decode tok/s", "decode_tok_s", ".1f", 1.0),
    ("MB/token", "bytes_per_token", ".1f", 1e-6),
    ("GB/s", "achieved_gbs", ".1f", 1.0),
    ("probe GB/s", "probe_gbs", ".1f", 1.0),
    ("% of probe", "pct_of_probe", ".1f", 1.0),
    ("roofline tok/s", "roofline_tok_s", ".1f", 1.0),
    ("other CPU %", "other_processes_pct", ".0f", 1.0),
)


def markdown(doc: dict[str, Any]) -> str:
    meta, cpu = doc["meta"], doc["cpu_load"]
    commit = f", commit {meta['git']}" if meta["git"] else ""
    probes = "; ".join(
        f"{p['threads']} thread(s): {p['start_gbs']:.1f} at start / {p['end_gbs']:.1f} at end"
        for p in doc["probes"]
    )
    quants = ", ".join(q.upper() for q in meta.get("quants", ["q8_0"]))
    lines = [
        "# pyrustml end-to-end benchmark",
        "",
        f"- {meta['date']}: `{meta['command']}`",
        f"- CPU: {meta['cpu_model']} ({meta['logical_cpus']} logical CPUs, {meta['physical_cores']} "
        f"physical cores); kernels {meta['isa_active']} (supported: {','.join(meta['isa_supported'])}); "
        f"THP {meta['thp']}",
        f"- pyrustml {meta['pyrustml']} ({meta['package_dir']}{commit}); Python {meta['python']}; "
        f"numpy {meta['numpy']}",
        f"- read-bandwidth probe, GB/s ({meta['probe_mib']} MiB x {meta['probe_reps']} passes, all pool "
        f"threads): {probes}; each run's roofline (probe GB/s) is the better of its worker's probes "
        "just before and just after its decode",
        f"- {quants}; {meta['prompt_tokens']}-token id prompt, {meta['decode_tokens']} greedy decode steps "
        f"(ignore_eos); {meta['repeat']} fresh process(es) per row: median (min-max)",
        f"- load average at start {meta['loadavg_start'][0]:.2f}; CPU used by other processes during "
        f"the run {cpu['other_processes_pct']:.1f}% of the machine, steal {cpu['steal_pct']:.1f}% "
        f"(wall {cpu['wall_s']:.0f} s)",
    ]
    if cpu["other_processes_pct"] > NOISY_PCT or cpu["steal_pct"] > NOISY_PCT:
        lines.append("- WARNING: other work shared these CPUs during the run; the timings are suspect")
    cols = list(COLUMNS)
    if doc["summary"] and all("lookup_speedup" in r for r in doc["summary"]):
        cols += [("lookup speed-up", "lookup_speedup", ".2f", 1.0),
                 ("drafts accepted", "accepted_tokens", ".0f", 1.0),
                 ("drafted", "draft_tokens", ".0f", 1.0)]  # fmt: skip
    head = "| model | threads | " + " | ".join(c[0] for c in cols) + " |"
    lines += ["", head, "|" + "---|" * (len(cols) + 2)]
    for r in doc["summary"]:
        cells = [_cell(r[m], spec, scale) for _, m, spec, scale in cols]
        lines.append(f"| {r['name']} | {r['threads']} | " + " | ".join(cells) + " |")
    if doc["comparison"]:
        lines += ["", f"Against the reference run {doc['meta']['reference']}:", "",
                  "| model | threads | figure | this run | reference | this / reference |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for c in doc["comparison"]:
            lines.append(f"| {c['model']} | {c['threads']} | {c['metric']} | {c['median']:.2f} | "
                         f"{c['reference']:.2f} | {c['ratio']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _read_reference(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"pyrustml-bench: error: --reference {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), list):
        raise SystemExit(f"pyrustml-bench: error: --reference {path} is not a pyrustml-bench --json file")
    return doc


def _probe(threads: int, mib: int, reps: int) -> float:
    RuntimeConfig(threads).warmup_thread_pool()
    return kernels.probe_read_bandwidth(mib << 20, reps)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in argv:
        return worker_main(argv)
    args = parse_args(argv)
    reference = _read_reference(args.reference) if args.reference is not None else None
    sources = [_source(s) for s in args.sources]
    if args.make_models is not None:
        sources += make_models(args.make_models)
    command = shlex.join(["pyrustml-bench", *argv])
    loadavg = list(os.getloadavg())
    total = CpuLoad()

    # Thread counts as the pool resolves them; 'default' equal to an explicit count runs once.
    plan: list[tuple[str, int | None, int]] = []
    for req in args.threads:
        n = RuntimeConfig(req).threads
        if all(n != p[2] for p in plan):
            plan.append(("default" if req is None else str(n), req, n))
    start = {n: _probe(n, args.probe_mib, args.probe_reps) for _, _, n in plan}
    _log("probe at start: " + ", ".join(f"{n} thread(s) {g:.1f} GB/s" for n, g in start.items()))

    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pyrustml-bench-") as tmp:
        # Repeats outermost: a burst of outside load spreads over every row instead of one.
        for rep in range(args.repeat):
            for src in sources:
                # Quant modes back to back, their order reversed every other repeat (paired A/B).
                order = args.quants if rep % 2 == 0 else args.quants[::-1]
                for label, req, quant in [(lb, rq, q) for lb, rq, _n in plan for q in order]:
                    load_meter = CpuLoad()
                    try:
                        r = run_worker(src, req, args, Path(tmp), quant)
                    except (RuntimeError, subprocess.SubprocessError) as exc:
                        failures.append(str(exc))
                        _log(f"FAILED: {exc}")
                        continue
                    r.update(repeat=rep, threads_label=label, **load_meter.report())
                    runs.append(r)
                    _log(f"[{rep + 1}/{args.repeat}] {Path(src).name} {quant} threads={r['threads']}: "
                         f"load {r['load_ms']:.0f} ms, prefill {r['prompt_ms']:.0f} ms, decode "
                         f"{statistics.median(r['step_ms']):.2f} ms/token, other CPU "
                         f"{r['other_processes_pct']:.0f}%")  # fmt: skip
    end = {n: _probe(n, args.probe_mib, args.probe_reps) for _, _, n in plan}
    _log("probe at end: " + ", ".join(f"{n} thread(s) {g:.1f} GB/s" for n, g in end.items()))
    best = {n: max(start[n], end[n]) for n in start}
    for r in runs:
        derive(r, best[r["threads"]] if r["threads"] in best else max(best.values()))
    summary = summarize(runs)
    doc: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": command,
            "cpu_model": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "physical_cores": physical_cores(),
            "isa_active": kernels.isa_active(),
            "isa_supported": kernels.isa_supported(),
            "thp": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
            "kernel": platform.release(),
            "pyrustml": __version__,
            "package_dir": str(Path(__file__).resolve().parents[1]),
            "library": library_path,
            "git": git_commit(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "models": sources,
            "threads": [p[0] for p in plan],
            "repeat": args.repeat,
            "quants": args.quants,
            "prompt_tokens": args.prompt_tokens,
            "decode_tokens": args.decode_tokens,
            "seed": args.seed,
            "quick": args.quick,
            "lookup": args.lookup,
            "probe_mib": args.probe_mib,
            "probe_reps": args.probe_reps,
            "reference": str(args.reference) if args.reference is not None else None,
            "loadavg_start": loadavg,
            "loadavg_end": list(os.getloadavg()),
        },
        "probes": [{"threads": n, "start_gbs": start[n], "end_gbs": end[n], "gbs": best[n]} for n in start],
        "cpu_load": total.report(),
        "runs": runs,
        "summary": summary,
        "comparison": compare(summary, reference) if reference is not None else [],
        "failures": failures,
    }
    text = markdown(doc)
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.out is not None:
        args.out.write_text(text)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        _log(f"wrote {args.json}")
    return 1 if failures or not runs else 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()


__all__ = ["entry", "main", "measure"]
