"""The sampler: option validation, greedy, seeded reproducibility, and the distribution each
filter leaves (checked by counting draws against the exact probabilities)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyrustml.errors import NumericalError
from pyrustml.generate.sampling import Sampler, SamplingParams

LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def draw_freqs(params: SamplingParams, n: int = 20000) -> np.ndarray:
    s = Sampler(params)
    counts = np.zeros(LOGITS.shape[0])
    for _ in range(n):
        counts[s.sample(LOGITS.copy(), [])] += 1
    return counts / n


def close(freq: np.ndarray, p: np.ndarray, n: int = 20000) -> None:
    # 5 standard deviations of a binomial frequency: a false alarm about once in 3 million.
    tol = 5 * np.sqrt(p * (1 - p) / n) + 1e-12
    assert np.all(np.abs(freq - p) <= tol), (freq, p)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": 0},
        {"temperature": -0.1},
        {"temperature": math.nan},
        {"temperature": math.inf},
        {"top_k": -1},
        {"top_p": 1.5},
        {"top_p": -0.1},
        {"min_p": 2.0},
        {"repetition_penalty": 0.0},
        {"seed": -3},
    ],
)
def test_out_of_range_options_raise_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)  # type: ignore[arg-type]


def test_greedy_is_argmax_and_needs_no_logits() -> None:
    p = SamplingParams(temperature=0.0)
    assert p.greedy and not p.needs_logits
    assert Sampler(p).sample(LOGITS.copy(), []) == 0
    assert SamplingParams(temperature=0.0, repetition_penalty=1.3).needs_logits


def test_same_seed_same_tokens_and_no_global_state() -> None:
    p = SamplingParams(temperature=1.0, seed=1234)
    a = [Sampler(p).sample(LOGITS.copy(), []) for _ in range(1)]
    s1, s2 = Sampler(p), Sampler(p)
    np.random.seed(0)  # the global numpy state must not matter
    seq1 = [s1.sample(LOGITS.copy(), []) for _ in range(50)]
    np.random.seed(99)
    seq2 = [s2.sample(LOGITS.copy(), []) for _ in range(50)]
    assert seq1 == seq2 and a[0] == seq1[0]


def test_temperature_distribution() -> None:
    close(draw_freqs(SamplingParams(temperature=0.7, seed=1)), softmax(LOGITS.astype(np.float64) / 0.7))


def test_top_k_keeps_the_k_largest() -> None:
    p = softmax(LOGITS[:2].astype(np.float64))
    close(draw_freqs(SamplingParams(temperature=1.0, top_k=2, seed=2)), np.concatenate([p, np.zeros(4)]))


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    full = softmax(LOGITS.astype(np.float64))
    # cumulative mass: 0.56, 0.77, 0.90, ... -> top_p=0.75 keeps the first two tokens
    assert full[0] < 0.75 <= full[0] + full[1]
    kept = full[:2] / full[:2].sum()
    close(
        draw_freqs(SamplingParams(temperature=1.0, top_p=0.75, seed=3)), np.concatenate([kept, np.zeros(4)])
    )


def test_min_p_drops_tokens_below_a_fraction_of_the_best() -> None:
    full = softmax(LOGITS.astype(np.float64))
    keep = full >= 0.2 * full.max()
    expect = np.where(keep, full, 0.0)
    close(draw_freqs(SamplingParams(temperature=1.0, min_p=0.2, seed=4)), expect / expect.sum())


def test_repetition_penalty_as_transformers() -> None:
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=4.0))
    # token 0 (logit 2.0) seen: 2.0 / 4 = 0.5 < 1.0 -> token 1 wins
    assert s.sample(LOGITS.copy(), [0]) == 1
    # a negative logit seen is multiplied: -1 * 4 = -4 falls below the unseen -2
    assert s.sample(np.array([-1.0, -2.0], dtype=np.float32), [0]) == 1


def test_nan_logits_raise_numerical_error() -> None:
    bad = LOGITS.copy()
    bad[3] = np.nan
    with pytest.raises(NumericalError):
        Sampler(SamplingParams(temperature=1.0)).sample(bad, [])
