"""Benchmark libq8's Q8_0 (or, with --quant q4_0, Q4_0) kernels on the real GPT-2 and Gemma 3 1B
weight shapes.

Run from the repository root:

    python tools/bench_kernels.py                     # full run, markdown table on stdout
    python tools/bench_kernels.py --quick --json out.json
    python tools/bench_kernels.py --threads 1,2 --shapes gemma
    python tools/bench_kernels.py --quant q4_0 --isa avx512vnni   # Q4_0 rows, a forced kernel path
    python tools/bench_kernels.py --only-gemm-ts --isa amx         # the AMX rows (run --isa avx512vnni too)

Every shape is y = W x with W of N rows (outputs) and K columns (inputs), stored as Q8_0:
N * K/32 blocks of 34 bytes. The issue text lists some shapes as K x N (768x2304, 768x3072,
1152x1536, 1152x13824) and some as N x K (3072x768, 50257x768, 6912x1152, 262144x1152); the
table below uses N x K throughout, so e.g. GPT-2's MLP projection 3072x768 (in x out) is
N x K = 768 x 3072.

For each thread count (1 and the default, one thread per physical core) the run:
  1. measures read bandwidth with libq8's probe (best of its passes, all pool threads), before
     and after the shapes; the better of the two is the reference for "% of probe";
  2. times one GEMV per call through the raw cffi entry point (pointers taken once), rotating
     over enough distinct copies of the matrix that they exceed about 3x the L3 cache, so the
     weights come from DRAM as they do in a real decode step; median and min per call;
  3. times the fused vocabulary argmax for the two lm_head shapes the same way;
  4. times one q8_gemm over T = 64 tokens against 64 separate GEMV calls (the same 64 rows of
     activations, the same copy rotation): the ratio is the per-token prefill speedup;
  5. (--gemm-ts) times q8_gemm over t tokens for small t (speculative verify passes, short
     prompts) as a ratio to one GEMV measured in the same round, and for prefill-sized t as
     GMAC/s and as a fraction of the VNNI peak: one zmm vpdpbusd (64 int8 MACs) per cycle on
     Zen 4's two 256-bit pipes, i.e. 64 MAC/cycle/core, at --clock-ghz (default 3.5: what a
     dependent-add chain measures on the dev box; the VM reports only the nominal 2.6). The
     packed kernels add per 8 vpdpbusd a convert, a scale product and an FMA on the same
     pipes, so ~80% of this peak is their ceiling.
The Python wrapper's own cost per call is measured once, on one small matrix kept in cache.

Progress goes to stderr; stdout carries only the markdown report.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

if importlib.util.find_spec("pyrustml") is None:  # run from a checkout: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyrustml
from pyrustml import RuntimeConfig
from pyrustml import kernels as K
from pyrustml.engine._ffi import ffi, lib, library_path
from pyrustml.errors import LibraryError
from pyrustml.perf.bench import cpu_model, parse_threads  # one home for machine facts and --threads

T_PREFILL = 64  # tokens of the prefill GEMM
SMALL_TS = (1, 2, 3, 4, 5, 8, 9, 16)  # GEMM(t) / GEMV ratios
BIG_TS = (64, 128, 256)  # prefill GEMM throughput
MAC_PER_CYCLE = 64.0  # per core, see the docstring
LOW_PCT = 85.0  # rows with at least BIG_WEIGHTS weights below this % of the probe are flagged
BIG_WEIGHTS = 1 << 20
SPEEDUP_TARGET = 8.0
DEFAULT_L3 = 32 << 20


# ---- shapes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    model: str  # "gpt2" or "gemma"
    name: str
    n: int  # output rows of W
    k: int  # input columns of W
    lmhead: bool = False
    quant: str = "q8_0"  # or "q4_0"

    @property
    def label(self) -> str:
        return f"{self.model} {self.name}"

    @property
    def weights(self) -> int:
        return self.n * self.k

    @property
    def nbytes(self) -> int:
        return self.n * (self.k // K.QK8_0) * FORMATS[self.quant].block_bytes


@dataclass(frozen=True)
class Format:
    """The libq8 entry points and block size of one weight format."""

    block_bytes: int
    gemv: Any
    gemm: Any
    argmax: Any


FORMATS: dict[str, Format] = {
    "q8_0": Format(K.BLOCK_BYTES, lib.q8_gemv, lib.q8_gemm, lib.q8_lmhead_argmax),
    "q4_0": Format(K.Q4_BLOCK_BYTES, lib.q8_q4_gemv, lib.q8_q4_gemm, lib.q8_q4_lmhead_argmax),
}


SHAPES: tuple[Shape, ...] = (
    Shape("gpt2", "qkv (c_attn)", 2304, 768),
    Shape("gpt2", "attn proj", 768, 768),
    Shape("gpt2", "fc", 3072, 768),
    Shape("gpt2", "fc proj", 768, 3072),
    Shape("gpt2", "lm_head", 50257, 768, lmhead=True),
    # Gemma 3 1B: 4 query heads x 256 + (1 K + 1 V head) x 256 = 1536 fused QKV rows.
    Shape("gemma", "qkv (fused)", 1536, 1152),
    Shape("gemma", "o_proj", 1152, 1024),
    Shape("gemma", "gate+up (fused)", 13824, 1152),
    Shape("gemma", "down", 1152, 6912),
    Shape("gemma", "lm_head", 262144, 1152, lmhead=True),
)


# ---- machine facts -------------------------------------------------------------------------


def l3_bytes() -> int:
    """Size of the largest cache level seen by CPU 0, or 32 MiB when sysfs does not say."""
    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (d / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        mult = units.get(text[-1:].upper(), 1)
        digits = text[:-1] if text[-1:].upper() in units else text
        if digits.isdigit():
            best = max(best, int(digits) * mult)
    return best or DEFAULT_L3


def library_identity() -> dict[str, str]:
    """Which libq8 build was measured: the .so's hash and mtime, and the checkout's commit with
    a note when libq8's sources differ from it (kernels change under a benchmark in progress)."""
    out = {"path": library_path, "sha256": "?", "mtime": "?", "git": "?"}
    try:
        data = Path(library_path).read_bytes()
        out["sha256"] = hashlib.sha256(data).hexdigest()[:12]
        out["mtime"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(Path(library_path).stat().st_mtime))
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "libq8"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        out["git"] = head + (" + uncommitted libq8 changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def thp_setting() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return "unknown"


class CpuLoad:
    """CPU time used by other processes while we ran, from /proc/stat and /proc/self/stat:
    a benchmark that shares its cores with a build or a test run measures that instead."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0, self.steal0 = self._system()
        self.self0 = self._own()

    @staticmethod
    def _system() -> tuple[int, int]:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return 0, 0
        v = [int(f) for f in fields] + [0] * 10
        user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
        return user + nice + system + irq + softirq, steal

    @staticmethod
    def _own() -> int:
        try:
            text = Path("/proc/self/stat").read_text()
        except OSError:
            return 0
        rest = text.rsplit(")", 1)[1].split()  # fields after "(comm)"; utime, stime are 14, 15
        return int(rest[11]) + int(rest[12])

    def report(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        busy, steal = self._system()
        own = self._own()
        tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        capacity = wall * tick * (os.cpu_count() or 1)
        foreign = max(0, (busy - self.busy0) - (own - self.self0))
        return {
            "wall_s": round(wall, 2),
            "other_processes_pct": round(100.0 * foreign / capacity, 1),
            "steal_pct": round(100.0 * (steal - self.steal0) / capacity, 1),
        }


# ---- weights -------------------------------------------------------------------------------


@dataclass
class Weights:
    shape: Shape
    copies: list[K.Q8Matrix]  # distinct allocations with distinct bytes
    ptrs: list[Any]  # packed q8x16 * of each copy, taken once


def quantized_random(n: int, k: int, rng: np.random.Generator, quant: str = "q8_0") -> np.ndarray:
    """GGML Q8_0 (Q4_0) bytes of random N(0, 1) float32 weights quantized with quantize_q8_0
    (quantize_q4_0), a slab of rows at a time so the float32 source stays about 64 MiB."""
    q4 = quant == "q4_0"
    blocks = np.empty((n, k // 32 * FORMATS[quant].block_bytes), dtype=np.uint8)
    step = max(1, (64 << 20) // (4 * k))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        w = rng.standard_normal((r1 - r0, k), dtype=np.float32)
        blocks[r0:r1] = (K.quantize_q4_0(w) if q4 else K.quantize_q8_0(w)).blocks
    return blocks


def build_weights(shape: Shape, rng: np.random.Generator, rotate_bytes: int, max_copies: int) -> Weights:
    """ceil(rotate_bytes / matrix bytes) copies (at most max_copies). Each further copy holds the
    first one's rows in another random order: same statistics, different bytes, so neither the
    caches nor a hypervisor's page merging can make two copies one."""
    first = quantized_random(shape.n, shape.k, rng, shape.quant)
    count = max(1, min(max_copies, math.ceil(rotate_bytes / shape.nbytes)))
    pack = K.Q4Matrix.from_blocks if shape.quant == "q4_0" else K.Q8Matrix.from_blocks
    copies: list[Any] = [pack(first, shape.k)]
    for _ in range(count - 1):
        copies.append(pack(np.ascontiguousarray(first[rng.permutation(shape.n)]), shape.k))
    return Weights(shape, copies, [c.ptr() for c in copies])


# ---- timing --------------------------------------------------------------------------------


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise LibraryError(f"{what} returned {rc}")


def time_calls(fn: Callable[..., int], args: Sequence[tuple[Any, ...]], reps: int) -> list[float]:
    """Seconds of each of `reps` calls fn(*args[i % len(args)]), timed one by one."""
    clock = time.perf_counter_ns
    ns = [0] * reps
    count = len(args)
    bad = 0
    for i in range(reps):
        a = args[i % count]
        t0 = clock()
        rc = fn(*a)
        t1 = clock()
        ns[i] = t1 - t0
        bad |= rc
    _check(bad, getattr(fn, "__name__", "kernel"))
    return [t * 1e-9 for t in ns]


def time_batches(
    fn: Callable[..., int], batches: Sequence[Sequence[tuple[Any, ...]]], reps: int
) -> list[float]:
    """Seconds of each of `reps` samples; sample i makes every call of batches[i % len]."""
    clock = time.perf_counter_ns
    ns = [0] * reps
    bad = 0
    for i in range(reps):
        batch = batches[i % len(batches)]
        t0 = clock()
        for a in batch:
            bad |= fn(*a)
        ns[i] = clock() - t0
    _check(bad, getattr(fn, "__name__", "kernel"))
    return [t * 1e-9 for t in ns]


@dataclass(frozen=True)
class Plan:
    target_s: float  # wall time aimed at per measurement
    fixed_reps: int | None  # --reps: exactly this many samples instead
    min_reps: int
    max_reps: int

    def reps(self, per_sample_s: float) -> int:
        if self.fixed_reps is not None:
            return self.fixed_reps
        want = math.ceil(self.target_s / max(per_sample_s, 1e-9))
        return max(self.min_reps, min(self.max_reps, want))


def measure(fn: Callable[..., int], args: Sequence[tuple[Any, ...]], plan: Plan, warm: int) -> list[float]:
    """Warm up (at least one pass over every copy), size the run from the warm calls, time it."""
    warm_times = time_calls(fn, args, max(warm, len(args)))
    return time_calls(fn, args, plan.reps(statistics.median(warm_times)))


def measure_batches(
    fn: Callable[..., int], batches: Sequence[Sequence[tuple[Any, ...]]], plan: Plan
) -> list[float]:
    warm_times = time_batches(fn, batches, 1)
    return time_batches(fn, batches, plan.reps(warm_times[0]))


# ---- results -------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    shape: str
    op: str  # "gemv" or "lmhead_argmax"
    n: int
    k: int
    weights: int
    mib: float
    threads: int
    copies: int
    reps: int
    median_us: float
    min_us: float
    bytes_per_call: int
    gbs: float
    pct_probe: float
    low: bool  # >= BIG_WEIGHTS weights and below LOW_PCT % of the probe
    gemm64_median_us: float | None = None
    gemv64_median_us: float | None = None  # 64 separate GEMV calls, one sample
    gemm64_speedup: float | None = None
    gemm64_gmacs: float | None = None
    gemm64_reps: int | None = None


@dataclass
class Probe:
    threads: int
    gbs_before: float
    gbs_after: float

    @property
    def gbs(self) -> float:
        return max(self.gbs_before, self.gbs_after)


def _us(s: float) -> float:
    return round(s * 1e6, 2)


def bench_gemv(w: Weights, plan: Plan, probe_gbs: float, threads: int, rng: np.random.Generator) -> Row:
    s = w.shape
    x = rng.standard_normal(s.k, dtype=np.float32)
    y = np.empty(s.n, dtype=np.float32)
    xp, yp = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y)
    args = [(p, s.n, s.k, xp, ffi.NULL, yp) for p in w.ptrs]
    times = measure(FORMATS[s.quant].gemv, args, plan, warm=3)
    return _row(s, "gemv", times, w, probe_gbs, threads)


