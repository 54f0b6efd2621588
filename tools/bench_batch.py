"""Continuous batching in the library, measured in one process (issue 14's engine targets).

1. Aggregate decode: C concurrent greedy streams (128-token prompts, 128 generated tokens with
   ignore_eos) for each C; aggregate generated tok/s, per-stream tok/s, and the ratio to one
   stream, all in the same run.
2. Join interference: 8 streams decode; a 512-token prompt joins. The running streams' gaps
   between tokens during the join are compared with their gaps before it and with the time of
   one prefill chunk (PREFILL_ROWS prompt rows beside the decode rows, measured in the same run).

    python tools/bench_batch.py /tmp/gpt2-random --streams 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time

import pyrustml
from pyrustml.generate.scheduler import PREFILL_ROWS

VOCAB = [5000]  # token ids stay below the model's vocabulary
PLEN = [128]  # prompt tokens of a stream (less on a model with a short context)
JOIN = 512


def prompt(k: int, n: int) -> list[int]:
    return [(31 * k + 7 * j) % VOCAB[0] + 1 for j in range(n)]


def run_streams(m: pyrustml.Model, c: int, tokens: int, plen: int) -> tuple[float, list[float]]:
    """C streams started together; returns (aggregate generated tok/s while they decode, each
    stream's own decode tok/s)."""
    starts: list[float] = [0.0] * c
    ends: list[float] = [0.0] * c
    rates: list[float] = [0.0] * c

    def client(k: int) -> None:
        t0 = time.perf_counter()
        g = m.generate(prompt(k, plen), max_tokens=tokens, temperature=0, ignore_eos=True)
        # The generation's own clock: its first token, then its decode.
        starts[k] = t0 + g.timings.first_token_ms / 1000.0
        ends[k] = starts[k] + g.timings.eval_ms / 1000.0
        rates[k] = 1000.0 * g.timings.eval_tokens / g.timings.eval_ms

    ts = [threading.Thread(target=client, args=(k,)) for k in range(c)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # Aggregate over the window where all streams decode: generated tokens after each stream's
    # first, over the span from the first stream's first token to the last stream's end.
    span = max(ends) - min(starts)
    return c * (tokens - 1) / span, rates


def join(m: pyrustml.Model, tokens: int) -> dict[str, float]:
    """8 streams decode; at their 32nd token a 512-token prompt joins."""
    gaps: list[list[tuple[float, float]]] = [[] for _ in range(8)]
    joined = threading.Event()
    t_join: list[float] = [0.0, 0.0]  # submitted, first token of the joiner

    def client(k: int) -> None:
        last = 0.0
        for i, _ in enumerate(
            m.stream(prompt(k, PLEN[0]), max_tokens=tokens, temperature=0, ignore_eos=True)
        ):
            now = time.perf_counter()
            if last:
                gaps[k].append((last, now))
            last = now
            if k == 0 and i == min(32, tokens // 4):
                joined.set()

    def joiner() -> None:
        joined.wait()
        t_join[0] = time.perf_counter()
        for _ in m.stream(prompt(99, JOIN), max_tokens=1, temperature=0):
            t_join[1] = time.perf_counter()

    ts = [threading.Thread(target=client, args=(k,)) for k in range(8)] + [threading.Thread(target=joiner)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    before = [b - a for g in gaps for a, b in g if b < t_join[0]] or [float("nan")]
    during = [b - a for g in gaps for a, b in g if a < t_join[1] and b > t_join[0]] or [float("nan")]
    return {
        "gap_before_ms": 1000 * statistics.median(before[-64:]),
        "gap_during_max_ms": 1000 * max(during),
        "gap_during_median_ms": 1000 * statistics.median(during),
        "joiner_ttft_ms": 1000 * (t_join[1] - t_join[0]),
    }


def chunk_time(m: pyrustml.Model) -> float:
    """One step of PREFILL_ROWS prompt rows beside 8 decode rows, timed on the net directly (the
    same plan run the engine makes), median of 9."""
    net = m.net
    t = PREFILL_ROWS + 8
    out = []
    with m.exclusive():
        for _ in range(9):
            net.row_tokens[:t] = prompt(5, t)
            net.row_slots[:t] = [0] * PREFILL_ROWS + list(range(1, 9))
            net.row_pos[:t] = list(range(PREFILL_ROWS)) + [min(300, m.ctx - 1)] * 8
            t0 = time.perf_counter()
            net.run(t)
            net.project(list(range(PREFILL_ROWS - 1, t)))
            out.append(time.perf_counter() - t0)
    return 1000 * statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    m = pyrustml.load(args.model, threads=args.threads, parallel=max(16, *args.streams), ctx=1024)
    global JOIN
    VOCAB[0] = min(5000, m.net.vocab_size - 1)
    PLEN[0] = min(128, m.ctx // 4)
    JOIN = min(512, m.ctx - 2)
    args.tokens = min(args.tokens, m.ctx - PLEN[0])
    run_streams(m, 1, 8, 16)  # warm-up
    print(f"CPU: {cpu()}; {m.runtime.threads} threads; model {args.model}")
    print("| streams | aggregate tok/s | per-stream tok/s (median) | x one stream |")
    print("|---|---|---|---|")
    one = 0.0
    for c in args.streams:
        agg, rates = run_streams(m, c, args.tokens, PLEN[0])
        if c == 1:
            one = agg
        print(f"| {c} | {agg:.1f} | {statistics.median(rates):.1f} | {agg / one if one else 0:.2f} |")
    j = join(m, args.tokens)
    ch = chunk_time(m)
    print(f"join of a {JOIN}-token prompt beside 8 streams: gaps before {j['gap_before_ms']:.2f} ms, "
          f"during median {j['gap_during_median_ms']:.2f} ms / max {j['gap_during_max_ms']:.2f} ms; "
          f"one {PREFILL_ROWS}-row chunk step {ch:.2f} ms; joiner's first token after "
          f"{j['joiner_ttft_ms']:.0f} ms")  # fmt: skip


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
