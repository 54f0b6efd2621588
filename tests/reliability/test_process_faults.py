"""Processes and interrupts: fork after the pool is warm, interpreter exit with work in flight,
Ctrl-C (SIGINT) to the CLI, and KeyboardInterrupt inside a library generation.

Each scenario that forks, exits or is signalled runs in a fresh interpreter, so a hang or a
crash is caught by a deadline and an exit status instead of taking the test session with it."""

from __future__ import annotations

import _thread
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from child import child_env
from support import FIX

import pyrustml

MODELS = ["gpt2-tiny-hf", "gemma3-tiny"]
CHILD_DEADLINE_S = 30.0  # the bound for a forked child's generation
EXIT_BOUND_S = 5.0  # a process that loads, generates and exits
SIGINT_EXIT_S = 1.0  # Ctrl-C to exit
LONG_CONTEXT = 32768  # positions of the Gemma-shaped model used for long prefills and streams


def run_py(
    script: str, *args: str, cwd: Path, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=str(cwd),
        timeout=timeout,
    )
    return r, time.monotonic() - t0


def last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def long_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gemma3-tiny with a long context: RoPE has no position table, so only config.json changes."""
    d = tmp_path_factory.mktemp("gemma-long") / "gemma3-tiny-long"
    shutil.copytree(FIX / "gemma3-tiny", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = LONG_CONTEXT
    (d / "config.json").write_text(json.dumps(cfg))
    return d


# ---- fork -------------------------------------------------------------------------------------

FORK = r"""
import json, os, signal, sys, threading, time
import pyrustml
model, mode, deadline = sys.argv[1], sys.argv[2], float(sys.argv[3])
m = pyrustml.load(model)
P = "Hello there, fork"
want = m.generate(P, max_tokens=24, temperature=0).tokens  # the pool is warm after this
stop = threading.Event()
th = None
if mode != "idle":  # another thread is inside a generation when the process forks
    # "busy": on the model the child uses; "busy-other": on a second model, so only the C pool
    # is shared (its fork handler waits for the running job; the child restarts the workers).
    busy = m if mode == "busy" else pyrustml.load(sys.argv[4])
    started = threading.Event()
    def bg():
        while not stop.is_set():
            started.set()
            busy.generate("busy " * 20, max_tokens=100, temperature=0, ignore_eos=True)
    th = threading.Thread(target=bg, daemon=True)
    th.start()
    started.wait()
    time.sleep(0.05)
r, w = os.pipe()
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.close(r)
    try:
        msg = {"tokens": m.generate(P, max_tokens=24, temperature=0).tokens}
    except BaseException as exc:
        msg = {"error": type(exc).__name__, "message": str(exc)}
    os.write(w, json.dumps(msg).encode())
    os._exit(0)
os.close(w)
status = None
while time.monotonic() - t0 < deadline:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        break
    time.sleep(0.005)
child_s = time.monotonic() - t0
if status is None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
data = b""
while chunk := os.read(r, 65536):
    data += chunk
stop.set()
if th is not None:
    th.join(30)
after = m.generate(P, max_tokens=24, temperature=0).tokens
print(json.dumps({"want": want, "child": json.loads(data) if data else None, "status": status,
                  "child_s": child_s, "after": after}))
