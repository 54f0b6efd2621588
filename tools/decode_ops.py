"""Where a decode step goes, op by op: time per step of each kind of op and, for the weight and
cache passes, their GB/s against the read-bandwidth probe taken in the same run.

    python tools/decode_ops.py /tmp/gpt2-random [--threads 2] [--rounds 3] [--prompt 128] [--quant q8_0]

The model's decode plan is recorded again with a timestamp after every op (the profiler's MARK
op), then run for --prompt positions after a --prompt token prefill, with the lm_head argmax
timed apart. Each round probes the bandwidth before and after its steps (the better is the
reference) and prints the step's median against the roofline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import Any

import pyrustml
from pyrustml import kernels
from pyrustml.engine._ffi import ffi
from pyrustml.engine.plan import Plan
from pyrustml.models.base import PREFILL_CHUNK


class MarkedPlan(Plan):
    """The model's plan with a mark after every op; `ops` names them, in order."""

    ops: list[tuple[str, tuple[int, ...]]]

    def __init__(self) -> None:
        super().__init__(PREFILL_CHUNK)
        self.ops = []

    def _add(self, name: str, ptrs: list[Any], y: Any, ints: list[int], floats: list[float]) -> None:
        super()._add(name, ptrs, y, ints, floats)
        if name != "mark":
            self.ops.append((name, tuple(ints[:2])))
            super()._add("mark", [], ffi.NULL, [self.n_marks], [])
            self.n_marks += 1

    def _mark(self, what: str) -> None:  # the model's component marks: only their order is checked
        self._marks_seen.append(what)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--quant", choices=["q8_0", "q4_0", "q4_0-pure", "f32"], default="q8_0")
    args = ap.parse_args()
    m = pyrustml.load(args.model, quant=args.quant, threads=args.threads)
    with m.exclusive() as net:
        plan = MarkedPlan()
        net.forward(plan)
        plan.finish(net.n_layers)
        rounds(args, net, plan)


def rounds(args: argparse.Namespace, net: Any, plan: MarkedPlan) -> None:
    weights = {(x.n, x.k): x.nbytes for attn, ffn in net.layer_weights() for x in attn + ffn}
    ids = [100 + i for i in range(args.prompt)]
    positions = range(args.prompt, min(2 * args.prompt, net.max_positions))
    n = len(positions)
    kv = statistics.fmean(net.decode_bytes(p).kv_cache for p in positions)
    step_bytes = statistics.fmean(net.decode_bytes(p).total for p in positions)
    tok, slot, pos_ptr = (ffi.new("int64_t[]", 1) for _ in range(3))
    for _ in range(args.rounds):
        net.forward_chunk(ids, 0)
        before = kernels.probe_read_bandwidth(1 << 28, 5)
        per_op: dict[str, float] = defaultdict(float)
        steps, lm = [], 0
        token = ids[-1]
        for pos in positions:
            tok[0], pos_ptr[0] = token, pos
            t0 = time.perf_counter_ns()
            marks = plan.run(1, tok, slot, pos_ptr, True)
            t1 = time.perf_counter_ns()
            token = net.argmax_row(0)
            t2 = time.perf_counter_ns()
            prev = t0
            for (name, shape), t in zip(plan.ops, marks, strict=True):
                per_op[f"gemv{shape}" if name.startswith("gemv") else name] += t - prev
                prev = t
            lm += t2 - t1
            steps.append(t2 - t0)
        probe = max(before, kernels.probe_read_bandwidth(1 << 28, 5))
        step = statistics.median(steps)
        roof = step_bytes / probe
        print(
            f"probe {probe:.1f} GB/s: step median {step / 1e3:.0f} us, roofline {roof / 1e3:.0f} us "
            f"({100 * roof / step:.1f}%); lm_head {lm / n / 1e3:.0f} us "
            f"({net.lm_head.nbytes / (lm / n):.1f} GB/s)"
        )
        for name, total in sorted(per_op.items(), key=lambda kv: -kv[1]):
            t = total / n
            b = 0.0
            if name.startswith("gemv"):
                shape = tuple(int(v) for v in name[5:-1].split(","))
                b = weights.get((shape[0], shape[1]), 0) * net.n_layers
            elif name == "attention":
                b = kv
            rate = f"  {b / t:5.1f} GB/s, {b / probe / 1e3:6.0f} us at the probe" if b else ""
            print(f"  {name:24s} {t / 1e3:8.0f} us{rate}")


if __name__ == "__main__":
    main()
