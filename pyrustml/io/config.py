"""Reading config.json and generation_config.json with checks that name the bad field."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from ..errors import ModelFormatError

INT32_MAX = (1 << 31) - 1
FLOAT_MAX = sys.float_info.max
# Layer counts: far above any real model (Gemma 3 27B has 62), and small enough that a hostile
# config cannot make the per-layer tables of a Config enormous before a tensor is missing.
MAX_LAYERS = 1 << 12


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

    def opt_float(self, key: str) -> float | None:
        if not self.has(key):
            return None
        return self.float_(key)

    def str_(self, key: str, default: str | None = None) -> str:
        v = self.data.get(key, default)
        if not isinstance(v, str):
            raise self._err(key, f"must be a string, got {v!r}")
        return v

    def bool_(self, key: str, default: bool) -> bool:
        v = self.data.get(key, default)
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