"""


def check_fork_result(doc: dict[str, Any]) -> None:
    child = doc["child"]
    assert child is not None, f"the forked child produced nothing within {doc['child_s']:.1f} s (hang)"
    assert doc["status"] == 0, doc
    if "error" in child:
        # A refusal is acceptable if it is one of ours and says what happened.
        family = {c.__name__ for c in vars(pyrustml.errors).values()
                  if isinstance(c, type) and issubclass(c, pyrustml.PyrustmlError)}  # fmt: skip
        assert child["error"] in family and child["message"], child
    else:
        assert child["tokens"] == doc["want"]
    assert doc["after"] == doc["want"], "the parent changed after the fork"


@pytest.mark.parametrize("name", MODELS)
def test_fork_after_warm_pool(tmp_path: Path, name: str) -> None:
    r, _ = run_py(FORK, str(FIX / name), "idle", str(CHILD_DEADLINE_S), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = last_json(r.stdout)
    check_fork_result(doc)
    print(f"[fork idle {name}] child answered in {doc['child_s']:.3f} s")


@pytest.mark.parametrize("name", MODELS)
def test_fork_while_another_model_keeps_the_pool_busy(tmp_path: Path, name: str) -> None:
    other = FIX / ("gemma3-tiny" if name == "gpt2-tiny-hf" else "gpt2-tiny-hf")
    for _ in range(3):  # the fork lands at a different point of the other model's work each time
        r, _ = run_py(FORK, str(FIX / name), "busy-other", str(CHILD_DEADLINE_S), str(other), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        doc = last_json(r.stdout)
        check_fork_result(doc)
    print(f"[fork busy pool {name}] child answered in {doc['child_s']:.3f} s")


def test_fork_while_another_thread_generates(tmp_path: Path) -> None:
    # The child deadline is shorter than the 30 s: a working child answers in
    # milliseconds, and a child stuck on the parent's lock would cost the whole wait.
    r, _ = run_py(FORK, str(FIX / "gemma3-tiny"), "busy", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    check_fork_result(last_json(r.stdout))


MP_FORK = r"""
import json, sys, multiprocessing as mp
import pyrustml
m = pyrustml.load(sys.argv[1])
prompts = [f"worker prompt {i}: " + "abc " * i for i in range(6)]
def work(p):
    return m.generate(p, max_tokens=20, temperature=0).tokens
want = [work(p) for p in prompts]
with mp.get_context("fork").Pool(2) as pool:
    got = pool.map_async(work, prompts).get(timeout=float(sys.argv[2]))
q = mp.get_context("fork").SimpleQueue()
proc = mp.get_context("fork").Process(target=lambda: q.put(work(prompts[-1])))
proc.start()
proc.join(float(sys.argv[2]))
one = q.get() if proc.exitcode == 0 else None
print(json.dumps({"want": want, "got": got, "one": one, "exitcode": proc.exitcode,
                  "after": [work(p) for p in prompts]}))
"""


@pytest.mark.parametrize("name", MODELS)
def test_multiprocessing_fork_workers(tmp_path: Path, name: str) -> None:
    r, _ = run_py(MP_FORK, str(FIX / name), str(CHILD_DEADLINE_S), cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stderr
    doc = last_json(r.stdout)
    assert doc["got"] == doc["want"]
    assert doc["exitcode"] == 0 and doc["one"] == doc["want"][-1]
    assert doc["after"] == doc["want"]


# ---- exit ---------------------------------------------------------------------------------------

EXIT_CLEAN = r"""
import sys
import pyrustml
m = pyrustml.load(sys.argv[1])
print(m.generate("Hello", max_tokens=8, temperature=0).tokens)
"""


@pytest.mark.parametrize("name", MODELS)
def test_load_generate_exit_is_quick(tmp_path: Path, name: str) -> None:
    r, wall = run_py(EXIT_CLEAN, str(FIX / name), cwd=tmp_path, timeout=30)
    print(f"[exit clean {name}] rc={r.returncode} in {wall:.2f} s")
    assert r.returncode == 0, r.stderr
    assert wall < EXIT_BOUND_S


EXIT_BUSY = r"""
import sys, threading, time
import pyrustml
model, what, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
m = pyrustml.load(model)
running = threading.Event()
def bg():
    while True:
        running.set()
        if what == "generate":
            m.generate("busy " * 10, max_tokens=10000, temperature=0, ignore_eos=True)
        elif what == "stream":
            for _ in m.stream("busy", max_tokens=10000, temperature=0.8, seed=1, ignore_eos=True):
                pass
        else:
            pyrustml.load(model).generate("x", max_tokens=4)
