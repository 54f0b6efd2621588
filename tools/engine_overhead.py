"""Python time per engine step at 1 and N concurrent sequences (issue 14: the Python work of a
step must not grow per sequence beyond sampling).

Runs N greedy streams together with the profiler on and splits each decode step into the libq8
plan run (embedding, layers, final norm), the batched lm_head, and the rest: Python (the engine
loop's glue: admitting, building the rows, releasing) and each sequence's token handling
(accept, detokenize, stop strings, queueing the text). Medians over the steps where all N
sequences decoded.

    python tools/engine_overhead.py /tmp/gpt2-random --streams 1 4 16 --tokens 64
"""

from __future__ import annotations

import argparse
import statistics
import threading

import pyrustml


def measure(model: pyrustml.Model, n: int, tokens: int) -> dict[str, float]:
    prof = model.enable_profiling()
    prof.steps.clear()
    prompts = [[(7 * k + j) % 200 + 1 for j in range(16)] for k in range(n)]
    streams = [model.stream(p, max_tokens=tokens, temperature=0, ignore_eos=True) for p in prompts]
    threads = [threading.Thread(target=lambda s=s: [None for _ in s]) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model.disable_profiling()
    full = [s for s in prof.steps if s.kind == "decode" and s.tokens == n]
    if not full:
        raise SystemExit(f"no decode step ran all {n} sequences together")

    def med(values: list[int]) -> float:
        return statistics.median(values) / 1e3  # us

    plan = med([s.embedding_ns + sum(s.attention_ns) + sum(s.ffn_ns) + s.norm_ns for s in full])
    lm = med([s.lm_head_ns for s in full])
    glue = med([s.glue_ns for s in full])
    seq = med([s.sampling_ns for s in full])
    total = med([s.total_ns for s in full])
    return {"steps": len(full), "total_us": total, "plan_us": plan, "lm_head_us": lm, "glue_us": glue,
            "per_sequence_us": seq, "python_share": (glue + seq) / total}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    model = pyrustml.load(args.model, threads=args.threads, parallel=max(args.streams))
    measure(model, 1, 8)  # warm up
    print("| sequences | steps | step us | plan us | lm_head us | engine glue us | token handling us "
          "| Python share |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for n in args.streams:
        r = measure(model, n, args.tokens)
        per = r["per_sequence_us"]
        print(f"| {n} | {r['steps']:.0f} | {r['total_us']:.0f} | {r['plan_us']:.0f} | "
              f"{r['lm_head_us']:.0f} | {r['glue_us']:.0f} | {per:.0f} ({per / n:.1f} per sequence) | "
              f"{100 * r['python_share']:.1f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
