"""Sampling settings and the sampler: its own seeded generator, no global state.

Order of the logits processors, as transformers applies them: repetition penalty, then
temperature, top-k, top-p, min-p; then a draw. temperature <= 0 means greedy (argmax).
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.kernels import expsum, topk
from ..errors import NumericalError, OptionError

MAX_LOOKUP = 64  # draft tokens per verify pass (a batched pass of up to 65 rows)
FIRST_CANDIDATES = 64  # top-p / min-p without top-k: candidates taken first (x8 when short)


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
    lookup: int  # prompt-lookup draft tokens per step (0: off); greedy decoding only

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
        lookup: int = 0,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise OptionError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if not isinstance(temperature, int | float) or math.isnan(temperature) or temperature < 0:
            raise OptionError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
        if math.isinf(temperature):
            raise OptionError("temperature must be finite")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise OptionError(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
        if not isinstance(top_p, int | float) or not 0.0 <= top_p <= 1.0:
            raise OptionError(f"top_p must lie in [0, 1], got {top_p!r}")
        if not isinstance(min_p, int | float) or not 0.0 <= min_p <= 1.0:
            raise OptionError(f"min_p must lie in [0, 1], got {min_p!r}")
        if not isinstance(repetition_penalty, int | float) or not (
            math.isfinite(repetition_penalty) and repetition_penalty > 0
        ):
            raise OptionError(f"repetition_penalty must be a positive number, got {repetition_penalty!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise OptionError(f"seed must be a non-negative integer, got {seed!r}")
        self.max_tokens = max_tokens
        self.temperature = float(temperature)
        self.top_k = top_k
        self.top_p = float(top_p)
        self.min_p = float(min_p)
        self.repetition_penalty = float(repetition_penalty)
        self.ignore_eos = bool(ignore_eos)
        if isinstance(lookup, bool) or not isinstance(lookup, int) or not 0 <= lookup <= MAX_LOOKUP:
            raise OptionError(f"lookup must be an integer in [0, {MAX_LOOKUP}], got {lookup!r}")
        self.lookup = lookup
        if lookup and self.needs_logits:
            raise OptionError("lookup needs greedy decoding (temperature 0, no repetition penalty)")
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
        if p.repetition_penalty != 1.0 and history:
            # As transformers: divide positive logits by the penalty, multiply negative ones.
            seen = np.unique(np.asarray(history, dtype=np.int64))
            vals = logits[seen]
            logits[seen] = np.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        vocab = int(logits.shape[0])
        top_k = p.top_k if 0 < p.top_k < vocab else 0
        if not p.greedy and (top_k or p.top_p < 1.0 or p.min_p > 0.0):
            idx, keep = self.candidates(logits)
            return int(idx[int(self.rng.choice(keep.shape[0], p=keep))])
        if not bool(np.isfinite(logits).all()):
            raise NumericalError("the logits hold NaN or Inf")
        if p.greedy:
            return int(np.argmax(logits))
        # Plain temperature sampling needs the whole distribution.
        z = logits.astype(np.float64) / p.temperature
        return int(self.rng.choice(vocab, p=_softmax(z, np.ones(vocab, dtype=bool))))

    def candidates(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """top-k / top-p / min-p from the largest logits only: libq8 selects them (and sums the
        softmax normalizer over the whole vocabulary when no top-k bounds it), so Python sees
        tens of values instead of the vocabulary. Without top-k the candidate count grows
        until top-p's mass and min-p's threshold are reached inside it; the result is the one
        the whole sorted distribution gives. Returns (token ids, probabilities), best first."""
        p = self.params
        vocab = int(logits.shape[0])
        top_k = p.top_k if 0 < p.top_k < vocab else 0
        inv_t = 1.0 / p.temperature
        k = top_k if top_k else min(vocab, FIRST_CANDIDATES)
        while True:
            idx, val = topk(logits, k)
            m = float(val[0])
            w = np.exp((val.astype(np.float64) - m) * inv_t)
            # Normalizer: over the top-k set (top-k comes first in the order), else over all.
            probs = w / (float(w.sum()) if top_k else expsum(logits, m, inv_t))
            grow = False
            cut = k
            if p.top_p < 1.0:
                # Keep the smallest prefix whose mass reaches top_p (at least one token).
                cut = int(np.searchsorted(np.cumsum(probs), p.top_p, side="left")) + 1
                grow = cut > k
                cut = min(cut, k)
            keep = probs[:cut] / float(probs[:cut].sum())
            if p.min_p > 0.0 and not grow:
                n = int(np.count_nonzero(keep >= p.min_p * float(keep[0])))  # a prefix: sorted
                grow = n == k and cut == k
                keep = keep[:n] / float(keep[:n].sum())
            if not grow or top_k or k == vocab:
                return idx[: keep.shape[0]], keep
            k = min(vocab, k * 8)


def _softmax(z: np.ndarray, keep: np.ndarray) -> np.ndarray:
    m = float(z[keep].max())
    e = np.where(keep, np.exp(z - m), 0.0)
    out: np.ndarray = e / e.sum()
    return out
