"""The logits bounds every model test holds pyrustml to against transformers' float32 forward,
the committed references of the tiny GPT-2 and Gemma 3 fixtures (tools/make_fixtures.py), and the
checks the per-architecture tests share."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from support import FIX

F32_REL_TOL = 1e-4  # f32 path: within 1e-4 of the largest |logit| at every position (the bound)
Q8_MIN_COSINE = 0.998  # Q8_0 path: cosine similarity per position (the bound)


def load_reference(stem: str) -> dict[str, Any]:
    """tests/fixtures/<stem>-reference.json with its logits arrays (the .npz it names) under "arrays"."""
    data: dict[str, Any] = json.loads((FIX / f"{stem}-reference.json").read_text())
    npz = np.load(FIX / data["logits_file"])
    data["arrays"] = {k: npz[k] for k in npz.files}
    return data


def expected(ref: dict[str, Any], name: str, i: int) -> tuple[np.ndarray, list[int]]:
    """Checkpoint name's reference for sequence i: (logits at every position, greedy tokens)."""
    r = ref["references"][ref["checkpoints"][name]["reference"]]
    return ref["arrays"][r["logits_keys"][i]], r["greedy"][i]


def assert_f32_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """(positions, vocab) logits within F32_REL_TOL of the largest |reference logit|, per position."""
    err = np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)
    assert err.max() <= F32_REL_TOL, f"{what}: worst position error {err.max():.2e}"


def assert_q8_cosine(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """(positions, vocab) logits whose cosine with the reference is at least Q8_MIN_COSINE at
    every position (in float64)."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    cos = (g * w).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(w, axis=1)
    assert cos.min() >= Q8_MIN_COSINE, f"{what}: min cosine {cos.min():.5f}"


def assert_prefill_equals_decode(m: Any, seq: list[int]) -> None:
    """Batched prefill (GEMM, causal attention over t rows) and one-token decode steps compute
    the same arithmetic (libq8's kernels are row-exact), so the logits are bitwise equal."""
    batched = m.logits(seq)
    stepwise = np.empty_like(batched)
    for p, tok in enumerate(seq):
        m.net.forward_chunk([tok], p)
        stepwise[p] = m.net.logits_row(0)
    np.testing.assert_array_equal(batched, stepwise)
