"""Reading config.json and generation_config.json with checks that name the bad field."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from ..errors import ModelFormatError, PyrustmlError, UnsupportedModelError
from .values import INT32_MAX, INT63_MAX, as_int, check_penalty, check_probability, check_temperature

FLOAT_MAX = sys.float_info.max
# Layer counts: far above any real model (Gemma 3 27B has 62), and small enough that a hostile
# config cannot make the per-layer tables of a Config enormous before a tensor is missing.
MAX_LAYERS = 1 << 12
# float32's largest finite value and smallest normal one: every float the model computes with is
# a float32 in libq8, so a value finite in Python's float64 can still become inf or 0 there.
F32_MAX = 3.4028234663852886e38
F32_TINY = 1.1754943508222875e-38


def read_json(path: str, *, required: bool) -> dict[str, Any]:
    if not os.path.isfile(path):
        if required:
            raise ModelFormatError(f"{os.path.basename(path)} is missing from {os.path.dirname(path)}")
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and numbers past Python's 4300-digit limit;
        # RecursionError, arrays nested thousands deep.
        raise ModelFormatError(f"cannot read {os.path.basename(path)}: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{os.path.basename(path)} is not a JSON object")
    return data


class Fields:
    """Typed access to one JSON object; every error names the file and the key."""

    data: dict[str, Any]
    where: str

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def _err(self, key: str, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: {key!r} {what}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def int_(
        self, key: str, default: int | None = None, *, minimum: int = 1, maximum: int = INT32_MAX
    ) -> int:
        """An integer in [minimum, maximum]. The default maximum, 2^31 - 1, is far above every
        real model's sizes and keeps hostile values from reaching numpy and C as huge sizes."""
        v = self.data.get(key, default)
        if v is None:
            raise self._err(key, "is missing")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._err(key, f"must be an integer, got {repr(v)[:40]}")
        if v < minimum:
            raise self._err(key, f"must be >= {minimum}, got {v}")
        if v > maximum:
            raise self._err(key, f"must be <= {maximum}, got {str(v)[:40]}")
        return v

    def float_(self, key: str, default: float | None = None, *, positive: bool = True) -> float:
        v = self.data.get(key, default)
        if v is None:
            raise self._err(key, "is missing")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._err(key, f"must be a number, got {repr(v)[:40]}")
        # Compared before float(): an integer of 400 digits would raise OverflowError there.
        if not -FLOAT_MAX <= v <= FLOAT_MAX or (positive and v <= 0):
            raise self._err(
                key, f"must be a finite{' positive' if positive else ''} number, got {str(v)[:40]}"
            )
        f = float(v)
        if not math.isfinite(f) or (positive and f <= 0.0):
            raise self._err(key, f"must be a finite{' positive' if positive else ''} number, got {v!r}")
        return f

    def float32_(
        self, key: str, default: float | None = None, *, low: float = F32_TINY, high: float = F32_MAX
    ) -> float:
        """A positive number that stays what it says once libq8 holds it as a float32: a normal
        float32 in [low, high] (1e300 would become inf, 1e-300 zero)."""
        f = self.float_(key, default)
        if not F32_TINY <= f <= F32_MAX:
            raise self._err(
                key, f"must be representable as a float32 ({F32_TINY:.3g} .. {F32_MAX:.3g}), got {f!r}"
            )
        if not low <= f <= high:
            raise self._err(key, f"must lie in [{low:g}, {high:g}], got {f!r}")
        return f

    def opt_float(self, key: str) -> float | None:
        if not self.has(key):
            return None
        return self.float_(key)

    def opt_float32(self, key: str) -> float | None:
        if not self.has(key):
            return None
        return self.float32_(key)

    def str_(self, key: str, default: str | None = None) -> str:
        v = self.data.get(key, default)
        if not isinstance(v, str):
            raise self._err(key, f"must be a string, got {v!r}")
        return v

    def bool_(self, key: str, default: bool) -> bool:
        """true or false; absent or null is the default. A string such as "false" is an error,
        never truthy."""
        v = self.data.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self._err(key, f"must be true or false, got {v!r}")
        return v

    def int_list(self, key: str) -> list[int]:
        """An int or a list of ints (eos_token_id comes in both shapes); [] when absent."""
        v = self.data.get(key)
        if v is None:
            return []
        if isinstance(v, int) and not isinstance(v, bool):
            return [v]
        if isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            return [int(i) for i in v]
        raise self._err(key, f"must be an integer or a list of integers, got {v!r}")


def refuse_unsupported(f: Fields, refused: dict[str, tuple[object, ...]]) -> None:
    """Keys that change the computation in ways pyrustml does not implement: present with a
    value other than the accepted ones (their defaults), the model is refused, never run wrong."""
    for key, accepted in refused.items():
        if key in f.data and not any(_same(f.data[key], ok) for ok in accepted):
            raise UnsupportedModelError(f"{f.where}: {key}={str(f.data[key])[:60]} is not supported")


def _same(a: object, b: object) -> bool:
    # 1 == True in Python; a config's true must not pass for an accepted 1.0 (or the reverse).
    return (type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and not isinstance(a, bool) and isinstance(b, float) and a == b
    )


# Sampling defaults a generation_config.json may set, with their checks (as the API's arguments).
GENERATION_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


def generation_defaults(f: Fields) -> dict[str, float]:
    """Sampling defaults from generation_config.json, each checked by the API's own rules
    (io.values): a wrong type ("0.7") or an impossible value (top_k 1e400, NaN, temperature -1)
    is a ModelFormatError naming the file and the key, not silently dropped. do_sample false
    means greedy."""
    out: dict[str, float] = {}
    for key in GENERATION_KEYS:
        if not f.has(key):
            continue
        v = f.data[key]
        if key == "top_k" and isinstance(v, float) and v.is_integer():
            v = int(v) if abs(v) <= INT63_MAX else v  # 50.0 is a count; 1e400 stays refused
        try:
            if key == "top_k":
                out[key] = float(as_int(key, v, minimum=0, maximum=INT63_MAX))
            elif key == "temperature":
                out[key] = check_temperature(key, v)
            elif key == "repetition_penalty":
                out[key] = check_penalty(key, v)
            else:
                out[key] = check_probability(key, v)
        except PyrustmlError as exc:
            raise f._err(key, str(exc).removeprefix(key + " ")) from None
    if f.has("do_sample"):
        if f.bool_("do_sample", True) is False:
            out["temperature"] = 0.0
    return out
