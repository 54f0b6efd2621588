"""Bounded soak tests: long generations, many short calls, repeated load/free.

Each case runs in a short version by default and a long one behind the `soak` marker
(`pytest -m soak`). Memory is read from /proc/self/statm (resident pages), threads from
/proc/self/task, descriptors from /proc/self/fd and mappings from /proc/self/maps."""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from support import FIX

import pyrustml

PAGE = os.sysconf("SC_PAGE_SIZE")
KIB = 1024
MIB = 1024 * 1024

SHORT = pytest.param("short", id="short")
LONG = pytest.param("long", id="long", marks=pytest.mark.soak)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def n_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the descriptor listdir itself used, closed by now
    return out


def maps_naming(paths: list[Path]) -> list[str]:
    names = [str(p.resolve()) for p in paths]
    with open("/proc/self/maps") as f:
        return [line.strip() for line in f if any(n in line for n in names)]


@pytest.fixture(scope="module")
def gemma_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gemma3-tiny with room for 4096 generated tokens: RoPE has no position table, so only
    config.json changes (its 128 positions would stop a generation early)."""
    d = tmp_path_factory.mktemp("soak") / "gemma3-tiny-long"
    shutil.copytree(FIX / "gemma3-tiny", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = 8192
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture(scope="module")
def gpt2_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gpt2-tiny-hf with 32768 learned positions (its 64 rows, then seeded small random ones):
    room for 1000 tokens, and an 8 MiB float32 position table that makes each loaded copy big
    enough for a leaked model to show in the load/free RSS bound."""
    d = tmp_path_factory.mktemp("soak") / "gpt2-tiny-long"
    shutil.copytree(FIX / "gpt2-tiny-hf", d)
    tensors = load_file(str(d / "model.safetensors"))
    wpe = tensors["transformer.wpe.weight"]
    extra = np.random.default_rng(7).normal(0.0, 0.02, (32768 - wpe.shape[0], wpe.shape[1]))
    tensors["transformer.wpe.weight"] = np.concatenate([wpe, extra.astype(np.float32)])
    save_file(tensors, str(d / "model.safetensors"))
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_positions"] = 32768
    (d / "config.json").write_text(json.dumps(cfg))
    return d


# ---- many generated tokens ----------------------------------------------------------------------

TOKENS = {("gemma", "short"): 512, ("gemma", "long"): 4096, ("gpt2", "short"): 256, ("gpt2", "long"): 1000}
# Growth allowed over the 4 runs after an identical warm-up run: the live result of the last one
# (token list, step timings) and allocator arenas settling (measured: ~160 KiB spread over the
# first ~16 runs of 4096 Gemma tokens, then flat). Anything kept per token shows 4x: a KV cache
# grown per token instead of preallocated (>= 1 KiB a token on these models; GPT-2 tiny: 2 layers
# x K,V x 64 floats) exceeds the bound on every case, a leak of 36 B a token on the long Gemma run.
GROWTH_FIXED = 512 * KIB
GROWTH_PER_TOKEN = 16


@pytest.mark.parametrize("level", [SHORT, LONG])
@pytest.mark.parametrize("arch", ["gemma", "gpt2"])
def test_many_tokens_rss_and_threads_flat(arch: str, level: str, gemma_long: Path, gpt2_long: Path) -> None:
    n = TOKENS[(arch, level)]
    m = pyrustml.load(str(gemma_long if arch == "gemma" else gpt2_long))
    # The first run maps the preallocated cache pages it touches and grows allocator arenas:
    # it is the warm-up; later identical runs must not grow.
    want = m.generate("Once upon a time", max_tokens=n, temperature=0, ignore_eos=True).tokens
    assert len(want) == n
    threads0, rss0 = n_threads(), rss()
    peak, peak_threads, runs = rss0, threads0, 3
    for _ in range(runs):
        pieces = 0
        for _piece in m.stream("Once upon a time", max_tokens=n, temperature=0, ignore_eos=True):
            pieces += 1
            if pieces % 32 == 0:
                peak, peak_threads = max(peak, rss()), max(peak_threads, n_threads())
        peak = max(peak, rss())
    g = m.generate("Once upon a time", max_tokens=n, temperature=0, ignore_eos=True)
    growth = max(peak, rss()) - rss0
    bound = GROWTH_FIXED + GROWTH_PER_TOKEN * n
    print(
        f"[soak tokens {arch} {level}] {n} tokens x {runs + 1} runs after warm-up: RSS growth "
        f"{growth / KIB:.0f} KiB (bound {bound / KIB:.0f}), threads {threads0} -> max {peak_threads}"
    )
    assert g.tokens == want  # and the long runs stay deterministic
    assert growth <= bound
    assert peak_threads == threads0 and n_threads() == threads0


