"""pyrustml-infer: the seed's command line, plus what a llama.cpp user expects.

Generated text goes to stdout, flushed per piece; logs and the timing summary go to stderr.
Any PyrustmlError or bad option is one line on stderr and a non-zero exit, never a traceback.
Exit codes: 0 ok, 1 model/runtime error, 2 bad arguments, 130 interrupted (Ctrl-C),
141 stdout closed by its reader (SIGPIPE).
Interpreted on purpose (not mypyc-compiled): it runs once per process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

DEFAULT_MODEL = "openai-community/gpt2"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr and exit 2, like every other bad value."""
        print(f"pyrustml-infer: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pyrustml-infer",
        description="Generate text with a Hugging Face checkpoint (GPT-2, Gemma 3) on the CPU.",
    )
    p.add_argument(
        "--safetensors",
        "-m",
        "--model",
        dest="source",
        default=DEFAULT_MODEL,
        help=f"local checkpoint directory or hub repo id (default {DEFAULT_MODEL})",
    )
    p.add_argument("--prompt", "-p", default="", help="prompt text")
    p.add_argument(
        "--max-tokens",
        "-n",
        "--n-predict",
        dest="max_tokens",
        type=int,
        default=None,
        help="tokens to generate (default 16)",
    )
    p.add_argument("--temperature", "--temp", type=float, default=None, help="0 is greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument(
        "--repeat-penalty", "--repetition-penalty", dest="repeat_penalty", type=float, default=None
    )
    p.add_argument("--seed", "-s", type=int, default=None)
    p.add_argument("--threads", "-t", type=int, default=None, help="default: physical cores")
    p.add_argument("--quant", choices=["q8_0", "f32"], default="q8_0")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument(
        "--ctx-size", "-c", type=int, default=None, dest="ctx",
        help="context per sequence: sizes the KV caches (default: min(the model's max positions, 4096))",
    )  # fmt: skip
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="per-step timings on stderr, then the audit tables (also on with PYRUSTML_LOG=debug)",
    )
    p.add_argument(
        "--lookup",
        type=int,
        default=0,
        metavar="N",
        help="prompt-lookup decoding: draft up to N tokens per step from the context (greedy only)",
    )
    p.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-sequence tokens")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of streaming")
    p.add_argument(
        "--chat",
        action="store_true",
        help="render the checkpoint's chat template; without --prompt, read user turns from stdin",
    )
    p.add_argument(
        "--system-prompt", "--system", dest="system_prompt", default=None, help="system message for --chat"
    )
    return p  # fmt: skip


def _setup_logging() -> None:
    level = os.environ.get("PYRUSTML_LOG", "").lower()
    if _debug():
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s", stream=sys.stderr)
    elif level in ("info", "warning", "error"):
        logging.basicConfig(level=level.upper(), format="%(name)s: %(message)s", stream=sys.stderr)


def _fail(msg: str, code: int) -> int:
    print(f"pyrustml-infer: error: {msg}", file=sys.stderr)
    return code


def _summary(load_ms: float, t: dict[str, float]) -> None:
    def line(label: str, ms: float, n: float, unit: str) -> str:
        per = ms / n if n else 0.0
        rate = 1000.0 * n / ms if ms > 0 else 0.0
        return (
            f"{label:>17} = {ms:10.2f} ms / {int(n):5d} {unit} "
            f"({per:8.2f} ms per token, {rate:9.2f} tokens per second)"
        )

    print(f"{'load time':>17} = {load_ms:10.2f} ms", file=sys.stderr)
    print(line("prompt eval time", t["prompt_ms"], t["prompt_tokens"], "tokens"), file=sys.stderr)
    print(line("eval time", t["eval_ms"], t["eval_tokens"], "runs  "), file=sys.stderr)


def _debug() -> bool:
    return os.environ.get("PYRUSTML_LOG", "").lower() == "debug" or "rustml=debug" in os.environ.get(
        "RUST_LOG", ""
    )


def _print_step(rec: Any) -> None:
    from .perf.report import step_line

    print(step_line(rec.as_dict()), file=sys.stderr)


def _start_profile(model: Any) -> Any:
    """Attach the profiler: one stderr line per step as it ends."""
    prof = model.enable_profiling()
    prof.listener = _print_step
    return prof


