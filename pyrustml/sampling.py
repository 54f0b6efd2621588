"""Sampling settings and the sampler: its own seeded generator, no global state.

Order of the logits processors, as transformers applies them: repetition penalty, then
temperature, top-k, top-p, min-p; then a draw. temperature <= 0 means greedy (argmax).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import NumericalError


class SamplingParams:
    """Validated generation options; None means "take the checkpoint's default"."""

    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repetition_penalty: float
    seed: int | None
    ignore_eos: bool  # keep generating past eos ids (benchmarks; llama.cpp's --ignore-eos)

    def __init__(
        self,
        max_tokens: int = 16,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if not isinstance(temperature, int | float) or math.isnan(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
        if math.isinf(temperature):
            raise ValueError("temperature must be finite")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
        if not isinstance(top_p, int | float) or not 0.0 <= top_p <= 1.0:
            raise ValueError(f"top_p must lie in [0, 1], got {top_p!r}")
        if not isinstance(min_p, int | float) or not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must lie in [0, 1], got {min_p!r}")
        if not isinstance(repetition_penalty, int | float) or not (
            math.isfinite(repetition_penalty) and repetition_penalty > 0
        ):
            raise ValueError(f"repetition_penalty must be a positive number, got {repetition_penalty!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.max_tokens = max_tokens
        self.temperature = float(temperature)
        self.top_k = top_k
        self.top_p = float(top_p)
        self.min_p = float(min_p)
        self.repetition_penalty = float(repetition_penalty)
        self.ignore_eos = bool(ignore_eos)
        self.seed = seed

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def needs_logits(self) -> bool:
        """False when the fused argmax in C gives the answer without any logits in Python."""
        return not self.greedy or self.repetition_penalty != 1.0


class Sampler:
    params: SamplingParams
    rng: np.random.Generator

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def sample(self, logits: np.ndarray, history: list[int]) -> int:
        """One token from a (vocab,) float32 logits vector (modified in place)."""
        p = self.params
        if not bool(np.isfinite(logits).all()):
            raise NumericalError("the logits hold NaN or Inf")
        if p.repetition_penalty != 1.0 and history:
            # As transformers: divide positive logits by the penalty, multiply negative ones.
            seen = np.unique(np.asarray(history, dtype=np.int64))
            vals = logits[seen]
            logits[seen] = np.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        if p.greedy:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / p.temperature
        keep = np.ones(z.shape[0], dtype=bool)
        if 0 < p.top_k < z.shape[0]:
            kth = np.partition(z, -p.top_k)[-p.top_k]
            keep &= z >= kth
        probs = _softmax(z, keep)
        if p.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            csum = np.cumsum(probs[order])
            # Keep the smallest prefix whose mass reaches top_p (at least one token).
            cut = int(np.searchsorted(csum, p.top_p, side="left")) + 1
            drop = order[cut:]
            keep[drop] = False
            probs = _softmax(z, keep)
        if p.min_p > 0.0:
            keep &= probs >= p.min_p * float(probs.max())
            probs = _softmax(z, keep)
        return int(self.rng.choice(probs.shape[0], p=probs))


def _softmax(z: np.ndarray, keep: np.ndarray) -> np.ndarray:
    m = float(z[keep].max())
    e = np.where(keep, np.exp(z - m), 0.0)
    out: np.ndarray = e / e.sum()
    return out