# ---- many short calls ---------------------------------------------------------------------------

CALLS = {"short": 1000, "long": 10000}
WINDOW = {"short": 200, "long": 1000}
WARMUP_CALLS = 50
RSS_EVERY = 10
MAX_SLOPE = 1024  # bytes of RSS per call
MAX_P99_RATIO = 1.2
RELOOKS = 2  # load-controlled looks when the plain first/last comparison exceeds the ratio
RELOOK_PAUSE_S = 1.0
INTERLEAVE = 20  # calls per turn when this process and the reference take turns
PROMPT = "Hello world"


class Timed:
    """Latencies of calls, each flagged when it may hold someone else's time: the process was
    switched out involuntarily (any of its threads: the pool's workers too) or the garbage
    collector ran. Flagged calls are left out of the percentiles. The arrays are allocated up
    front so that the bookkeeping itself adds nothing to the RSS slope."""

    def __init__(self, capacity: int) -> None:
        self.lat = np.zeros(capacity)
        self.flagged = np.zeros(capacity, dtype=bool)
        self.n = 0
        self._gc_ran = False
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        self._gc_ran = True

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def call(self, m: pyrustml.Model) -> list[int]:
        cs0 = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
        self._gc_ran = False
        t0 = time.perf_counter()
        tokens = m.generate(PROMPT, max_tokens=1, temperature=0).tokens
        self.lat[self.n] = time.perf_counter() - t0
        self.flagged[self.n] = self._gc_ran or resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw != cs0
        self.n += 1
        return tokens


