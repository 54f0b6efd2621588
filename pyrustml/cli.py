"""pyrustml-infer: generate text from the command line, with the flags llama.cpp and mlx-lm users type.

Generated text goes to stdout, flushed per piece; the progress bar, the load summary, notes and
timings go to stderr. Every option is checked before the model loads. Any error is one line on
stderr and a non-zero exit, never a traceback. Exit codes: 0 ok, 1 model/runtime error, 2 bad
arguments, 130 interrupted (Ctrl-C), 141 stdout closed by its reader (SIGPIPE).
Written against the public API only (load, stream, stream_chat, generate, chat).
Interpreted on purpose (not mypyc-compiled): it runs once per process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from . import __version__

DEFAULT_MODEL = "openai-community/gpt2"
DEFAULT_MAX_TOKENS = 16  # one-shot runs; a chat reply runs to the end of its turn
# Where generation_config.json is silent: llama.cpp's sampler defaults.
SAMPLER_DEFAULTS = {
    "temperature": 0.8,
    "top_k": 40.0,
    "top_p": 0.95,
    "min_p": 0.05,
    "repetition_penalty": 1.0,
}
# The generation flags as the library's option names: their values are checked by the library's
# own rules (io.values), so the CLI, the API and generation_config.json agree at every edge.
FLAG_NAMES = {
    "max_tokens": "--max-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "min_p": "--min-p",
    "repetition_penalty": "--repeat-penalty",
    "seed": "--seed",
    "lookup": "--lookup",
}
# load()'s weight formats, as io.weights.QUANTS lists them (not imported from there: this module
# loads without numpy or libq8, so a Ctrl-C in the first instant reaches its handler).
QUANT_CHOICES = ("q8_0", "q4_0", "q4_0-pure", "f32")
BANNER = (
    "Type a message and press Enter. /clear starts over; Ctrl-C stops a reply; "
    "Ctrl-D or Ctrl-C at the prompt exits."
)


class UsageError(Exception):
    """A bad option value: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr and exit 2, like every other bad value."""
        _print_err(f"pyrustml-infer: error: {message}")
        sys.exit(2)


def add_load_flags(p: argparse.ArgumentParser, count: Callable[[str], int]) -> None:
    """--threads, --quant and --revision: what both command lines (this one and pyrustml-serve)
    hand to load(). count parses --threads."""
    p.add_argument("--threads", "-t", type=count, default=None, help="default: one per physical core")
    p.add_argument(
        "--quant",
        choices=QUANT_CHOICES,
        default="q8_0",
        help="weight format (default q8_0; q4_0 keeps the embedding, lm_head and attention output at Q8_0)",
    )
    p.add_argument("--revision", default=None, help="hub revision: branch, tag or commit (default main)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pyrustml-infer",
        description="Generate text with a Hugging Face checkpoint on the CPU. Sampling options left unset "
        "take the checkpoint's generation_config.json, and where it is silent llama.cpp's defaults.",
    )
    p.add_argument(
        "--safetensors",
        "-m",
        "--model",
        dest="source",
        default=DEFAULT_MODEL,
        help=f"checkpoint directory or hub repo id (default {DEFAULT_MODEL})",
    )
    p.add_argument("--prompt", "-p", default=None, help="prompt text (default: empty)")
    p.add_argument("--file", "-f", default=None, metavar="FILE", help="read the prompt from FILE (UTF-8)")
    p.add_argument(
        "--max-tokens",
        "-n",
        "--n-predict",
        dest="max_tokens",
        type=int,
        default=None,
        help=f"tokens to generate; -1: until end of text or the context is full (default "
        f"{DEFAULT_MAX_TOKENS}; in --chat, -1)",
    )
    p.add_argument(
        "--temperature",
        "--temp",
        type=float,
        default=None,
        help="sampling temperature, 0 is greedy (default: the checkpoint's, else 0.8)",
    )
    p.add_argument(
        "--top-k", type=int, default=None, help="0 turns it off (default: the checkpoint's, else 40)"
    )
    p.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="keep the most likely tokens up to this total probability; 1 turns it off "
        "(default: the checkpoint's, else 0.95)",
    )
    p.add_argument(
        "--min-p",
        type=float,
        default=None,
        help="drop tokens less likely than this fraction of the top one; 0 turns it off "
        "(default: the checkpoint's, else 0.05)",
    )
    p.add_argument(
        "--repeat-penalty",
        "--repetition-penalty",
        dest="repeat_penalty",
        type=float,
        default=None,
        help="1 turns it off (default: the checkpoint's, else 1.0)",
    )
    p.add_argument(
        "--seed",
        "-s",
        type=int,
        default=-1,
        help="sampling seed; -1 picks one and prints it on stderr (default -1)",
    )
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable; default none)")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-text tokens")
    p.add_argument(
        "--lookup",
        type=int,
        default=0,
        metavar="N",
        help="prompt-lookup decoding: draft up to N tokens per step from the context; greedy "
        "only (default 0: off)",
    )
    p.add_argument(
        "--ctx-size",
        "-c",
        dest="ctx",
        type=int,
        default=None,
        help="context length in tokens (default: the model's, at most 4096)",
    )
    add_load_flags(p, int)
    p.add_argument(
        "--chat",
        action="store_true",
        help="a conversation: without --prompt, read one user turn per line from stdin",
    )
    p.add_argument(
        "--system-prompt",
        "--system",
        dest="system_prompt",
        default=None,
        help="system message when the chat template is used (default none)",
    )
    p.add_argument(
        "--ignore-chat-template",
        "--raw",
        dest="raw",
        action="store_true",
        help="give --prompt to the model as it is, even when the checkpoint has a chat template",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of streaming")
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar, load summary or timings on stderr (PYRUSTML_LOG=error also)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="per-step timings on stderr, then the audit tables (also on with PYRUSTML_LOG=debug)",
    )
    p.add_argument("--version", action="version", version=f"pyrustml-infer {__version__}")
    return p  # fmt: skip


# ---- output helpers: every write survives a closed or replaced stream ------------------------


def _print_err(msg: str) -> None:
    if sys.stderr is not None:
        try:
            print(msg, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


def _fail(msg: str, code: int) -> int:
    _print_err(f"pyrustml-infer: error: {msg}")
    return code


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _debug() -> bool:
    # RUST_LOG: kept for users of the Rust engine this project replaces.
    return os.environ.get("PYRUSTML_LOG", "").lower() == "debug" or "rustml=debug" in os.environ.get(
        "RUST_LOG", ""
    )


def _quiet(args: argparse.Namespace) -> bool:
    return bool(args.quiet) or os.environ.get("PYRUSTML_LOG", "").lower() == "error"


def _setup_logging() -> None:
    level = os.environ.get("PYRUSTML_LOG", "").lower()
    if _debug():
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s", stream=sys.stderr)
    elif level in ("info", "warning", "error"):
        logging.basicConfig(level=level.upper(), format="%(name)s: %(message)s", stream=sys.stderr)
    # numpy's RuntimeWarnings (overflow in a sampler step) go to the log, not around the error line.
    logging.captureWarnings(True)
    if not (_debug() or level in ("info", "warning")):
        quiet = logging.getLogger("py.warnings")
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())  # else logging's last-resort handler prints them


# ---- checks made before anything loads --------------------------------------------------------


def _validate(args: argparse.Namespace) -> None:
    """Every option value, before the model loads: errors name the flag the user typed."""
    from .errors import PyrustmlError
    from .generate.options import check_generation_options
    from .io.values import INT32_MAX, MAX_THREADS, as_int

    # What only the CLI has: -1 as "no limit" and "a random seed", and the greedy rule for
    # --lookup stated in terms of the flags.
    if args.max_tokens is not None and args.max_tokens != -1 and args.max_tokens < 1:
        raise UsageError(f"--max-tokens must be >= 1, or -1 for no limit; got {args.max_tokens}")
    if args.seed < -1:
        raise UsageError(f"--seed must be >= 0, or -1 for a random seed; got {args.seed}")
    if args.stop is not None and any(not s for s in args.stop):
        raise UsageError("--stop needs a non-empty string")  # the API drops "": here it is a slip
    try:
        check_generation_options(
            max_tokens=None if args.max_tokens in (None, -1) else args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            repetition_penalty=args.repeat_penalty,
            seed=None if args.seed == -1 else args.seed,
            stop=args.stop,
            lookup=args.lookup,
            names=FLAG_NAMES,
        )
        # load()'s own ranges (generate.options.check_load_arguments), under the flags' names.
        if args.ctx is not None:
            as_int("--ctx-size", args.ctx, minimum=1, maximum=INT32_MAX)
        if args.threads is not None:
            as_int("--threads", args.threads, minimum=1, maximum=MAX_THREADS)
    except PyrustmlError as exc:
        raise UsageError(str(exc)) from None
    t = args.temperature
    if args.lookup and t is not None and t > 0:
        raise UsageError(f"--lookup needs greedy decoding: add --temp 0 (got --temp {t:g}), or drop --lookup")
    if args.prompt is not None and args.file is not None:
        raise UsageError("give the prompt with --prompt or --file, not both")
    if args.chat and args.json and args.prompt is None and args.file is None:
        raise UsageError("--chat --json needs the user's message: add --prompt TEXT (or --file FILE)")
    for flag, text in (("--prompt", args.prompt), ("--system-prompt", args.system_prompt),
                       *(("--stop", s) for s in args.stop or [])):  # fmt: skip
        if text is not None:
            _utf8(flag, text)


def _utf8(flag: str, text: str) -> None:
    """Arguments arrive decoded with surrogateescape: bytes that are not UTF-8 become lone
    surrogates, which no tokenizer can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        at = len(text[: exc.start].encode("utf-8", "surrogateescape"))
        raise UsageError(f"{flag} is not valid UTF-8 (byte {at} of it)") from None


