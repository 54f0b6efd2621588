"""How much of a decode step the main thread spends outside the C kernels (Python, cffi, numpy).

    python tools/python_overhead.py MODEL_DIR [--threads 2] [--seconds 10] [--lookup 0]

A child process loads the model and warms it up, then decodes greedily for --seconds while
`perf record` samples it (CPU-clock, attached only for the decode phase). The main thread's
samples are classified by where they fall: libq8.so and the libm it calls are the kernels;
libpython, the mypyc and cffi extension modules, numpy and the rest are the overhead. During
decode the main thread always runs (it computes its share of each kernel or spins waiting for the
pool), so the sample share is the share of the step's wall time. Needs `perf` (linux-perf).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time, statistics
import pyrustml
m = pyrustml.load(sys.argv[1], threads=int(sys.argv[2]))
ids = list(range(100, 132))
m.generate(ids, max_tokens=16, temperature=0, ignore_eos=True)
print("READY", flush=True)
deadline = time.monotonic() + float(sys.argv[3])
steps = []
while time.monotonic() < deadline:
    g = m.generate(ids, max_tokens=200, temperature=0, ignore_eos=True, lookup=int(sys.argv[4]))
    steps += g.timings.step_ms
print("STEP_MS", statistics.median(steps), len(steps), flush=True)
"""
KERNEL_DSOS = ("libq8.so", "libm.so")  # libm: called by libq8 (expf in attention)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--lookup", type=int, default=0)
    args = ap.parse_args()
    if shutil.which("perf") is None:
        print("python_overhead: needs perf (apt-get install linux-perf)", file=sys.stderr)
        return 2
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, args.model, str(args.threads), str(args.seconds), str(args.lookup)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "READY":
        print("python_overhead: the child failed to load the model", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        rec = subprocess.Popen(
            ["perf", "record", "-q", "-F", "2000", "-p", str(child.pid), "-o", data],
            stderr=subprocess.DEVNULL,
        )
        out = child.stdout.read()
        child.wait()
        time.sleep(0.2)
        if rec.poll() is None:
            rec.send_signal(signal.SIGINT)
        rec.wait()
        # Sorted by thread and library; filtering with --tid instead loses libq8's samples in
        # some perf versions (6.1 reports the main thread without them).
        report = subprocess.run(
            ["perf", "report", "-i", data, "--sort", "pid,dso", "--stdio"],
            capture_output=True,
            text=True,
        ).stdout
    shares: dict[str, float] = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+):\S*\s+(\S.*?)\s*$", line)
        if m and int(m.group(2)) == child.pid:
            shares[m.group(3)] = shares.get(m.group(3), 0.0) + float(m.group(1))
    total = sum(shares.values())
    if total <= 0:
        print("python_overhead: perf recorded nothing (permissions? perf_event_paranoid)", file=sys.stderr)
        return 1
    inside = sum(v for k, v in shares.items() if any(d in k for d in KERNEL_DSOS))
    step = re.search(r"STEP_MS ([\d.]+) (\d+)", out)
    print(f"model {args.model}, {args.threads} threads, lookup {args.lookup}")
    if step:
        print(f"decode: median step {float(step.group(1)):.3f} ms over {step.group(2)} steps")
    print("main thread, share of samples by library:")
    for k, v in sorted(shares.items(), key=lambda kv: -kv[1]):
        if v / total >= 0.001:
            print(f"  {100 * v / total:6.2f}%  {k}")
    print(f"outside the C kernels: {100 * (total - inside) / total:.2f}% of the main thread's time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