def bench_argmax(w: Weights, plan: Plan, probe_gbs: float, threads: int, rng: np.random.Generator) -> Row:
    s = w.shape
    x = rng.standard_normal(s.k, dtype=np.float32)
    xp = ffi.from_buffer("float[]", x)
    index, value = ffi.new("int64_t *"), ffi.new("float *")
    args = [(p, s.n, s.k, xp, index, value) for p in w.ptrs]
    times = measure(FORMATS[s.quant].argmax, args, plan, warm=3)
    return _row(s, "lmhead_argmax", times, w, probe_gbs, threads)


def _row(s: Shape, op: str, times: list[float], w: Weights, probe_gbs: float, threads: int) -> Row:
    med = statistics.median(times)
    gbs = s.nbytes / med / 1e9
    pct = 100.0 * gbs / probe_gbs
    return Row(
        model=s.model,
        shape=s.name,
        op=op,
        n=s.n,
        k=s.k,
        weights=s.weights,
        mib=round(s.nbytes / (1 << 20), 2),
        threads=threads,
        copies=len(w.copies),
        reps=len(times),
        median_us=_us(med),
        min_us=_us(min(times)),
        bytes_per_call=s.nbytes,
        gbs=round(gbs, 2),
        pct_probe=round(pct, 1),
        low=s.weights >= BIG_WEIGHTS and pct < LOW_PCT,
    )