threading.Thread(target=bg, daemon=True).start()
running.wait()
time.sleep(delay)
print("main thread returns", flush=True)
"""


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("what", "delay"), [("generate", 0.0), ("generate", 0.03), ("stream", 0.01),
                                             ("load", 0.02)])  # fmt: skip
def test_exit_with_daemon_thread_mid_generation(tmp_path: Path, name: str, what: str, delay: float) -> None:
    r, wall = run_py(EXIT_BUSY, str(FIX / name), what, str(delay), cwd=tmp_path, timeout=30)
    print(f"[exit busy {name} {what} {delay}] rc={r.returncode} in {wall:.2f} s")
    # A negative code is death by a signal (SIGSEGV, SIGABRT: a core dump).
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert "main thread returns" in r.stdout
    assert "Fatal Python error" not in r.stderr
    assert wall < EXIT_BOUND_S


# ---- SIGINT to the CLI --------------------------------------------------------------------------


class Cli:
    """pyrustml-infer (python -m pyrustml, as the `cli` fixture runs it) with stdout read as it
    comes, so the test can signal it at a chosen moment."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyrustml", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
            cwd=str(cwd),
        )
        self.out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self._lock:
                self.out.extend(chunk)

    def wait_for(self, n_bytes: int, timeout: float) -> float:
        """Block until stdout holds n_bytes; returns when that happened (monotonic)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self.out) >= n_bytes:
                    return time.monotonic()
            if self.proc.poll() is not None:
                break
            time.sleep(0.002)
        self.kill()
        pytest.fail(f"the CLI never printed {n_bytes} bytes (exit {self.proc.returncode})")

    def interrupt(self) -> tuple[int, float, str, str]:
        """SIGINT; returns (exit code, seconds to exit, stdout, stderr)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the CLI did not exit within 10 s of SIGINT")
        took = time.monotonic() - t0
        self._reader.join(5)
        assert self.proc.stderr is not None
        return rc, took, self.out.decode("utf-8", "replace"), self.proc.stderr.read().decode()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_sigint_after_first_token_exits_130_with_partial_output(long_gemma: Path, tmp_path: Path) -> None:
    prompt = "Once upon a time"
    cli = Cli(
        [
            "-m",
            str(long_gemma),
            "-p",
            prompt,
            "-n",
            "30000",
            "--temp",
            "0",
            "--ignore-eos",
            "--raw",
            "-c",
            str(LONG_CONTEXT),
        ],
        tmp_path,
    )  # --raw: echo the prompt; -c: past the 4096 default
    cli.wait_for(len(prompt) + 20, timeout=60)  # the prompt echo and some generated text
    rc, took, out, err = cli.interrupt()
    print(f"[sigint decode] rc={rc} exit {took:.3f} s after SIGINT, {len(out) - len(prompt)} chars generated")
    assert rc == 130, err
    assert took < SIGINT_EXIT_S
    assert "Traceback" not in err and "interrupted" in err
    assert out.startswith(prompt) and out.endswith("\n")
    generated = out[len(prompt) : -1]
    assert len(generated.encode()) >= 20  # the bytes waited for (a character may take several)
    # What was flushed is exactly the start of the greedy text.
    m = pyrustml.load(str(long_gemma))
    full = m.generate(prompt, max_tokens=4 * len(generated) + 64, temperature=0, ignore_eos=True).text
    assert full.startswith(generated)