def _read_prompt_file(path: str) -> str:
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(f"--file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--file {path} is not valid UTF-8 (byte {exc.start})") from None


def _check_source(source: str) -> str:
    """A path to a file gets its own message (the loader wants the directory)."""
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        if path.lower().endswith(".gguf"):
            raise UsageError(f"{source}: GGUF files are not supported yet; give a safetensors checkpoint "
                             "directory or a hub repo id")  # fmt: skip
        where = os.path.dirname(os.path.abspath(path))
        raise UsageError(f"{source} is a file: pass the directory that holds it ({where}) or a hub repo id")
    return path if os.path.isdir(path) else source


# ---- sampling options: explicit flags, else the checkpoint's, else llama.cpp's ---------------


def _options(args: argparse.Namespace, model: Any, chat: bool) -> dict[str, Any]:
    d: dict[str, float] = dict(getattr(model, "defaults", {}) or {})

    def pick(flag: float | None, key: str) -> float:
        return float(flag) if flag is not None else float(d.get(key, SAMPLER_DEFAULTS[key]))

    temperature = pick(args.temperature, "temperature")
    if args.lookup and temperature > 0:
        # --temp was not given (_validate refuses an explicit one): the checkpoint's default.
        _note(
            args, f"--lookup turns greedy decoding on (--temp 0; the checkpoint's default is {temperature:g})"
        )
        temperature = 0.0
    n = args.max_tokens if args.max_tokens is not None else (-1 if chat else DEFAULT_MAX_TOKENS)
    opts: dict[str, Any] = {
        "max_tokens": model.ctx if n == -1 else n,
        "temperature": temperature,
        "top_k": int(pick(args.top_k, "top_k")),
        "top_p": pick(args.top_p, "top_p"),
        "min_p": pick(args.min_p, "min_p"),
        "repetition_penalty": pick(args.repeat_penalty, "repetition_penalty"),
        "stop": list(args.stop) if args.stop else None,
        "ignore_eos": bool(args.ignore_eos),
        "lookup": int(args.lookup),
    }
    seed = args.seed
    if seed == -1 and temperature > 0:
        seed = secrets.randbits(32)
        _note(args, f"seed {seed} (--seed {seed} repeats this run)")
    opts["seed"] = None if seed == -1 else seed
    return opts