def bench_prefill(w: Weights, plan: Plan, row: Row, rng: np.random.Generator) -> None:
    """q8_gemm over T_PREFILL tokens against T_PREFILL q8_gemv calls on the same activation
    rows; both rotate over the copies (a prefill meets every layer's weights cold too)."""
    s = w.shape
    x = rng.standard_normal((T_PREFILL, s.k), dtype=np.float32)
    y = np.empty((T_PREFILL, s.n), dtype=np.float32)
    xp, yp = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y)
    gemm_args = [(p, s.n, s.k, xp, T_PREFILL, ffi.NULL, yp) for p in w.ptrs]
    gemm = measure(FORMATS[s.quant].gemm, gemm_args, plan, warm=1)

    rows_x = [ffi.from_buffer("float[]", x[t]) for t in range(T_PREFILL)]
    rows_y = [ffi.from_buffer("float[]", y[t]) for t in range(T_PREFILL)]
    count = len(w.ptrs)
    batches = [
        [
            (w.ptrs[(b * T_PREFILL + t) % count], s.n, s.k, rows_x[t], ffi.NULL, rows_y[t])
            for t in range(T_PREFILL)
        ]
        for b in range(max(1, min(count, 16)))
    ]
    gemv64 = measure_batches(FORMATS[s.quant].gemv, batches, plan)

    g, v = statistics.median(gemm), statistics.median(gemv64)
    row.gemm64_median_us = _us(g)
    row.gemv64_median_us = _us(v)
    row.gemm64_speedup = round(v / g, 2)
    row.gemm64_gmacs = round(T_PREFILL * s.weights / g / 1e9, 2)
    row.gemm64_reps = len(gemm)


