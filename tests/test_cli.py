"""pyrustml-infer as a user runs it (the real entry point, in a subprocess, on the tiny checkpoints):
flags and aliases, defaults, checks before loading, chat templates, JSON, closed streams, exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import FIX

import pyrustml

GPT2 = str(FIX / "gpt2-tiny-openai")  # no chat template, no sampling defaults
GEMMA = str(FIX / "gemma3-tiny")  # a chat template; generation_config sets top_k 64, top_p 0.95
NOWHERE = "/nonexistent/pyrustml-model"  # an option error must come before the model is looked for


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pyrustml-infer: error: "), lines[0]
    return lines[0]


def run_sh(cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A shell line, for redirections a subprocess argument list cannot express (>&-, <&-)."""
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                          cwd=str(FIX.parent.parent.parent))  # fmt: skip


PY = f"{sys.executable} -m pyrustml"


# ---- before anything loads -------------------------------------------------------------------


def test_help_shows_every_default(cli: Any) -> None:
    r = cli(["--help"])
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for flag in ("--safetensors", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p",
                 "--min-p", "--repeat-penalty", "--seed", "--stop", "--lookup", "--ctx-size", "--threads",
                 "--quant", "--revision", "--system-prompt"):  # fmt: skip
        entry = text.split(flag, 1)[1].split(" --", 1)[0]
        assert "default" in entry, (flag, entry)
    # Where generation_config.json is silent: llama.cpp's sampler defaults.
    for default in ("else 0.8", "else 40", "else 0.95", "else 0.05"):
        assert default in text
    for flag in ("-c", "-f", "--ignore-chat-template", "--raw", "--quiet", "--version", "--json", "--chat"):
        assert re.search(rf"(^|[ ,\[]){re.escape(flag)}\b", text), flag


