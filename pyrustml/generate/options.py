"""Checking the public arguments at the boundary: every wrong type or value becomes one of the
family's errors naming the argument, before any compiled (mypyc) code sees it.

The compiled modules declare `int` and `float` parameters; given a str or a numpy scalar they
would raise their own bare TypeError. These functions take `object`, accept what a Python caller
reasonably passes (numpy integers where an int is meant, numpy floats where a float is meant, a
str where a list of stop strings is meant, an os.PathLike source) and hand back plain Python
values. The ranges of the values are io.values's, shared with the CLI and the config files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ..errors import OptionError, OptionTypeError
from ..io.values import (
    INT32_MAX,
    INT63_MAX,
    MAX_LOOKUP,
    MAX_THREADS,
    MAX_TOP_LOGPROBS,
    as_bool,
    as_int,
    check_penalty,
    check_probability,
    check_temperature,
    show,
)

MAX_STOPS: Final = 64
MAX_STOP_CHARS: Final = 4096  # the stop scan looks back this far every piece: keep it bounded


def as_stops(v: object) -> list[str]:
    """stop: None, a string, or a list/tuple of strings (empty strings are dropped)."""
    if v is None:
        return []
    items: list[object]
    if isinstance(v, str):
        items = [v]
    elif isinstance(v, list | tuple):
        items = list(v)
    else:
        raise OptionTypeError(f"stop must be a string or a list of strings, got {type(v).__name__}")
    if len(items) > MAX_STOPS:
        raise OptionError(f"stop holds {len(items)} strings; at most {MAX_STOPS} are allowed")
    out: list[str] = []
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise OptionTypeError(f"stop[{i}] must be a string, got {type(s).__name__} {show(s)}")
        if len(s) > MAX_STOP_CHARS:
            raise OptionError(f"stop[{i}] has {len(s)} characters; at most {MAX_STOP_CHARS} are allowed")
        if s:
            out.append(s)
    return out


@dataclass(eq=False)
class GenerationOptions:
    """Checked generation arguments; None means "not given: take the checkpoint's default"."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    lookup: int = 0
    logprobs: bool = False
    top_logprobs: int = 0


def check_generation_options(
    *,
    max_tokens: object = None,
    temperature: object = None,
    top_k: object = None,
    top_p: object = None,
    min_p: object = None,
    repetition_penalty: object = None,
    seed: object = None,
    stop: object = None,
    ignore_eos: object = False,
    lookup: object = 0,
    logprobs: object = False,
    top_logprobs: object = None,
    names: Mapping[str, str] | None = None,
) -> GenerationOptions:
    """The arguments of generate / stream / chat, checked and normalized (see the module doc).
    `names` shows an argument under another name in errors (the CLI's flags)."""

    def n(key: str) -> str:
        return names.get(key, key) if names else key

    o = GenerationOptions()
    if max_tokens is not None:
        o.max_tokens = as_int(n("max_tokens"), max_tokens, minimum=1, maximum=INT63_MAX)
    if temperature is not None:
        o.temperature = check_temperature(n("temperature"), temperature)
    if top_k is not None:
        o.top_k = as_int(n("top_k"), top_k, minimum=0, maximum=INT63_MAX)
    if top_p is not None:
        o.top_p = check_probability(n("top_p"), top_p)
    if min_p is not None:
        o.min_p = check_probability(n("min_p"), min_p)
    if repetition_penalty is not None:
        o.repetition_penalty = check_penalty(n("repetition_penalty"), repetition_penalty)
    if seed is not None:
        o.seed = as_int(n("seed"), seed, minimum=0, maximum=(1 << 128) - 1)
    o.stop = as_stops(stop)
    o.ignore_eos = as_bool(n("ignore_eos"), ignore_eos)
    o.lookup = as_int(n("lookup"), lookup, minimum=0, maximum=MAX_LOOKUP)
    o.logprobs = as_bool(n("logprobs"), logprobs) if logprobs is not None else False
    if top_logprobs is not None:
        o.top_logprobs = as_int(n("top_logprobs"), top_logprobs, minimum=0, maximum=MAX_TOP_LOGPROBS)
        if o.top_logprobs and not o.logprobs:
            raise OptionError(f"{n('top_logprobs')} needs {n('logprobs')}=True")
    return o


@dataclass(eq=False)
class LoadArguments:
    """Checked arguments of pyrustml.load."""

    source: str
    quant: str
    threads: int | None
    revision: str | None
    ctx: int | None
    parallel: int | None


def check_source(source: object) -> str:
    """A checkpoint directory or hub repo id: str or os.PathLike, `~` expanded."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise OptionTypeError(
            f"source must be a directory path or a hub repo id (str or os.PathLike), "
            f"got {type(source).__name__} {show(source)}"
        )
    if not source.strip():
        raise OptionError("source is empty: give a checkpoint directory or a hub repo id")
    if "\x00" in source:
        raise OptionError(f"source holds a NUL character: {show(source)}")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        raise OptionError(f"source is not valid Unicode (a lone surrogate): {show(source)}") from None
    return os.path.expanduser(source)


def check_load_arguments(
    source: object,
    quant: object = "q8_0",
    threads: object = None,
    revision: object = None,
    ctx: object = None,
    parallel: object = None,
) -> LoadArguments:
    """The arguments of pyrustml.load, checked for type and range (quant's value is the
    loader's to check: it knows which quantizations it has)."""
    src = check_source(source)
    if not isinstance(quant, str):
        raise OptionTypeError(
            f"quant must be a string such as 'q8_0', got {type(quant).__name__} {show(quant)}"
        )
    t = None if threads is None else as_int("threads", threads, minimum=1, maximum=MAX_THREADS)
    if revision is not None and not isinstance(revision, str):
        raise OptionTypeError(
            f"revision must be a string or None, got {type(revision).__name__} {show(revision)}"
        )
    if isinstance(revision, str) and (not revision or "\x00" in revision):
        raise OptionError(f"revision must be a non-empty branch, tag or commit, got {show(revision)}")
    c = None if ctx is None else as_int("ctx", ctx, minimum=1, maximum=INT32_MAX)
    p = None if parallel is None else as_int("parallel", parallel, minimum=1, maximum=4096)
    return LoadArguments(src, quant, t, revision, c, p)