@dataclass
class GemmRow:
    """q8_gemm(t) for several t on one shape; GEMV and every t timed in the same rounds."""

    model: str
    shape: str
    n: int
    k: int
    threads: int
    gemv_us: float
    gemm_us: dict[int, float]  # median per t
    ratio: dict[int, float]  # GEMM(t) / GEMV, medians over rounds of the per-round ratio
    gmacs: dict[int, float]  # t*N*K / GEMM(t) median
    pct_peak: dict[int, float]


def bench_gemm_ts(
    w: Weights,
    plan: Plan,
    threads: int,
    ts: Sequence[int],
    peak_gmacs: float,
    rng: np.random.Generator,
    rounds: int,
) -> GemmRow:
    """Each round times GEMV then q8_gemm(t) for every t, all rotating over the copies (DRAM);
    a ratio is taken inside each round, so slow phases of a shared machine cancel out. The
    lm_head shapes skip prefill-sized t: a prompt projects only its last row."""
    s = w.shape
    if s.lmhead:
        ts = [t for t in ts if t < 64]
    tmax = max(ts)
    x = rng.standard_normal((tmax, s.k), dtype=np.float32)
    y = np.empty((tmax, s.n), dtype=np.float32)
    xp, yp = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y)
    gemv_args = [(p, s.n, s.k, xp, ffi.NULL, yp) for p in w.ptrs]
    sub = Plan(plan.target_s / rounds, plan.fixed_reps, plan.min_reps, plan.max_reps)
    gv_all: list[float] = []
    by_t: dict[int, list[float]] = {t: [] for t in ts}
    ratios: dict[int, list[float]] = {t: [] for t in ts}
    for _ in range(rounds):
        gv = measure(FORMATS[s.quant].gemv, gemv_args, sub, warm=3)
        gv_all += gv
        for t in ts:
            args = [(p, s.n, s.k, xp, t, ffi.NULL, yp) for p in w.ptrs]
            g = measure(FORMATS[s.quant].gemm, args, sub, warm=1)
            by_t[t] += g
            ratios[t].append(statistics.median(g) / statistics.median(gv))
    med = {t: statistics.median(v) for t, v in by_t.items()}
    gmacs = {t: t * s.weights / med[t] / 1e9 for t in ts}
    return GemmRow(
        model=s.model,
        shape=s.name,
        n=s.n,
        k=s.k,
        threads=threads,
        gemv_us=_us(statistics.median(gv_all)),
        gemm_us={t: _us(v) for t, v in med.items()},
        ratio={t: round(statistics.median(r), 2) for t, r in ratios.items()},
        gmacs={t: round(v, 1) for t, v in gmacs.items()},
        pct_peak={t: round(100.0 * v / peak_gmacs, 1) for t, v in gmacs.items()},
    )


