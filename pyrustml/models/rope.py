"""RoPE frequencies from a config: the inv_freq table (head_dim / 2 float32 values) that
libq8's q8_rope_freq turns pairs by, computed as transformers computes it, so every scaling
variant is data and the kernel has one code path.

Config keys, both styles: transformers 4.x `rope_theta` + `rope_scaling` ({"rope_type" or
"type": ..., parameters}) and transformers 5 `rope_parameters` ({"rope_type", "rope_theta",
parameters}). Implemented: `default`; `linear` (inv_freq / factor: positions divided by the
factor); `llama3` (wavelengths above original_max_position_embeddings / low_freq_factor are
divided by the factor, those below original / high_freq_factor kept, and those between
interpolated smoothly). Refused with UnsupportedModelError: `yarn`, `longrope`, `dynamic` and
any other type (they change attention scaling or depend on the sequence length), and
partial_rotary_factor != 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from ..io.config import F32_MAX, Fields

IMPLEMENTED = ("default", "linear", "llama3")
MIN_BASE = 1.0 + 1e-6  # a base at or below 1 gives no rotation, or growing frequencies


def check_theta(where: str, key: str, v: object) -> float:
    """A RoPE base as float32 holds it: above 1 and finite (1e300 would become inf, and every
    frequency after the first 0: a model that loads and computes nonsense)."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not MIN_BASE <= v <= F32_MAX:
        raise ModelFormatError(
            f"{where}: {key} must be a number in ({MIN_BASE - 1e-6:g}, {F32_MAX:.3g}] "
            f"(a float32 RoPE base above 1), got {str(v)[:40]}"
        )
    return float(v)


class Rope:
    """One RoPE variant: the base, the type and the type's parameters."""

    theta: float
    kind: str
    params: Fields

    def __init__(self, theta: float, kind: str, params: Fields) -> None:
        self.theta = theta
        self.kind = kind
        self.params = params

    def inv_freq(self, head_dim: int) -> np.ndarray:
        """The head_dim / 2 float32 frequencies, with transformers' float32 roundings: torch's
        `scalar / t` is `t.reciprocal() * scalar` and Python scalars are rounded to float32."""
        f32 = np.float32
        e = np.arange(0, head_dim, 2, dtype=np.int64).astype(f32) / f32(head_dim)
        inv = f32(1.0) / np.power(f32(self.theta), e, dtype=f32)
        if self.kind == "linear":
            inv = inv / f32(self.params.float_("factor"))
        elif self.kind == "llama3":
            inv = _llama3(inv, self.params)
        out = np.ascontiguousarray(inv, dtype=f32)
        if not bool(np.isfinite(out).all()):
            raise ModelFormatError(f"{self.params.where}: the RoPE parameters give non-finite frequencies")
        return out


def _llama3(inv: np.ndarray, p: Fields) -> np.ndarray:
    f32 = np.float32
    factor = p.float_("factor")
    low = p.float_("low_freq_factor")
    high = p.float_("high_freq_factor")
    old = p.float_("original_max_position_embeddings")
    if high <= low:
        raise ModelFormatError(f"{p.where}: high_freq_factor must exceed low_freq_factor")
    low_wavelen, high_wavelen = f32(old / low), f32(old / high)
    wavelen = (f32(1.0) / inv) * f32(2 * math.pi)
    scaled = np.where(wavelen > low_wavelen, inv / f32(factor), inv).astype(f32)
    smooth = ((f32(1.0) / wavelen) * f32(old) - f32(low)) / f32(high - low)
    smoothed = (f32(1.0) - smooth) * scaled / f32(factor) + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(f32)


def parse_rope(f: Fields, default_theta: float) -> Rope:
    """The RoPE variant a (text) config describes, in either key style."""
    partial = f.data.get("partial_rotary_factor", 1.0)
    if partial != 1.0:
        raise UnsupportedModelError(f"{f.where}: partial_rotary_factor {partial!r} is not supported")
    params = f.data.get("rope_parameters")
    if params is not None:  # transformers 5
        if not isinstance(params, dict):
            raise ModelFormatError(f"{f.where}: 'rope_parameters' must be an object")
        p = Fields(params, f"{f.where} rope_parameters")
        theta = check_theta(p.where, "rope_theta", p.data.get("rope_theta", default_theta))
        return Rope(theta, _kind(p), p)
    theta = check_theta(f.where, "rope_theta", f.data.get("rope_theta", default_theta))
    scaling = f.data.get("rope_scaling")
    if scaling is None:
        return Rope(theta, "default", Fields({}, f.where))
    if not isinstance(scaling, dict):
        raise ModelFormatError(f"{f.where}: 'rope_scaling' must be an object or null")
    p = Fields(scaling, f"{f.where} rope_scaling")
    return Rope(theta, _kind(p), p)


def _kind(p: Fields) -> str:
    kind: Any = p.data.get("rope_type", p.data.get("type", "default"))
    if kind not in IMPLEMENTED:
        raise UnsupportedModelError(
            f"{p.where}: rope type {kind!r} is not supported (supported: {', '.join(IMPLEMENTED)})"
        )
    return str(kind)