def _profile_tables(model: Any, prof: Any, source: str) -> None:
    """The audit's tables for the steps recorded since the last call (stderr)."""
    from .perf import report
    from .perf.audit import collect

    steps, prof.steps = prof.steps, []
    if not steps:
        return
    a = report.analyze(collect(model, source, steps, None, None))
    print(report.markdown([a], title="pyrustml profile"), file=sys.stderr)


def _report(model: Any, args: argparse.Namespace, result: Any) -> None:
    """After a one-shot run: the llama.cpp-style summary, then the profile tables if on."""
    _summary(model.load_ms, result.timings.as_dict())
    if model.net.prof is not None:
        _profile_tables(model, model.net.prof, args.source)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _stream(stream: Any) -> Any:
    """Print the pieces of a running generation as they come; returns its Generation."""
    try:
        for piece in stream:
            _write(piece)
    finally:
        stream.close()
    _write("\n")
    return stream.generation


def _messages(args: argparse.Namespace, prompt: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    return [*msgs, {"role": "user", "content": prompt}]


def _chat(model: Any, args: argparse.Namespace, opts: dict[str, Any]) -> int:
    """One turn with --prompt; otherwise a conversation read from stdin, one user turn per line,
    keeping the KV cache of the earlier turns (only each new turn is prefilled)."""
    if args.prompt:
        result = _stream(model.stream_chat(_messages(args, args.prompt), **opts))
        _report(model, args, result)
        return 0
    messages = _messages(args, "")[:-1]
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        result = _stream(model.stream_chat(messages, **opts))
        messages.append({"role": "assistant", "content": result.text})
        if model.net.prof is not None:
            _profile_tables(model, model.net.prof, args.source)
        if _debug():
            t = result.timings
            new = t.prompt_tokens - t.cached_tokens
            kept = t.cached_tokens
            print(
                f"turn: {kept} tokens kept in the KV cache, {new} prefilled in {t.prompt_ms:.1f} ms",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging()
    # Imported after argument parsing so --help is instant and import errors are reported cleanly.
    try:
        from . import load
        from .errors import PyrustmlError
    except Exception as exc:
        return _fail(f"cannot import pyrustml: {exc}", 1)
    if args.threads is not None and args.threads < 1:
        return _fail("--threads must be >= 1", 2)
    try:
        model = load(
            args.source, quant=args.quant, threads=args.threads, revision=args.revision, ctx=args.ctx
        )
        if args.profile or _debug():
            _start_profile(model)
        opts = dict(
            max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            min_p=args.min_p, repetition_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop,
        )  # fmt: skip
        if args.ignore_eos:
            opts["ignore_eos"] = True
        if args.lookup:
            opts["lookup"] = args.lookup
        if args.json:
            if args.chat:
                g = model.chat(_messages(args, args.prompt), **opts)
            else:
                g = model.generate(args.prompt, **opts)
            doc = {
                "text": g.text,
                "prompt_tokens": g.prompt_tokens,
                "tokens": g.tokens,
                "finish_reason": g.finish_reason,
                "timings": {"load_ms": model.load_ms, **g.timings.as_dict()},
            }
            print(json.dumps(doc, ensure_ascii=False))
            return 0
        if args.chat:
            return _chat(model, args, opts)
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        result = _stream(model.stream(args.prompt, **opts))
        _report(model, args, result)
        return 0
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        sys.stdout.flush()
        print("pyrustml-infer: interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:
        return _fail(str(exc), 2)
    except PyrustmlError as exc:
        return _fail(str(exc), 1)
    except MemoryError:
        return _fail("out of memory", 1)
    except BrokenPipeError:
        return _stdout_closed()
    except OSError as exc:
        return _fail(str(exc), 1)


def _stdout_closed() -> int:
    """The reader of stdout went away (`| head`): stop quietly, as a program killed by SIGPIPE
    would. stdout now writes to /dev/null, so the interpreter's last flush of the text it could
    not deliver raises nothing at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # what a shell reports for SIGPIPE


def entry() -> None:
    try:
        code = main()
    except KeyboardInterrupt:
        # Ctrl-C outside main's own handler: during argument parsing, or a second one while
        # that handler flushes.
        code = 130
    except BrokenPipeError:
        code = _stdout_closed()  # the interrupted handler's newline found stdout closed
    sys.exit(code)


if __name__ == "__main__":
    entry()