def test_sigint_during_long_prefill_exits_130(long_gemma: Path, tmp_path: Path) -> None:
    # About 4,000 tokens (the default context is 4096): seconds of prefill, in chunks of 8.
    prompt = "the quick brown fox. " * 250
    # Measure this machine: prefill costs at least linear time in the prompt length, so a quarter
    # of the prompt bounds the full prefill from below (4x), and encoding is timed on its own.
    m = pyrustml.load(str(long_gemma))
    t0 = time.perf_counter()
    m.encode(prompt)
    encode_s = time.perf_counter() - t0
    quarter = m.generate(prompt[: len(prompt) // 4], max_tokens=1, temperature=0)
    quarter_s = quarter.timings.prompt_ms / 1000.0
    # Signal a quarter of the way into the full prefill, well after encoding ended.
    when = max(quarter_s, 5 * encode_s, 0.05)
    cli = Cli(
        ["-m", str(long_gemma), "-p", prompt, "-n", "4", "--temp", "0", "--raw", "-c", str(LONG_CONTEXT)],
        tmp_path,
    )  # --raw: echo the prompt; -c: past the 4096 default
    echoed = cli.wait_for(len(prompt), timeout=60)  # the CLI echoes the prompt, then encodes it
    time.sleep(max(0.0, echoed + when - time.monotonic()))
    rc, took, out, err = cli.interrupt()
    print(f"[sigint prefill] rc={rc} exit {took:.3f} s after SIGINT; signalled {when:.2f} s after the echo "
          f"(prefill >= {4 * quarter_s:.2f} s)")  # fmt: skip
    assert rc == 130, err
    assert took < SIGINT_EXIT_S
    assert "Traceback" not in err and "interrupted" in err
    assert "prompt eval time" not in err  # it really stopped inside the prefill
    assert out == prompt + "\n"


# ---- KeyboardInterrupt in the library -----------------------------------------------------------


@pytest.fixture(scope="module")
def long_model(long_gemma: Path) -> pyrustml.Model:
    return pyrustml.load(str(long_gemma))


def fresh_greedy(path: Path, prompt: str) -> list[int]:
    return pyrustml.load(str(path)).generate(prompt, max_tokens=48, temperature=0, ignore_eos=True).tokens


def interrupt_main_after(seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, _thread.interrupt_main)
    t.start()
    return t


def next_greedy(m: pyrustml.Model, prompt: str, deadline: float = 10.0) -> list[int]:
    """The next greedy run on m, from another thread with a deadline: a model left locked by
    the interrupted call fails the test instead of hanging it (the blocked thread is a daemon)."""
    out: list[list[int]] = []
    th = threading.Thread(
        target=lambda: out.append(m.generate(prompt, max_tokens=48, temperature=0, ignore_eos=True).tokens),
        daemon=True,
    )
    th.start()
    th.join(deadline)
    assert out, f"the model is still locked {deadline:.0f} s after the interrupted call (deadlock)"
    return out[0]


# The stream tests below matter most for the compiled build: mypyc's generators, unlike
# CPython's, do not run their `finally` and `with` exits when dropped unfinished, so a stream that
# held the model while a piece is out would stay locked forever once its consumer stopped early.


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_keyboard_interrupt_inside_generate(long_gemma: Path, long_model: pyrustml.Model, phase: str) -> None:
    m = long_model
    prompt = "hello" if phase == "decode" else "the quick brown fox. " * 200
    n = 2000 if phase == "decode" else 1
    # How long the uninterrupted call takes, to show the interrupt landed inside it.
    t0 = time.perf_counter()
    m.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True)
    full_s = time.perf_counter() - t0
    timer = interrupt_main_after(full_s / 4)
    t0 = time.perf_counter()
    # Another prompt of the same length: the prefix cache would serve this one's positions.
    other = prompt.replace("the", "a").replace("hello", "howdy")
    with pytest.raises(KeyboardInterrupt):
        m.generate(other, max_tokens=n, temperature=0, ignore_eos=True)
        time.sleep(5)  # a late interrupt lands here: caught by the timing check below
    took = time.perf_counter() - t0
    timer.join()
    print(f"[KeyboardInterrupt {phase}] raised {took:.3f} s into a {full_s:.3f} s call")
    assert took < full_s / 2, "the interrupt was only delivered after the generation ended"
    assert next_greedy(m, "again") == fresh_greedy(long_gemma, "again")


def test_sigint_from_a_stream_consumer(long_gemma: Path) -> None:
    """signal.raise_signal(SIGINT) in the consumer: Python's default handler raises
    KeyboardInterrupt, which leaves the stream and must release the model."""
    m = pyrustml.load(str(long_gemma))
    pieces = 0
    with pytest.raises(KeyboardInterrupt):
        for _ in m.stream("hello", max_tokens=20000, temperature=0, ignore_eos=True):
            pieces += 1
            if pieces == 50:
                signal.raise_signal(signal.SIGINT)
    assert 50 <= pieces < 20000
    assert next_greedy(m, "again") == fresh_greedy(long_gemma, "again")


@pytest.mark.parametrize("name", MODELS)
def test_keyboard_interrupt_raised_by_a_stream_consumer(name: str) -> None:
    m = pyrustml.load(str(FIX / name))
    want = fresh_greedy(FIX / name, "abc")
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            for i, _piece in enumerate(m.stream("other prompt", max_tokens=40, temperature=0)):
                if i == 3:
                    raise KeyboardInterrupt
        assert next_greedy(m, "abc") == want


@pytest.mark.parametrize("name", MODELS)
def test_break_out_of_a_stream_releases_the_model(name: str) -> None:
    """The everyday way to stop a stream early: `break`, or dropping a half-read iterator."""
    m = pyrustml.load(str(FIX / name))
    want = fresh_greedy(FIX / name, "abc")
    for i, _piece in enumerate(m.stream("other prompt", max_tokens=40, temperature=0, ignore_eos=True)):
        if i == 3:
            break
    assert next_greedy(m, "abc") == want
    it = m.stream("more", max_tokens=40, temperature=0, ignore_eos=True)
    next(it)
    del it
    assert next_greedy(m, "abc") == want


def test_keyboard_interrupt_inside_chat(long_gemma: Path, long_model: pyrustml.Model) -> None:
    """A chat keeps its KV cache for the next turn: after an interrupted one, the next chat
    must not reuse a cache the interrupted call left half written."""
    m = long_model
    assert m.chat_template is not None
    msgs = [{"role": "user", "content": "hi there"}]
    want = pyrustml.load(str(long_gemma)).chat(msgs, max_tokens=24, temperature=0).tokens
    m.chat(msgs, max_tokens=24, temperature=0)  # the cache now holds this conversation
    timer = interrupt_main_after(0.05)
    with pytest.raises(KeyboardInterrupt):
        m.chat([*msgs, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go on"}],
               max_tokens=20000, temperature=0, ignore_eos=True)  # fmt: skip
        time.sleep(5)
    timer.join()
    assert m.chat(msgs, max_tokens=24, temperature=0).tokens == want


HELD_STREAM = r"""
import signal, sys
import pyrustml
from pyrustml.errors import PyrustmlError
m = pyrustml.load(sys.argv[1])
want = m.generate("abc", max_tokens=16, temperature=0).tokens
s = m.stream("hello", max_tokens=100, temperature=0, ignore_eos=True)
try:
    for i, piece in enumerate(s):
        if i == 3:
            raise KeyboardInterrupt
except KeyboardInterrupt:
    pass
# `s` is still alive and suspended inside the generation, in this very thread. A lock wait
# is interruptible by a signal: the alarm turns a deadlock into a report.
def on_alarm(signum, frame):
    raise TimeoutError
signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(int(sys.argv[2]))
try:
    ok = m.generate("abc", max_tokens=16, temperature=0).tokens == want
    print("generated", ok)
except PyrustmlError as exc:
    print("refused", type(exc).__name__, exc)
except TimeoutError:
    print("deadlock")
"""


def test_call_after_interrupted_stream_still_referenced(tmp_path: Path) -> None:
    # 3 s: the call takes milliseconds unless it deadlocks.
    r, _ = run_py(HELD_STREAM, str(FIX / "gpt2-tiny-hf"), "3", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "generated True" in r.stdout or "refused" in r.stdout, r.stdout


def test_cli_stops_quietly_when_its_reader_goes_away(long_gemma: Path, tmp_path: Path) -> None:
    """`pyrustml-infer ... | head -c 40`: the CLI stops at once, like a program killed by SIGPIPE
    (exit 141), with no error line, traceback or "Exception ignored" at exit."""
    p = subprocess.Popen(
        [sys.executable, "-m", "pyrustml", "-m", str(long_gemma), "-p", "Hello", "-n", "30000",
         "--temp", "0", "--ignore-eos", "--raw", "-c", str(LONG_CONTEXT)],  # --raw: the prompt is echoed
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=str(tmp_path),
    )  # fmt: skip
    assert p.stdout is not None and p.stderr is not None
    head = p.stdout.read(40)
    p.stdout.close()
    t0 = time.monotonic()
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("the CLI kept running after its reader went away")
    took = time.monotonic() - t0
    err = p.stderr.read().decode()
    print(f"[broken pipe] rc={rc} {took:.3f} s after the reader closed")
    assert head.startswith(b"Hello")
    assert rc == 141, err
    assert took < SIGINT_EXIT_S
    assert "Traceback" not in err and "Exception ignored" not in err and "error" not in err, err
