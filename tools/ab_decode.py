"""Paired A/B of a decode-time knob: the variants take turns, step by step, in one process, so each
sees the same host (this machine's bandwidth moves 2x within a minute; runs one after the other
compare the host, not the code).

    python tools/ab_decode.py /tmp/gpt2-random VAR 0,1 [--rounds 6] [--threads 2]

VAR is set in the environment before every decode step, cycling through the values; the code
under test must read it at run time (a temporary getenv in libq8 or pyrustml while you
experiment). Each round prefills 128 tokens, decodes positions 128..255 and prints each value's
median step; the last line is the median of the rounds' medians. For changes a knob cannot
flip (memory layout), load two models in one process and alternate them the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pyrustml
from pyrustml import kernels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("var")
    ap.add_argument("values", help="comma-separated")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    values = args.values.split(",")
    net = pyrustml.load(args.model, threads=args.threads).net
    ids = [100 + i for i in range(128)]
    rounds: dict[str, list[float]] = {v: [] for v in values}
    for _ in range(args.rounds):
        probe = kernels.probe_read_bandwidth(1 << 27, 3)
        net.forward_chunk(ids, 0)
        steps: dict[str, list[int]] = {v: [] for v in values}
        token = ids[-1]
        for pos in range(128, min(256, net.max_positions)):
            v = values[pos % len(values)]
            os.environ[args.var] = v
            t0 = time.perf_counter_ns()
            net.forward_chunk([token], pos)
            token = net.argmax_row(0)
            steps[v].append(time.perf_counter_ns() - t0)
        meds = {v: statistics.median(steps[v]) / 1e6 for v in values}
        for v in values:
            rounds[v].append(meds[v])
        print(f"probe {probe:5.1f} GB/s: " + "  ".join(f"{args.var}={v} {meds[v]:.3f} ms" for v in values))
    print("median of medians: " + "  ".join(f"{v}: {statistics.median(rounds[v]):.3f} ms" for v in values))


if __name__ == "__main__":
    main()