def _note(args: argparse.Namespace, msg: str) -> None:
    if not _quiet(args):
        _print_err(f"pyrustml-infer: {msg}")


# ---- loading ------------------------------------------------------------------------------


def _load(args: argparse.Namespace, source: str) -> Any:
    from . import load
    from .io.progress import Bar, wanted

    kwargs: dict[str, Any] = {"quant": args.quant, "threads": args.threads, "revision": args.revision}
    if args.ctx is not None:
        kwargs["ctx"] = args.ctx
    bar = Bar() if wanted(args.quiet) else None
    t0 = time.perf_counter()
    try:
        model = load(source, progress=bar, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    args.load_ms = (time.perf_counter() - t0) * 1000.0
    if not _quiet(args):
        _print_err(_load_summary(model, args, source))
    return model


def _load_summary(model: Any, args: argparse.Namespace, source: str) -> str:
    """One line: what was loaded, in what form, in how much memory, on which threads and kernels."""
    from . import kernels
    from .engine.host import physical_cores, rss_bytes

    threads = args.threads or getattr(getattr(model, "runtime", None), "threads", None) or physical_cores()
    name = os.path.basename(source.rstrip("/")) or source
    return (
        f"pyrustml-infer: loaded {name} ({args.quant.upper()}) in {args.load_ms / 1000:.2f} s: "
        f"{rss_bytes() / 2**20:.0f} MiB resident, {threads} threads, kernels {kernels.isa_active()}, "
        f"context {model.ctx}"
    )


# ---- running --------------------------------------------------------------------------------


def _messages(args: argparse.Namespace, prompt: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    return [*msgs, {"role": "user", "content": prompt}]


def _use_template(args: argparse.Namespace, model: Any, prompt: str) -> bool:
    """--chat always; a plain -p when the checkpoint has a chat template (as llama-cli and
    mlx_lm.generate do), unless --ignore-chat-template/--raw."""
    if args.chat:
        return True
    return model.chat_template is not None and not args.raw and prompt != ""


def _stream_out(stream: Any) -> Any:
    """Print a TextStream's pieces as they come; returns its Generation. Ctrl-C cancels it."""
    try:
        for piece in stream:
            _write(piece)
    except BaseException:
        stream.close()
        raise
    _write("\n")
    return stream.generation


def _after(args: argparse.Namespace, model: Any, g: Any, limit_asked: bool) -> None:
    if g.truncated and g.finish_reason == "length" and limit_asked:
        _note(args, f"stopped after {len(g.tokens)} tokens: the context of {model.ctx} tokens is full "
                    "(-c/--ctx-size sets it)")  # fmt: skip
    if not _quiet(args):
        _summary(args.load_ms, g)
    prof = getattr(getattr(model, "net", None), "prof", None)
    if prof is not None:
        _profile_tables(model, prof, args.source)


def _summary(load_ms: float, g: Any) -> None:
    t = g.timings

    def line(label: str, ms: float, n: int, unit: str) -> str:
        per = ms / n if n else 0.0
        rate = 1000.0 * n / ms if ms > 0 else 0.0
        return (
            f"{label:>17} = {ms:10.2f} ms / {n:5d} {unit} "
            f"({per:8.2f} ms per token, {rate:9.2f} tokens per second)"
        )

    _print_err(f"{'load time':>17} = {load_ms:10.2f} ms")
    _print_err(line("prompt eval time", t.prompt_ms, int(t.prompt_tokens), "tokens"))
    _print_err(line("eval time", t.eval_ms, int(t.eval_tokens), "runs  "))


def _print_step(rec: Any) -> None:
    from .perf.report import step_line

    _print_err(step_line(rec.as_dict()))


def _profile_tables(model: Any, prof: Any, source: str) -> None:
    """The audit's tables for the steps recorded since the last call (stderr)."""
    from .perf import report
    from .perf.audit import collect

    steps, prof.steps = prof.steps, []
    if steps:
        a = report.analyze(collect(model, source, steps, None, None))
        _print_err(report.markdown([a], title="pyrustml profile"))


def _json_doc(load_ms: float, g: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage names for the counts (ints); the token ids under their own names."""
    u = g.usage
    timings = {k: (int(v) if k.endswith("tokens") else v) for k, v in g.timings.as_dict().items()}
    return {
        "text": g.text,
        "finish_reason": g.finish_reason,
        "truncated": bool(g.truncated),
        "usage": {
            "prompt_tokens": int(u.prompt_tokens),
            "completion_tokens": int(u.completion_tokens),
            "total_tokens": int(u.total_tokens),
            "cached_tokens": int(u.cached_tokens),
        },
        "prompt_token_ids": [int(i) for i in g.prompt_tokens],
        "completion_token_ids": [int(i) for i in g.tokens],
        "seed": opts["seed"],
        "timings": {"load_ms": load_ms, **timings},
    }


def _one_shot(args: argparse.Namespace, model: Any, prompt: str) -> int:
    templated = _use_template(args, model, prompt)
    if args.system_prompt and not templated:
        raise UsageError("--system-prompt needs the chat template; this run does not use one")
    opts = _options(args, model, chat=False)
    if args.json:
        if templated:
            g = model.chat(_messages(args, prompt), **opts)
        else:
            g = model.generate(prompt, **opts)
        _write(json.dumps(_json_doc(args.load_ms, g, opts), ensure_ascii=False) + "\n")
        return 0
    if templated:
        stream = model.stream_chat(_messages(args, prompt), **opts)
    else:
        stream = model.stream(prompt, **opts)  # first: a prompt it refuses is not echoed
        _write(prompt)  # a raw continuation is printed after its prompt, as llama-cli does
    g = _stream_out(stream)
    _after(args, model, g, args.max_tokens != -1)
    return 0


def _read_turn(interactive: bool) -> str | None:
    """The next user line; None at end of input. Ctrl-C here raises KeyboardInterrupt."""
    if interactive:
        try:
            return input("> ")
        except EOFError:
            _write("\n")
            return None
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def _chat_loop(args: argparse.Namespace, model: Any) -> int:
    """User turns from stdin, one per line; the engine keeps the KV cache of the earlier turns."""
    if model.chat_template is None:
        raise UsageError(
            "this checkpoint has no chat template: --chat needs one (try --prompt without --chat)"
        )
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        _print_err(BANNER)
    else:
        # Strict decoding: a line that is not UTF-8 is reported, not turned into U+FFFD.
        reconfigure = getattr(sys.stdin, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="strict")
    opts = _options(args, model, chat=True)
    system = _messages(args, "")[:-1]
    messages = list(system)
    while True:
        try:
            text = _read_turn(interactive)
        except KeyboardInterrupt:
            _write("\n")
            return 130
        except UnicodeDecodeError as exc:
            bad = exc.object[exc.start : exc.start + 1].hex()
            raise UsageError(f"stdin is not valid UTF-8 (a byte 0x{bad} where text was expected)") from None
        if text is None:
            return 0
        if not text.strip():
            continue
        if text.strip() == "/clear":
            messages = list(system)
            _print_err("(conversation cleared)")
            continue
        messages.append({"role": "user", "content": text})
        try:
            g = _stream_out(model.stream_chat(messages, **opts))
        except KeyboardInterrupt:
            # This reply is cancelled; the turn is dropped and the prompt comes back.
            _write("\n")
            _print_err("(reply stopped; Ctrl-C again at the prompt, or Ctrl-D, exits)")
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": g.text})
        if g.truncated and g.finish_reason == "length":
            _note(args, f"the context of {model.ctx} tokens is full: /clear starts a new conversation")
        prof = getattr(getattr(model, "net", None), "prof", None)
        if prof is not None:
            _profile_tables(model, prof, args.source)


def _run(args: argparse.Namespace) -> int:
    _validate(args)
    source = _check_source(args.source)
    if args.chat and args.prompt is None and args.file is None and sys.stdin is None:
        raise UsageError("stdin is closed: --chat without --prompt reads the user's turns from stdin")
    prompt = args.prompt
    if args.file is not None:
        prompt = _read_prompt_file(args.file)
    model = _load(args, source)
    if (args.profile or _debug()) and hasattr(model, "enable_profiling"):
        prof = model.enable_profiling()
        prof.listener = _print_step
    if args.chat and prompt is None:
        return _chat_loop(args, model)
    return _one_shot(args, model, prompt or "")


def main(argv: list[str] | None = None) -> int:
    if sys.stdout is None:  # started with stdout closed (>&-): nowhere to put the text
        return _fail("stdout is closed: nowhere to write the text", 1)
    args = _parser().parse_args(argv)
    _setup_logging()
    # Imported after argument parsing so --help is instant and import errors are reported cleanly.
    try:
        from .errors import PyrustmlError
    except Exception as exc:
        return _fail(f"cannot import pyrustml: {exc}", 1)
    try:
        return _run(args)
    except UsageError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        _write_quietly("\n")
        _print_err("pyrustml-infer: interrupted")
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except PyrustmlError as exc:
        return _fail(str(exc), 1)
    except MemoryError:
        return _fail("out of memory", 1)
    except OSError as exc:
        if exc.errno == 9 and sys.stdout is not None:  # EBADF: stdout's descriptor was closed
            return _fail("stdout is closed: nowhere to write the text", 1)
        return _fail(str(exc), 1)
    except Exception as exc:  # a bug of ours: still one line, the traceback only when asked for
        if _debug():
            import traceback

            traceback.print_exc()
        return _fail(f"internal error ({type(exc).__name__}: {exc}); PYRUSTML_LOG=debug shows where", 1)


def _write_quietly(text: str) -> None:
    try:
        _write(text)
    except (OSError, ValueError, AttributeError):
        pass


def _stdout_closed() -> int:
    """The reader of stdout went away (`| head`): stop quietly, as a program killed by SIGPIPE
    would. stdout now writes to /dev/null, so the interpreter's last flush of the text it could
    not deliver raises nothing at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
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
