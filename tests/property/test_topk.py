"""q8_topk and q8_expsum (what the sampler takes from a logits vector) against numpy, and the
sampler's candidate path against the whole sorted distribution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pyrustml import kernels
from pyrustml.errors import KernelArgumentError, NumericalError
from pyrustml.generate.sampling import Sampler, SamplingParams

SIZES = st.sampled_from([1, 2, 3, 31, 33, 64, 65, 1000, 50257])


def _logits(seed: int, n: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32) * 3
    if ties:  # few distinct values: equal entries everywhere, the index order decides
        x = np.round(x).astype(np.float32)
    return x


@given(seed=st.integers(0, 2**31), n=SIZES, frac=st.floats(0.0, 1.0), ties=st.booleans())
def test_topk_is_a_stable_descending_sort_prefix(seed: int, n: int, frac: float, ties: bool) -> None:
    x = _logits(seed, n, ties)
    k = max(1, min(n, round(frac * min(n, 300))))
    idx, val = kernels.topk(x, k)
    order = np.argsort(-x, kind="stable")[:k]  # stable: equal values keep the lower index first
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(val, x[order])


def test_topk_refuses_bad_input() -> None:
    x = np.zeros(10, dtype=np.float32)
    for k in (0, 11, -1):
        with pytest.raises(KernelArgumentError):
            kernels.topk(x, k)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[7] = bad
        with pytest.raises(NumericalError):
            kernels.topk(y, 3)
    with pytest.raises(TypeError):
        kernels.topk(x.astype(np.float64), 3)


@given(seed=st.integers(0, 2**31), n=SIZES, t=st.floats(0.05, 5.0))
def test_expsum_matches_float64(seed: int, n: int, t: float) -> None:
    x = _logits(seed, n, False)
    m = float(x.max())
    inv_t = float(np.float32(1.0 / t))  # the kernel takes inv_temp as float32
    expect = float(np.exp((x.astype(np.float64) - m) * inv_t).sum())
    assert kernels.expsum(x, m, 1.0 / t) == pytest.approx(expect, rel=1e-12)


def _reference(x: np.ndarray, p: SamplingParams) -> dict[int, float]:
    """The whole distribution, sorted, filtered in transformers' order (top-k, top-p, min-p)."""
    z = x.astype(np.float64) / p.temperature
    order = np.argsort(-z, kind="stable")
    if 0 < p.top_k < len(z):
        order = order[: p.top_k]
    probs = np.exp(z[order] - z[order[0]])
    probs /= probs.sum()
    if p.top_p < 1.0:
        cut = int(np.searchsorted(np.cumsum(probs), p.top_p, side="left")) + 1
        order, probs = order[:cut], probs[:cut] / probs[:cut].sum()
    if p.min_p > 0.0:
        keep = probs >= p.min_p * probs[0]
        order, probs = order[keep], probs[keep] / probs[keep].sum()
    return dict(zip(order.tolist(), probs.tolist(), strict=True))


@given(
    seed=st.integers(0, 2**31),
    n=st.sampled_from([2, 50, 1000, 50257]),
    t=st.floats(0.1, 3.0),
    top_k=st.sampled_from([0, 0, 1, 5, 40, 100]),
    top_p=st.sampled_from([1.0, 0.5, 0.9, 0.99]),
    min_p=st.sampled_from([0.0, 0.0, 0.05, 0.3]),
)
def test_candidates_equal_the_whole_distribution(
    seed: int, n: int, t: float, top_k: int, top_p: float, min_p: float
) -> None:
    x = _logits(seed, n, False)
    params = SamplingParams(temperature=t, top_k=top_k, top_p=top_p, min_p=min_p, seed=0)
    # plain temperature sampling takes the whole vector, not candidates: not an example of this
    assume(0 < top_k < n or top_p < 1.0 or min_p > 0.0)
    idx, probs = Sampler(params).candidates(x.copy())
    ref = _reference(x, params)
    got = dict(zip(idx.tolist(), probs.tolist(), strict=True))
    if set(got) != set(ref):
        # Only a top-p boundary within rounding of the cumulative sum may differ.
        assert top_p < 1.0 and abs(len(got) - len(ref)) == 1, (len(got), len(ref))
        return
    for i, pr in ref.items():
        assert got[i] == pytest.approx(pr, rel=1e-9, abs=1e-15)