def gemm_table(rows: Sequence[GemmRow], small: Sequence[int], big: Sequence[int]) -> str:
    head = (
        "| shape | N x K | threads | GEMV us | "
        + " | ".join(f"t={t} ratio" for t in small)
        + " | "
        + " | ".join(f"t={t} GMAC/s (% peak)" for t in big)
        + " |"
    )
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in rows:
        cells = [f"{r.ratio[t]:.2f}" if t in r.ratio else "-" for t in small]
        cells += [f"{r.gmacs[t]:.1f} ({r.pct_peak[t]:.0f}%)" if t in r.gmacs else "-" for t in big]
        lines.append(
            f"| {r.model} {r.shape} | {r.n} x {r.k} | {r.threads} | {r.gemv_us:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def wrapper_overhead(plan: Plan, rng: np.random.Generator) -> dict[str, float]:
    """pyrustml.kernels.gemv_q8_0 against the raw call on one 768 x 768 matrix left in cache:
    alternating rounds of each, medians over all calls of each kind."""
    n = k = 768
    q = K.Q8Matrix.from_blocks(quantized_random(n, k, rng), k)
    x = rng.standard_normal(k, dtype=np.float32)
    y = np.empty(n, dtype=np.float32)
    raw_args = [(q.ptr(), n, k, ffi.from_buffer("float[]", x), ffi.NULL, ffi.from_buffer("float[]", y))]
    per_round = 200 if plan.fixed_reps is None else max(1, plan.fixed_reps // 10)
    rounds = 10 if plan.target_s >= 0.2 else 3

    def wrapped(qm: K.Q8Matrix, xv: np.ndarray) -> int:
        K.gemv_q8_0(qm, xv)
        return 0

    time_calls(lib.q8_gemv, raw_args, per_round)
    time_calls(wrapped, [(q, x)], per_round)
    raw: list[float] = []
    wrap: list[float] = []
    for _ in range(rounds):
        raw += time_calls(lib.q8_gemv, raw_args, per_round)
        wrap += time_calls(wrapped, [(q, x)], per_round)
    r, wr = statistics.median(raw), statistics.median(wrap)
    return {
        "n": n,
        "k": k,
        "threads": lib.q8_pool_threads(),
        "calls_each": len(raw),
        "raw_median_us": _us(r),
        "wrapper_median_us": _us(wr),
        "overhead_us": _us(wr - r),
    }


# ---- report --------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(rows: Sequence[Row]) -> str:
    head = (
        "| shape | N x K | MiB | copies | threads | median us | min us | GB/s | % of probe "
        "| GEMM64 us | 64x GEMV us | GEMM64 speedup | GEMM64 GMAC/s |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        name = f"{r.model} {r.shape}" + (" argmax" if r.op == "lmhead_argmax" else "")
        pct = f"{r.pct_probe:.1f}" + (" **<85%**" if r.low else "")
        speed = _fmt(r.gemm64_speedup, ".2f")
        if r.gemm64_speedup is not None and r.gemm64_speedup < SPEEDUP_TARGET:
            speed += " **<8x**"
        lines.append(
            f"| {name} | {r.n} x {r.k} | {r.mib:.2f} | {r.copies} | {r.threads} | {r.median_us:.1f} "
            f"| {r.min_us:.1f} | {r.gbs:.1f} | {pct} | {_fmt(r.gemm64_median_us, '.0f')} "
            f"| {_fmt(r.gemv64_median_us, '.0f')} | {speed} | {_fmt(r.gemm64_gmacs, '.1f')} |"
        )
    return "\n".join(lines)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--threads",
        type=parse_threads,
        default=parse_threads("1,default"),
        help="comma-separated pool sizes; 'default' = one per physical core (default: 1,default)",
    )
    ap.add_argument("--shapes", default="gpt2,gemma", help="models to cover: gpt2, gemma (default: both)")
    ap.add_argument("--quick", action="store_true", help="short run: ~0.05 s per measurement, smaller probe")
    ap.add_argument(
        "--reps",
        type=int,
        default=None,
        help="exactly this many timed samples per measurement instead of a time target",
    )
    ap.add_argument(
        "--target-s",
        type=float,
        default=None,
        help="seconds aimed at per measurement (default 0.4, --quick 0.05)",
    )
    ap.add_argument("--probe-mib", type=int, default=256, help="bandwidth probe buffer (default 256 MiB)")
    ap.add_argument("--probe-reps", type=int, default=None, help="probe passes (default 5, --quick 3)")
    ap.add_argument("--max-copies", type=int, default=256, help="cap on rotated copies per shape")
    ap.add_argument("--no-gemm", action="store_true", help="skip the prefill GEMM comparison")
    ap.add_argument(
        "--gemm-ts",
        default=",".join(map(str, SMALL_TS + BIG_TS)),
        help="token counts for the GEMM(t) table ('' to skip); t < 64 reported as a ratio "
        "to one GEMV, t >= 64 as GMAC/s (default %(default)s)",
    )
    ap.add_argument("--gemm-rounds", type=int, default=3, help="rounds of the GEMM(t) table (default 3)")
    ap.add_argument(
        "--clock-ghz",
        type=float,
        default=3.5,
        help="core clock for the VNNI peak (default 3.5, measured with a dependent-add chain)",
    )
    ap.add_argument(
        "--only-gemm-ts",
        action="store_true",
        help="skip the GEMV/argmax/GEMM64 table: only the GEMM(t) table",
    )
    ap.add_argument("--quant", choices=sorted(FORMATS), default="q8_0", help="weight format (default q8_0)")
    ap.add_argument(
        "--isa", default=None, help="force this kernel path (see isa_supported); default: the best"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    models = {m.strip() for m in args.shapes.split(",") if m.strip()}
    unknown = models - {s.model for s in SHAPES}
    if unknown or not models:
        ap.error(f"--shapes takes gpt2 and/or gemma, got {args.shapes!r}")
    args.models = models
    args.ts = [int(v) for v in args.gemm_ts.split(",") if v.strip()]
    if any(t < 1 for t in args.ts):
        ap.error("--gemm-ts takes positive token counts")
    if args.reps is not None and args.reps < 1:
        ap.error("--reps must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quick: bool = args.quick
    target = args.target_s if args.target_s is not None else (0.05 if quick else 0.4)
    plan = Plan(target_s=target, fixed_reps=args.reps, min_reps=3 if quick else 5, max_reps=200_000)
    gemm_plan = Plan(target_s=target, fixed_reps=args.reps, min_reps=1 if quick else 3, max_reps=10_000)
    probe_bytes = args.probe_mib << 20
    probe_reps = args.probe_reps if args.probe_reps is not None else (3 if quick else 5)
    l3 = l3_bytes()
    rotate_bytes = 3 * l3
    shapes = [replace(s, quant=args.quant) for s in SHAPES if s.model in args.models]
    if args.isa is not None:
        K.set_isa(args.isa)
    rng = np.random.default_rng(args.seed)
    libid = library_identity()  # before the run: the file is what this process mapped
    load = CpuLoad()
    loadavg = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)

    _log(f"quantizing {len(shapes)} shapes (copies to exceed {rotate_bytes >> 20} MiB each) ...")
    weights: list[Weights] = []
    for s in shapes:
        weights.append(build_weights(s, rng, rotate_bytes, args.max_copies))
        _log(f"  {s.label}: {s.n} x {s.k}, {s.nbytes / (1 << 20):.2f} MiB x {len(weights[-1].copies)} copies")

    rows: list[Row] = []
    gemm_rows: list[GemmRow] = []
    probes: list[Probe] = []
    wrapper: dict[str, float] | None = None
    seen: set[int] = set()
    for requested in args.threads:
        cfg = RuntimeConfig(threads=requested)
        if cfg.threads in seen:
            continue
        seen.add(cfg.threads)
        cfg.warmup_thread_pool()
        before = K.probe_read_bandwidth(probe_bytes, probe_reps)
        _log(f"threads={cfg.threads}: probe {before:.1f} GB/s")
        if wrapper is None and not args.only_gemm_ts:
            wrapper = wrapper_overhead(plan, rng)
        section: list[Row] = []
        peak = MAC_PER_CYCLE * args.clock_ghz * cfg.threads
        for w in weights if args.ts else []:
            g = bench_gemm_ts(w, plan, cfg.threads, args.ts, peak, rng, args.gemm_rounds)
            gemm_rows.append(g)
            _log(f"  {w.shape.label}: GEMM(t)/GEMV " + " ".join(f"{t}:{v:.2f}" for t, v in g.ratio.items()))
        for w in weights if not args.only_gemm_ts else []:
            row = bench_gemv(w, plan, before, cfg.threads, rng)
            if not args.no_gemm:
                bench_prefill(w, gemm_plan, row, rng)
            section.append(row)
            _log(
                f"  {w.shape.label}: gemv {row.median_us:.1f} us, {row.gbs:.1f} GB/s"
                + ("" if row.gemm64_speedup is None else f", GEMM64 speedup {row.gemm64_speedup:.2f}x")
            )
            if w.shape.lmhead:
                section.append(bench_argmax(w, plan, before, cfg.threads, rng))
        after = K.probe_read_bandwidth(probe_bytes, probe_reps)
        probe = Probe(cfg.threads, round(before, 2), round(after, 2))
        probes.append(probe)
        for r in section:  # % of the better probe of this thread count
            gbs = r.bytes_per_call / (r.median_us * 1e-6) / 1e9
            r.pct_probe = round(100.0 * gbs / probe.gbs, 1)
            r.low = r.weights >= BIG_WEIGHTS and r.pct_probe < LOW_PCT
        rows += section
    cpu = load.report()

    q4 = args.quant == "q4_0"
    gemv_name, gemm_name = ("q8_q4_gemv", "q8_q4_gemm") if q4 else ("q8_gemv", "q8_gemm")
    block = FORMATS[args.quant].block_bytes
    header = [
        f"# libq8 kernel benchmark ({args.quant.upper()} weights)",
        "",
        f"- CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, "
        f"{RuntimeConfig.physical_cores()} physical cores)",
        f"- kernel path: {K.isa_active()} (supported: {','.join(K.isa_supported())})",
        f"- library: {libid['path']} (sha256 {libid['sha256']}, built {libid['mtime']}; checkout "
        f"{libid['git']}); pyrustml {pyrustml.__version__}; Python {platform.python_version()}; "
        f"numpy {np.__version__}",
        f"- L3: {l3 >> 20} MiB; each shape rotates over distinct copies totalling "
        f">= {rotate_bytes >> 20} MiB (at most {args.max_copies} copies), so weights stream from DRAM; "
        f"THP: {thp_setting()}",
        "- read-bandwidth probe (GB/s, best pass of all pool threads, before / after the shapes): "
        + "; ".join(f"{p.threads} thread(s): {p.gbs_before:.1f} / {p.gbs_after:.1f}" for p in probes),
        f"- GEMV: raw cffi {gemv_name}, one timed call per sample, "
        + (f"{args.reps} samples" if args.reps is not None else f"target {target} s")
        + f" per shape; GB/s = N*K/32*{block} bytes / median; % of probe against the better probe of that "
        "thread count (a soft ceiling: a kernel can beat the probe's SSE loop by a few %)",
        f"- GEMM64: one {gemm_name} over {T_PREFILL} tokens vs {T_PREFILL} separate {gemv_name} calls "
        "(same rows, "
        f"same rotation); speedup = per-token throughput ratio (target >= {SPEEDUP_TARGET:.0f}x); "
        f"GMAC/s = {T_PREFILL}*N*K / GEMM median",
        f"- flags: **<85%** = at least {BIG_WEIGHTS} weights and below {LOW_PCT:.0f}% of the probe; "
        f"**<8x** = GEMM64 speedup below target",
        f"- load average at start {loadavg[0]:.2f}; CPU used by other processes during the run "
        f"{cpu['other_processes_pct']:.1f}%, steal {cpu['steal_pct']:.1f}% (wall {cpu['wall_s']:.0f} s)",
    ]
    if wrapper is not None:
        header.append(
            f"- wrapper overhead (gemv_q8_0 vs raw call, {wrapper['n']} x {wrapper['k']} in cache, "
            f"{wrapper['threads']:.0f} thread(s)): {wrapper['wrapper_median_us']:.2f} vs "
            f"{wrapper['raw_median_us']:.2f} us, +{wrapper['overhead_us']:.2f} us per call"
        )
    if library_identity()["sha256"] != libid["sha256"]:
        header.append("- WARNING: libq8.so was rebuilt on disk during the run; results may mix builds")
    if cpu["other_processes_pct"] > 5.0 or cpu["steal_pct"] > 5.0:
        header.append("- WARNING: other work shared these CPUs during the run; the timings are suspect")
    small = [t for t in args.ts if t < 64]
    big = [t for t in args.ts if t >= 64]
    if gemm_rows:
        header.append(
            f"- GEMM(t): ratio = {gemm_name} over t tokens / one {gemv_name} (same rounds, median of "
            f"{args.gemm_rounds} rounds); GMAC/s = t*N*K / median; peak = {MAC_PER_CYCLE:.0f} "
            f"MAC/cycle/core x {args.clock_ghz} GHz x threads"
        )
    out = "\n".join(header)
    if rows:
        out += "\n\n" + markdown_table(rows)
    if gemm_rows:
        out += "\n\n" + gemm_table(gemm_rows, small, big)
    print(out)

    if args.json is not None:
        doc = {
            "meta": {
                "cpu_model": cpu_model(),
                "logical_cpus": os.cpu_count(),
                "physical_cores": RuntimeConfig.physical_cores(),
                "quant": args.quant,
                "isa_active": K.isa_active(),
                "isa_supported": K.isa_supported(),
                "library": libid,
                "pyrustml": pyrustml.__version__,
                "python": platform.python_version(),
                "numpy": np.__version__,
                "l3_bytes": l3,
                "rotate_bytes": rotate_bytes,
                "max_copies": args.max_copies,
                "thp": thp_setting(),
                "target_s": target,
                "fixed_reps": args.reps,
                "quick": quick,
                "t_prefill": T_PREFILL,
                "probe_bytes": probe_bytes,
                "probe_reps": probe_reps,
                "seed": args.seed,
                "loadavg_start": list(loadavg),
                "cpu_load": cpu,
                "low_pct": LOW_PCT,
                "big_weights": BIG_WEIGHTS,
                "speedup_target": SPEEDUP_TARGET,
            },
            "probes": [{**asdict(p), "gbs": p.gbs} for p in probes],
            "wrapper_overhead": wrapper,
            "rows": [asdict(r) for r in rows],
            "gemm_ts": [asdict(r) for r in gemm_rows],
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        _log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
