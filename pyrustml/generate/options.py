"""Checking the public arguments at the boundary: every wrong type or value becomes one of the
family's errors naming the argument, before any compiled (mypyc) code sees it.

The compiled modules declare `int` and `float` parameters; given a str or a numpy scalar they
would raise their own bare TypeError. These functions take `object`, accept what a Python caller
reasonably passes (numpy integers where an int is meant, numpy floats where a float is meant, a
str where a list of stop strings is meant, an os.PathLike source) and hand back plain Python
values. bool is refused where a number is meant (True is an int to Python, never a count here).

Floats are checked in the form the sampler uses them: temperature and repetition_penalty divide
float32 logits, so their reciprocals must stay finite and normal in float32 (5e-324 would turn
every probability into NaN).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from ..errors import OptionError, OptionTypeError

MAX_LOOKUP: Final = 64  # as generate.sampling: draft tokens per verify pass
MAX_TOP_LOGPROBS: Final = 20  # OpenAI's bound
MAX_STOPS: Final = 64
MAX_STOP_CHARS: Final = 4096  # the stop scan looks back this far every piece: keep it bounded
MIN_TEMPERATURE: Final = 1e-6  # below it 1/t overflows float32 for logits of ordinary size
PENALTY_RANGE: Final = (1e-6, 1e6)
MAX_THREADS: Final = 256  # as engine.pool
INT32_MAX: Final = (1 << 31) - 1
INT63_MAX: Final = (1 << 63) - 1


def _show(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _is_bool(v: object) -> bool:
    return isinstance(v, bool | np.bool_)


def as_int(name: str, v: object, *, minimum: int, maximum: int) -> int:
    """An int (or numpy integer, never a bool) in [minimum, maximum]."""
    if _is_bool(v) or not isinstance(v, int | np.integer):
        raise OptionTypeError(f"{name} must be an integer, got {type(v).__name__} {_show(v)}")
    i = int(v)
    if not minimum <= i <= maximum:
        raise OptionError(f"{name} must be an integer in [{minimum}, {maximum}], got {_show(i)}")
    return i


def as_float(name: str, v: object) -> float:
    """A finite number (int, float, numpy integer or float; never a bool) as a Python float."""
    if _is_bool(v) or not isinstance(v, int | float | np.integer | np.floating):
        raise OptionTypeError(f"{name} must be a number, got {type(v).__name__} {_show(v)}")
    try:
        f = float(v)
    except OverflowError:  # an int of 400 digits
        raise OptionError(f"{name} must be a finite number, got {_show(v)}") from None
    if not math.isfinite(f):
        raise OptionError(f"{name} must be a finite number, got {_show(v)}")
    return f


def as_bool(name: str, v: object) -> bool:
    if not _is_bool(v):
        raise OptionTypeError(f"{name} must be True or False, got {type(v).__name__} {_show(v)}")
    return bool(v)


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
            raise OptionTypeError(f"stop[{i}] must be a string, got {type(s).__name__} {_show(s)}")
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


def check_temperature(v: object) -> float:
    t = as_float("temperature", v)
    if t < 0 or 0 < t < MIN_TEMPERATURE:
        raise OptionError(
            f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {_show(v)}"
            + (" (that small a temperature overflows the sampler; use 0 for greedy)" if t > 0 else "")
        )
    return t


def check_probability(name: str, v: object) -> float:
    p = as_float(name, v)
    if not 0.0 <= p <= 1.0:
        raise OptionError(f"{name} must lie in [0, 1], got {_show(v)}")
    return p


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
) -> GenerationOptions:
    """The arguments of generate / stream / chat, checked and normalized (see the module doc)."""
    o = GenerationOptions()
    if max_tokens is not None:
        o.max_tokens = as_int("max_tokens", max_tokens, minimum=1, maximum=INT63_MAX)
    if temperature is not None:
        o.temperature = check_temperature(temperature)
    if top_k is not None:
        o.top_k = as_int("top_k", top_k, minimum=0, maximum=INT63_MAX)
    if top_p is not None:
        o.top_p = check_probability("top_p", top_p)
    if min_p is not None:
        o.min_p = check_probability("min_p", min_p)
    if repetition_penalty is not None:
        r = as_float("repetition_penalty", repetition_penalty)
        lo, hi = PENALTY_RANGE
        if not lo <= r <= hi:
            raise OptionError(
                f"repetition_penalty must lie in [{lo:g}, {hi:g}], got {_show(repetition_penalty)}"
            )
        o.repetition_penalty = r
    if seed is not None:
        o.seed = as_int("seed", seed, minimum=0, maximum=(1 << 128) - 1)
    o.stop = as_stops(stop)
    o.ignore_eos = as_bool("ignore_eos", ignore_eos)
    o.lookup = as_int("lookup", lookup, minimum=0, maximum=MAX_LOOKUP)
    o.logprobs = as_bool("logprobs", logprobs) if logprobs is not None else False
    if top_logprobs is not None:
        o.top_logprobs = as_int("top_logprobs", top_logprobs, minimum=0, maximum=MAX_TOP_LOGPROBS)
        if o.top_logprobs and not o.logprobs:
            raise OptionError("top_logprobs needs logprobs=True")
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
            f"got {type(source).__name__} {_show(source)}"
        )
    if not source.strip():
        raise OptionError("source is empty: give a checkpoint directory or a hub repo id")
    if "\x00" in source:
        raise OptionError(f"source holds a NUL character: {_show(source)}")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        raise OptionError(f"source is not valid Unicode (a lone surrogate): {_show(source)}") from None
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
            f"quant must be a string such as 'q8_0', got {type(quant).__name__} {_show(quant)}"
        )
    t = None if threads is None else as_int("threads", threads, minimum=1, maximum=MAX_THREADS)
    if revision is not None and not isinstance(revision, str):
        raise OptionTypeError(
            f"revision must be a string or None, got {type(revision).__name__} {_show(revision)}"
        )
    if isinstance(revision, str) and (not revision or "\x00" in revision):
        raise OptionError(f"revision must be a non-empty branch, tag or commit, got {_show(revision)}")
    c = None if ctx is None else as_int("ctx", ctx, minimum=1, maximum=INT32_MAX)
    p = None if parallel is None else as_int("parallel", parallel, minimum=1, maximum=4096)
    return LoadArguments(src, quant, t, revision, c, p)
