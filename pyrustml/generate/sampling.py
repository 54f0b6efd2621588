"""Sampling settings and the sampler: its own seeded generator, no global state.

Order of the logits processors, as transformers applies them: repetition penalty, then
temperature, top-k, top-p, min-p; then a draw. temperature <= 0 means greedy (argmax).
"""

from __future__ import annotations

import numpy as np

from ..engine.kernels import expsum, topk
from ..errors import NumericalError, OptionError
from ..io.values import INT63_MAX, MAX_LOOKUP, as_int, check_penalty, check_probability, check_temperature

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
        # The same rules as every boundary's (the values reach here checked; defaults too).
        self.max_tokens = as_int("max_tokens", max_tokens, minimum=1, maximum=INT63_MAX)
        self.temperature = check_temperature("temperature", temperature)
        self.top_k = as_int("top_k", top_k, minimum=0, maximum=INT63_MAX)
        self.top_p = check_probability("top_p", top_p)
        self.min_p = check_probability("min_p", min_p)
        self.repetition_penalty = check_penalty("repetition_penalty", repetition_penalty)
        self.ignore_eos = bool(ignore_eos)
        self.lookup = as_int("lookup", lookup, minimum=0, maximum=MAX_LOOKUP)
        if lookup and self.needs_logits:
            raise OptionError("lookup needs greedy decoding (temperature 0, no repetition penalty)")
        self.seed = None if seed is None else as_int("seed", seed, minimum=0, maximum=(1 << 128) - 1)

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
