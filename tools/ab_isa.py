"""Paired A/B of two kernel paths on the batched GEMM: the paths take turns, call by call, in one
process, so each sees the same host (a shared machine's speed moves within seconds; runs one
after the other compare the host, not the code).

    python tools/ab_isa.py                          # amx vs avx512vnni, 64 tokens, 1 and 2 threads
    python tools/ab_isa.py --isas amx,avx512vnni --tokens 64,128 --threads 1 --rounds 20
    python tools/ab_isa.py --model /tmp/gemma3-random --quant q8_0,q4_0 --tokens 128 --threads 2

Shapes are Gemma 3 1B's (N x K): fused QKV 1536 x 1152, gate+up 13824 x 1152, down 1152 x 6912,
in Q8_0 and Q4_0 (packed), one copy each (they stay in this host's L3; the prefill of a model
streams them from DRAM once per call). Each round times one q8_gemm / q8_q4_gemm call per path
(order alternating between rounds, one untimed call first); the table gives each path's GMAC/s at
its fastest call and the median over rounds of the per-round time ratio (first path's speed
over the second's). The outputs of the paths are compared bit for bit on every call.

With --model, the same for a whole prefill instead: one forward pass of a --tokens prompt
(ordinary token ids) from position 0 per path and round, the model loaded once per quant mode;
tok/s at each path's fastest pass. (pyrustml-bench's prefill figure is a prompt it has just
prefilled once, which the prefix cache mostly serves.)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence

import numpy as np

import pyrustml
from pyrustml import RuntimeConfig
from pyrustml import kernels as K
from pyrustml.engine._ffi import ffi, lib
from pyrustml.perf.bench import cpu_model, parse_threads

SHAPES = (("qkv", 1536, 1152), ("gate+up", 13824, 1152), ("down", 1152, 6912))


def run(
    isas: Sequence[str], quant: str, n: int, k: int, t: int, rounds: int, rng: np.random.Generator
) -> str:
    w = rng.standard_normal((n, k), dtype=np.float32)
    m = K.quantize_q8_0(w) if quant == "q8_0" else K.quantize_q4_0(w)
    fn = lib.q8_gemm if quant == "q8_0" else lib.q8_q4_gemm
    x = rng.standard_normal((t, k), dtype=np.float32)
    ys = {isa: np.empty((t, n), np.float32) for isa in isas}
    xp = ffi.from_buffer("float[]", x)
    times: dict[str, list[float]] = {isa: [] for isa in isas}
    for r in range(rounds + 1):
        for isa in isas if r % 2 == 0 else reversed(isas):
            K.set_isa(isa)
            yp = ffi.from_buffer("float[]", ys[isa])
            t0 = time.perf_counter()
            rc = fn(m.ptr(), n, k, xp, t, ffi.NULL, yp)
            dt = time.perf_counter() - t0
            if rc != 0:
                raise SystemExit(f"{quant} gemm on {isa} returned {rc}")
            if r:  # round 0 warms each path up
                times[isa].append(dt)
        if r and not all(np.array_equal(ys[isas[0]].view(np.uint32), ys[i].view(np.uint32)) for i in isas):
            raise SystemExit(f"{quant} {n}x{k} t={t}: the paths' outputs differ")
    a, b = isas
    ratio = statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))
    gmacs = {isa: t * n * k / min(v) / 1e9 for isa, v in times.items()}
    return f"{gmacs[a]:.0f} | {gmacs[b]:.0f} | {ratio:.2f}x"


def run_prefill(isas: Sequence[str], model: str, quant: str, t: int, threads: int | None, rounds: int) -> str:
    net = pyrustml.load(model, quant=quant, threads=threads).net
    ids = [100 + (i * 7919) % 20000 for i in range(t)]
    times: dict[str, list[float]] = {isa: [] for isa in isas}
    for r in range(rounds + 1):
        for isa in isas if r % 2 == 0 else reversed(isas):
            K.set_isa(isa)
            t0 = time.perf_counter()
            net.forward_chunk(ids, 0)
            if r:
                times[isa].append(time.perf_counter() - t0)
    del net
    gc.collect()  # the next quant mode's model must not share the machine with this one
    a, b = isas
    ratio = statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))
    return f"{t / min(times[a]):.0f} | {t / min(times[b]):.0f} | {ratio:.2f}x"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--isas", default="amx,avx512vnni", help="two paths, compared first over second")
    ap.add_argument("--tokens", default="64", help="comma-separated token counts (default 64)")
    ap.add_argument("--threads", type=parse_threads, default=parse_threads("1,default"))
    ap.add_argument("--quant", default="q8_0,q4_0")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="checkpoint directory: time its prefill instead")
    args = ap.parse_args(argv)
    isas = [s.strip() for s in args.isas.split(",")]
    if len(isas) != 2 or any(i not in K.isa_supported() for i in isas):
        ap.error(f"--isas takes two of {','.join(K.isa_supported())}")
    rng = np.random.default_rng(args.seed)
    print(f"CPU: {cpu_model()}; paths {isas[0]} vs {isas[1]}; {args.rounds} rounds\n")
    if args.model is not None:
        print(f"| model | quant | prompt tokens | threads | {isas[0]} tok/s | {isas[1]} tok/s | ratio |")
        print("|---|---|---|---|---|---|---|")
        for threads in args.threads:
            for quant in args.quant.split(","):
                for t in (int(v) for v in args.tokens.split(",")):
                    cells = run_prefill(isas, args.model, quant, t, threads, args.rounds)
                    print(f"| {args.model} | {quant} | {t} | {threads or 'default'} | {cells} |", flush=True)
        return
    print(f"| shape | N x K | quant | t | threads | {isas[0]} GMAC/s | {isas[1]} GMAC/s | ratio (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        cfg = RuntimeConfig(threads=threads)
        cfg.warmup_thread_pool()
        for name, n, k in SHAPES:
            for quant in args.quant.split(","):
                for t in (int(v) for v in args.tokens.split(",")):
                    cells = run(isas, quant, n, k, t, args.rounds, rng)
                    print(f"| {name} | {n} x {k} | {quant} | {t} | {cfg.threads} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