def test_version(cli: Any) -> None:
    r = cli(["--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"pyrustml-infer {pyrustml.__version__}"


BAD = [
    (["--top-p", "1.5"], "--top-p"),
    (["--top-p", "-0.5"], "--top-p"),
    (["--temperature", "-1"], "--temperature"),
    (["--temp", "1e-320"], "--temperature"),
    (["--temp", "nan"], "--temperature"),
    (["--min-p", "2"], "--min-p"),
    (["--repeat-penalty", "0"], "--repeat-penalty"),
    (["--repeat-penalty", "inf"], "--repeat-penalty"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["-n", "-2"], "--max-tokens"),
    (["--top-k", "-2"], "--top-k"),
    (["--seed", "-5"], "--seed"),
    (["-c", "0"], "--ctx-size"),
    (["--threads", "0"], "--threads"),
    (["--lookup", "-1"], "--lookup"),
    (["--lookup", "4", "--temp", "0.7"], "--temp 0"),
    (["--stop", ""], "--stop"),
    (["--max-tokens", "abc"], "--max-tokens"),
    (["--quant", "q4"], "--quant"),
    (["-f", "/nonexistent/prompt.txt"], "--file"),
]


@pytest.mark.parametrize(("args", "flag"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_fail_before_loading_and_name_the_flag(cli: Any, args: list[str], flag: str) -> None:
    r = cli(["--safetensors", NOWHERE, "--prompt", "x", *args])
    assert r.returncode == 2, r.stderr
    line = one_error_line(r)
    assert flag in line and NOWHERE not in line


def test_prompt_and_file_together_and_chat_json_without_a_prompt(cli: Any, tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("hello")
    r = cli(["-m", NOWHERE, "-p", "x", "-f", str(f)])
    assert r.returncode == 2 and "--prompt or --file" in one_error_line(r)
    r = cli(["-m", NOWHERE, "--chat", "--json"])
    assert r.returncode == 2 and "--chat --json needs" in one_error_line(r)


def test_invalid_utf8_in_the_prompt_or_its_file(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pyrustml", "-m", NOWHERE, "-p", "é".encode() + b"\xffcd"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "--prompt is not valid UTF-8 (byte 2 of it)" in one_error_line(r)
    f = tmp_path / "bad.txt"
    f.write_bytes(b"caf\xe9")
    r = subprocess.run([sys.executable, "-m", "pyrustml", "-m", NOWHERE, "-f", str(f)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "is not valid UTF-8 (byte 3)" in one_error_line(r)


def test_a_file_instead_of_a_directory(cli: Any, tmp_path: Path) -> None:
    r = cli(["-m", str(Path(GPT2) / "model.safetensors"), "-p", "x"])
    assert r.returncode == 2 and "pass the directory" in one_error_line(r)
    gguf = tmp_path / "model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    r = cli(["-m", str(gguf), "-p", "x"])
    assert r.returncode == 2 and "GGUF files are not supported yet" in one_error_line(r)


def test_closed_stdout_and_stdin_are_one_line() -> None:
    r = run_sh(f"{PY} -m {GPT2} -p hi -n 2 --temp 0 >&-")
    assert r.returncode == 1 and "stdout is closed" in one_error_line(r)
    r = run_sh(f"{PY} -m {GPT2} --chat <&-")
    assert r.returncode == 2 and "stdin is closed" in one_error_line(r)


def test_importing_an_unbuilt_source_tree_says_so(tmp_path: Path) -> None:
    """As numpy does: the checkout without `pip install` has no libq8.so and no q8.h in the package."""
    src = Path(pyrustml.__file__).parent
    shutil.copytree(src, tmp_path / "pyrustml", ignore=shutil.ignore_patterns("*.so", "q8.h", "__pycache__"))
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "libq8").mkdir()
    r = subprocess.run([sys.executable, "-c", "import pyrustml; pyrustml.load"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=60, env={**os.environ, "PYTHONPATH": ""})  # fmt: skip
    assert r.returncode != 0
    assert "imported from its source tree" in r.stderr and "pip install" in r.stderr
    assert "FileNotFoundError" not in r.stderr


# ---- runs ----------------------------------------------------------------------------------


def test_the_original_command_and_llama_cpp_aliases(cli: Any) -> None:
    r = cli(["--safetensors", GPT2, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello")
    for label in ("loaded gpt2-tiny-openai (Q8_0)", "load time", "prompt eval time", "eval time"):
        assert label in r.stderr
    r2 = cli(["-m", GPT2, "-p", "Hello", "-n", "10", "--temp", "0", "-t", "1", "-s", "3"])
    assert r2.returncode == 0 and r2.stdout == r.stdout
    q = cli(["-m", GPT2, "-p", "Hello", "-n", "10", "--temp", "0", "--quiet"])
    assert q.returncode == 0 and q.stdout == r.stdout and q.stderr == ""


def test_prompt_from_a_file(cli: Any, tmp_path: Path) -> None:
    f = tmp_path / "prompt.txt"
    f.write_text("Hello", encoding="utf-8")
    a = cli(["-m", GPT2, "-f", str(f), "-n", "6", "--temp", "0", "--json"])
    b = cli(["-m", GPT2, "-p", "Hello", "-n", "6", "--temp", "0", "--json"])
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["completion_token_ids"] == json.loads(b.stdout)["completion_token_ids"]


def test_json_document_uses_openai_usage_names_with_int_counts(cli: Any) -> None:
    r = cli(["--safetensors", GPT2, "--prompt", "Hello", "-n", "6", "--temp", "0", "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"text", "finish_reason", "usage", "prompt_token_ids", "completion_token_ids", "timings"} <= set(
        doc
    )
    u = doc["usage"]
    assert all(type(u[k]) is int for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert u["prompt_tokens"] == len(doc["prompt_token_ids"]) > 0
    assert u["completion_tokens"] == len(doc["completion_token_ids"]) <= 6
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    counts = {k: v for k, v in doc["timings"].items() if k.endswith("tokens")}
    assert counts and all(type(v) is int for v in counts.values())
    assert doc["timings"]["load_ms"] > 0


def test_sampler_defaults_are_llama_cpp_where_the_checkpoint_is_silent(cli: Any) -> None:
    r = cli(["-m", GPT2, "-p", "The", "-n", "12", "--seed", "11", "--json"])
    assert r.returncode == 0, r.stderr
    model = pyrustml.load(GPT2, threads=1)
    g = model.generate("The", max_tokens=12, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                       repetition_penalty=1.0, seed=11)  # fmt: skip
    assert json.loads(r.stdout)["completion_token_ids"] == g.tokens


def test_random_seed_is_printed_and_repeats_the_run(cli: Any) -> None:
    r = cli(["-m", GPT2, "-p", "The", "-n", "12", "--temp", "0.9", "-s", "-1", "--json"])
    assert r.returncode == 0, r.stderr
    seed = int(re.search(r"seed (\d+)", r.stderr).group(1))  # type: ignore[union-attr]
    doc = json.loads(r.stdout)
    assert doc["seed"] == seed
    again = cli(["-m", GPT2, "-p", "The", "-n", "12", "--temp", "0.9", "-s", str(seed), "--json"])
    assert json.loads(again.stdout)["completion_token_ids"] == doc["completion_token_ids"]


def test_n_minus_one_runs_to_the_end_of_the_context(cli: Any) -> None:
    r = cli(["-m", GPT2, "-p", "Hello", "-n", "-1", "--temp", "0", "--ignore-eos", "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ctx = pyrustml.load(GPT2, threads=1).ctx
    # The last token needs no cache slot of its own: a full context may emit one past it.
    assert doc["usage"]["total_tokens"] in (ctx, ctx + 1) and doc["finish_reason"] == "length"
    assert "is full" not in r.stderr  # no limit was asked for: no note that one was cut


def test_ctx_size_cuts_a_long_request_with_a_note(cli: Any) -> None:
    r = cli(["-m", GPT2, "-p", "Hello", "-n", "40", "-c", "16", "--temp", "0", "--ignore-eos"])
    assert r.returncode == 0, r.stderr
    assert "the context of 16 tokens is full" in r.stderr


def test_lookup_turns_greedy_on_with_a_note(cli: Any) -> None:
    # gemma3-tiny's generation_config samples (do_sample, top_k 64): --lookup makes it greedy.
    r = cli(["-m", GEMMA, "-p", "a b a b a b", "--raw", "-n", "8", "--lookup", "3", "--json"])
    assert r.returncode == 0, r.stderr
    assert "--lookup turns greedy decoding on" in r.stderr
    g = cli(["-m", GEMMA, "-p", "a b a b a b", "--raw", "-n", "8", "--temp", "0", "--json"])
    assert json.loads(r.stdout)["completion_token_ids"] == json.loads(g.stdout)["completion_token_ids"]


def test_prompt_uses_the_chat_template_unless_raw(cli: Any) -> None:
    model = pyrustml.load(GEMMA, threads=1)
    templated = model.render_chat([{"role": "user", "content": "hi"}])
    r = cli(["-m", GEMMA, "-p", "hi", "-n", "3", "--temp", "0", "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prompt_token_ids"] == templated
    for opt in ("--raw", "--ignore-chat-template"):
        r = cli(["-m", GEMMA, "-p", "hi", "-n", "3", "--temp", "0", "--json", opt])
        assert json.loads(r.stdout)["prompt_token_ids"] == model.encode("hi")
    # Streaming a templated prompt prints the reply only (no echo of the template's text).
    r = cli(["-m", GEMMA, "-p", "hi", "-n", "3", "--temp", "0"])
    assert r.returncode == 0 and "<start_of_turn>" not in r.stdout


def test_chat_from_stdin_with_clear(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pyrustml", "-m", GEMMA, "--chat", "-n", "4", "--temp", "0"],
                       input="hello\n/clear\nhello\n", capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    replies = r.stdout.split("\n")
    assert replies[0] == replies[1] and "conversation cleared" in r.stderr


def test_invalid_utf8_on_chat_stdin_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "pyrustml", "-m", GEMMA, "--chat", "-q", "-n", "2"],
                       input=b"ok\n\xff\xfe\n", capture_output=True, timeout=120)  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == "pyrustml-infer: error: stdin is not valid UTF-8 (a byte 0xff where text was expected)"
    )


def test_a_chat_template_error_during_the_run_is_one_line(cli: Any, tmp_path: Path) -> None:
    d = tmp_path / "model"
    shutil.copytree(GEMMA, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{{ raise_exception('roles must alternate') }}"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    r = cli(["-m", str(d), "-p", "hi", "-n", "2", "--quiet"])
    assert r.returncode == 1 and "roles must alternate" in one_error_line(r)


def test_debug_log_reports_the_load_summary(cli: Any) -> None:
    r = cli(["--safetensors", GPT2, "--prompt", "x", "-n", "2"], env={"PYRUSTML_LOG": "debug"})
    assert r.returncode == 0
    # Projections counted apart ("layers"), then the fused matrices.
    assert "13 Q8_0 layers in 9 matrices, 2 QKV fusions" in r.stderr
    # RUST_LOG is an alias kept for users of the Rust engine.
    r = cli(["--safetensors", GPT2, "--prompt", "x", "-n", "2"], env={"RUST_LOG": "pyrustml=debug"})
    assert "Q8_0 layers in" in r.stderr


class Terminal:
    """pyrustml-infer --chat on a pseudo-terminal (stdin, stdout and stderr), as a person runs it."""

    def __init__(self, args: list[str]) -> None:
        import fcntl
        import pty
        import struct
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        # Its own session with the pty as controlling terminal, so Ctrl-C (\x03) becomes SIGINT.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyrustml", *args], stdin=slave, stdout=slave, stderr=slave,
            cwd=str(FIX.parent.parent.parent), start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )  # fmt: skip
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> None:
        import select
        import time

        end = time.monotonic() + timeout
        while text not in self.seen:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"{text!r} not seen in {timeout} s; got {self.seen!r}")
            try:
                self.seen += os.read(self.master, 65536).decode("utf-8", "replace")
            except OSError:
                raise AssertionError(f"{text!r} not seen before the end; got {self.seen!r}") from None

    def expect_more(self, n: int, timeout: float = 60) -> None:
        """Wait until at least n more characters have arrived."""
        import select

        start = len(self.seen)
        while len(self.seen) - start < n:
            ready, _, _ = select.select([self.master], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s; got {self.seen!r}")
            self.seen += os.read(self.master, 65536).decode("utf-8", "replace")

    def send(self, data: str) -> None:
        os.write(self.master, data.encode())

    def close(self) -> int:
        code = self.proc.wait(timeout=60)
        os.close(self.master)
        return code


def test_interactive_chat_banner_turn_clear_and_exit() -> None:
    t = Terminal(["-m", GEMMA, "--chat", "-n", "3", "--temp", "0", "--quiet"])
    try:
        t.expect("Ctrl-D")  # the banner says how to exit
        t.expect("> ")
        t.send("hello\r")
        t.expect("> ", timeout=60)
        t.send("/clear\r")
        t.expect("conversation cleared")
        t.expect("> ")
        time.sleep(0.3)  # as for Ctrl-C below: a key sent as the prompt prints can come before readline reads
        t.send("\x04")  # Ctrl-D at the prompt
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert "Traceback" not in t.seen
    t = Terminal(["-m", GEMMA, "--chat", "--quiet"])
    try:
        t.expect("> ")
        # A person's Ctrl-C comes well after the prompt. One sent within microseconds of it can
        # fall between CPython's readline printing the prompt and entering select(), where the
        # signal is only noticed with the next keypress (CPython's readline loop, not ours).
        time.sleep(0.3)
        t.send("\x03")  # Ctrl-C at the prompt
        assert t.close() == 130
    finally:
        if t.proc.poll() is None:
            t.proc.kill()


def test_ctrl_c_stops_a_reply_and_returns_to_the_prompt(tmp_path: Path) -> None:
    # gemma3-tiny with room for a long reply (RoPE: positions are not learned, so a longer context is
    # a config value): --ignore-eos -n -1 writes until Ctrl-C comes.
    d = tmp_path / "model"
    shutil.copytree(GEMMA, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = 1 << 20
    (d / "config.json").write_text(json.dumps(cfg))
    t = Terminal(["-m", str(d), "--chat", "--ignore-eos", "-n", "-1", "-c", "200000", "--temp", "0", "-q"])
    try:
        t.expect("> ")
        t.send("hello\r")
        t.expect("hello\r\n")  # the terminal's echo of the line
        t.seen = ""
        t.expect_more(40)  # the reply is streaming
        t.send("\x03")
        t.expect("reply stopped")
        t.expect("> ")
        t.send("\x04")
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert "Traceback" not in t.seen


def test_a_tokenizer_error_during_the_run_is_one_line(cli: Any, tmp_path: Path) -> None:
    # A WordLevel tokenizer whose unk token is not in its vocabulary fails inside tokenizers'
    # encode() on any unknown word.
    d = tmp_path / "model"
    shutil.copytree(GPT2, d)
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
           "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}, "unk_token": "<unk>"}}  # fmt: skip
    (d / "tokenizer.json").write_text(json.dumps(tok))
    r = cli(["-m", str(d), "-p", "zzz", "-n", "2", "--quiet"])
    assert r.returncode == 1 and r.stdout == ""  # a prompt that cannot be encoded is not echoed
    one_error_line(r)