def p99(lat: np.ndarray, flagged: np.ndarray) -> float:
    a = np.asarray(lat, dtype=np.float64)
    ok = a[~np.asarray(flagged, dtype=bool)]
    # If the machine was so busy that most calls were flagged, judge all of them.
    return float(np.percentile(ok if len(ok) >= len(a) // 2 else a, 99))


# A fresh process with a fresh model: the state of the first window, measured now.
REFERENCE = r"""
import gc, json, resource, sys, time
import pyrustml
m = pyrustml.load(sys.argv[1])
for _ in range(int(sys.argv[2])):
    m.generate(sys.argv[3], max_tokens=1, temperature=0)
gc_ran = [False]
gc.callbacks.append(lambda phase, info: gc_ran.__setitem__(0, True))
print("ready", flush=True)
for line in sys.stdin:
    lat, flagged = [], []
    for _ in range(int(line)):
        cs, gc_ran[0] = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw, False
        t0 = time.perf_counter()
        m.generate(sys.argv[3], max_tokens=1, temperature=0)
        lat.append(time.perf_counter() - t0)
        flagged.append(gc_ran[0] or resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw != cs)
    print(json.dumps([lat, flagged]), flush=True)
"""


def child_env() -> dict[str, str]:
    """The environment for a child interpreter that imports the same pyrustml as this one."""
    env = dict(os.environ)
    root = FIX.parent.parent
    if Path(pyrustml.__file__).resolve().parent.parent == root:
        # Testing the source tree: the child runs outside the checkout, so point it there.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
        env["PYRUSTML_ALLOW_SOURCE_TREE"] = "1"
    if env.get("PYRUSTML_LIBQ8"):  # a sanitizer build named relative to this process's directory
        env["PYRUSTML_LIBQ8"] = os.path.abspath(env["PYRUSTML_LIBQ8"])
    return env


def interleaved_look(m: pyrustml.Model, timed: Timed, ref: subprocess.Popen[str], w: int) -> float:
    """p99 of w more calls here over p99 of w calls in the reference process, taking turns of
    INTERLEAVE calls (never at the same time), so both see the same load from elsewhere."""
    assert ref.stdin is not None and ref.stdout is not None
    start = timed.n
    ref_lat: list[float] = []
    ref_flagged: list[bool] = []
    for _ in range(w // INTERLEAVE):
        for _ in range(INTERLEAVE):
            timed.call(m)
        ref.stdin.write(f"{INTERLEAVE}\n")
        ref.stdin.flush()
        lat, flagged = json.loads(ref.stdout.readline())
        ref_lat += lat
        ref_flagged += flagged
    mine = p99(timed.lat[start : timed.n], timed.flagged[start : timed.n])
    return mine / p99(np.array(ref_lat), np.array(ref_flagged))


@pytest.mark.parametrize("level", [SHORT, LONG])
def test_many_single_token_calls(level: str, tmp_path: Path) -> None:
    """RSS slope after warm-up, and (in the soak run) p99 latency of the last window against
    the first.

    The machine is shared: another process that starts mid-run slows the tail by 1.3-2x for
    seconds (seen here), which a plain first/last comparison cannot tell from a slowdown the
    calls caused. So when the plain comparison exceeds the bound, the last window is looked at
    again, after a pause, against a reference: a fresh process with a fresh model (the first
    window's state) taking turns with this one. A slowdown that comes from the calls already
    made, in the model or anywhere in this process, shows in every look; the test fails only
    if every look exceeds the bound."""
    n, w = CALLS[level], WINDOW[level]
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"))
    for _ in range(WARMUP_CALLS):
        want = m.generate(PROMPT, max_tokens=1, temperature=0).tokens
    timed = Timed(n + RELOOKS * w)
    samples = np.zeros((n // RSS_EVERY, 2))
    ref = None
    try:
        for i in range(n):
            assert timed.call(m) == want
            if i % RSS_EVERY == 0:
                samples[i // RSS_EVERY] = (i, rss())
        first = p99(timed.lat[:w], timed.flagged[:w])
        ratios = [p99(timed.lat[n - w : n], timed.flagged[n - w : n]) / first]
        if ratios[0] > MAX_P99_RATIO and level == "long":
            ref = subprocess.Popen(
                [sys.executable, "-c", REFERENCE, str(FIX / "gpt2-tiny-hf"), str(WARMUP_CALLS), PROMPT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=str(tmp_path),
            )  # fmt: skip
            assert ref.stdout is not None and ref.stdout.readline().strip() == "ready"
        while ratios[-1] > MAX_P99_RATIO and len(ratios) <= RELOOKS and level == "long":
            time.sleep(RELOOK_PAUSE_S)
            assert ref is not None
            ratios.append(interleaved_look(m, timed, ref, w))
    finally:
        timed.close()
        if ref is not None:
            ref.kill()
            ref.wait()
    idx, mem = samples.T
    keep = idx >= n // 5  # the regression starts after the first fifth
    slope = float(np.polyfit(idx[keep], mem[keep], 1)[0])
    print(
        f"[soak calls {level}] {n} calls: RSS slope {slope:.1f} B/call "
        f"(total {(mem[-1] - mem[keep][0]) / KIB:.0f} KiB); p99 first {w}: {first * 1e6:.0f} us; "
        f"p99 ratios (last/first, then last/fresh reference) {[round(r, 3) for r in ratios]}; "
        f"{int(timed.flagged.sum())} calls flagged"
    )
    assert slope < MAX_SLOPE
    # Latency is asserted in the soak run only: on a shared host (CI's, or a developer's running
    # other jobs) every look can land in someone else's load, as it did in a CI run (ratios 1.48,
    # 1.81, 1.43 with 1313 calls flagged). The short run still reports the ratios and asserts the
    # deterministic half, the memory slope.
    if level == "long":
        assert min(ratios) <= MAX_P99_RATIO


# ---- load / free cycles -------------------------------------------------------------------------

CYCLES = {"short": 10, "long": 50}
RSS_RETURN = 32 * MIB


@pytest.mark.parametrize("level", [SHORT, LONG])
def test_load_free_cycles_release_everything(level: str, gpt2_long: Path) -> None:
    dirs = [gpt2_long, FIX / "gemma3-tiny", FIX / "gpt2-tiny-sharded"]
    files = [f for d in dirs for f in d.iterdir()]

    def cycle() -> list[str]:
        held = []
        for d in dirs:
            m = pyrustml.load(str(d))
            m.generate("Hello", max_tokens=8, temperature=0)
            held += maps_naming(files)
            del m  # no gc.collect(): reference counting alone must free a model
        return held

    cycle()  # imports, tokenizer caches and allocator arenas settle here
    rss0, fds0, threads0 = rss(), open_fds(), n_threads()
    peak = rss0
    for _ in range(CYCLES[level]):
        cycle()
        peak = max(peak, rss())
    rss1, fds1 = rss(), open_fds()
    left = maps_naming(files)
    print(
        f"[soak load/free {level}] {CYCLES[level]} cycles x {len(dirs)} models: "
        f"RSS {rss0 / MIB:.1f} -> {rss1 / MIB:.1f} MiB (peak {peak / MIB:.1f}); "
        f"fds {len(fds0)} -> {len(fds1)}; maps naming checkpoint files after free: {len(left)}; "
        f"threads {threads0} -> {n_threads()}"
    )
    assert rss1 - rss0 < RSS_RETURN
    assert fds1 == fds0, set(fds1.items()) ^ set(fds0.items())
    assert not left, left[:3]
    assert n_threads() == threads0
