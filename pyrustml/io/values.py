"""The accepted values of the sampling options, one home for every boundary that takes them:
the API's arguments (generate.options), the CLI's flags (cli) and a checkpoint's
generation_config.json (io.config). Each check takes the name to show, so an error names what
the user wrote (`top_p`, `--top-p`, or the file's key), and every boundary agrees at the edges.

bool is refused where a number is meant (True is an int to Python, never a count here). Floats
are checked in the form the sampler uses them: temperature and repetition_penalty divide
float32 logits, so their reciprocals must stay finite and normal in float32 (5e-324 would turn
every probability into NaN).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from ..errors import OptionError, OptionTypeError

MAX_LOOKUP: Final = 64  # prompt-lookup draft tokens per verify pass (a batched pass of up to 65 rows)
MAX_TOP_LOGPROBS: Final = 20  # OpenAI's bound
MIN_TEMPERATURE: Final = 1e-6  # below it 1/t overflows float32 for logits of ordinary size
PENALTY_RANGE: Final = (1e-6, 1e6)
MAX_THREADS: Final = 256  # as engine.pool
INT32_MAX: Final = (1 << 31) - 1
INT63_MAX: Final = (1 << 63) - 1


def show(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _is_bool(v: object) -> bool:
    return isinstance(v, bool | np.bool_)


def as_int(name: str, v: object, *, minimum: int, maximum: int) -> int:
    """An int (or numpy integer, never a bool) in [minimum, maximum]."""
    if _is_bool(v) or not isinstance(v, int | np.integer):
        raise OptionTypeError(f"{name} must be an integer, got {type(v).__name__} {show(v)}")
    i = int(v)
    if not minimum <= i <= maximum:
        raise OptionError(f"{name} must be an integer in [{minimum}, {maximum}], got {show(i)}")
    return i


def as_float(name: str, v: object) -> float:
    """A finite number (int, float, numpy integer or float; never a bool) as a Python float."""
    if _is_bool(v) or not isinstance(v, int | float | np.integer | np.floating):
        raise OptionTypeError(f"{name} must be a number, got {type(v).__name__} {show(v)}")
    try:
        f = float(v)
    except OverflowError:  # an int of 400 digits
        raise OptionError(f"{name} must be a finite number, got {show(v)}") from None
    if not math.isfinite(f):
        raise OptionError(f"{name} must be a finite number, got {show(v)}")
    return f


def as_bool(name: str, v: object) -> bool:
    if not _is_bool(v):
        raise OptionTypeError(f"{name} must be True or False, got {type(v).__name__} {show(v)}")
    return bool(v)


def check_temperature(name: str, v: object) -> float:
    t = as_float(name, v)
    if t < 0 or 0 < t < MIN_TEMPERATURE:
        raise OptionError(
            f"{name} must be 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {show(v)}"
            + (" (that small a temperature overflows the sampler; use 0 for greedy)" if t > 0 else "")
        )
    return t


def check_probability(name: str, v: object) -> float:
    p = as_float(name, v)
    if not 0.0 <= p <= 1.0:
        raise OptionError(f"{name} must lie in [0, 1], got {show(v)}")
    return p


def check_penalty(name: str, v: object) -> float:
    r = as_float(name, v)
    lo, hi = PENALTY_RANGE
    if not lo <= r <= hi:
        raise OptionError(f"{name} must lie in [{lo:g}, {hi:g}], got {show(v)}")
    return r
