"""The decode plan (a whole decode step in one libq8 call) against the same ops run one call at
a time (RowOps), and q8_plan_run's refusals of malformed op lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyrustml
from pyrustml.engine._ffi import ffi, lib
from pyrustml.engine.plan import RowOps

FIX = Path(__file__).parent / "fixtures"


def caches(model: pyrustml.Model) -> list[np.ndarray]:
    net: Any = model.net
    layers = net.blocks if hasattr(net, "blocks") else net.layers
    return [np.array(c) for layer in layers for c in (layer.kv.k, layer.kv.v)]


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
@pytest.mark.parametrize("quant", ["q8_0", "q4_0", "q4_0-pure", "f32"])
def test_plan_step_is_bitwise_the_row_ops_step(name: str, quant: str) -> None:
    """Same prompt, then the same token at the same position: once through the plan, once
    through RowOps with one row. Hidden state and every cache must agree to the bit."""
    m = pyrustml.load(str(FIX / name), quant=quant)
    net = m.net
    prompt = [3, 9, 4, 1, 7, 2, 8]
    token, pos = 5, len(prompt)
    results = []
    for via_plan in (True, False):
        net.forward_chunk(prompt, 0)
        if via_plan:
            net.forward_chunk([token], pos)
        else:
            net.forward(RowOps([token], pos, net.pos_buf, net.pos_ptr, None))
        results.append((np.array(net.final[0]), caches(m)))
    (fa, ca), (fb, cb) = results
    np.testing.assert_array_equal(fa, fb)
    assert np.isfinite(fa).all() and np.abs(fa).sum() > 0
    for a, b in zip(ca, cb, strict=True):
        np.testing.assert_array_equal(a, b)


def test_profiled_plan_laps_cover_the_layers() -> None:
    """A profiled decode step takes its component laps from the plan's marks."""
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"))
    prof = m.enable_profiling()
    m.generate([1, 2, 3], max_tokens=4, temperature=0, ignore_eos=True)
    decode = [s for s in prof.steps if s.kind == "decode"]
    assert len(decode) == 3
    for s in decode:
        assert all(ns > 0 for ns in s.attention_ns + s.ffn_ns)
        assert s.embedding_ns >= 0 and s.norm_ns > 0
        assert s.components_ns <= s.total_ns


def one_op(kind: int) -> Any:
    ops = ffi.new("q8_op[]", 1)
    ops[0].kind = kind
    return ops


def test_plan_run_refuses_malformed_ops() -> None:
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"))
    plan = m.net.plan
    n = len(plan._ops)
    marks = ffi.new("int64_t[]", plan.n_marks)
    # The model's own plan runs; a token outside the vocabulary or a position outside the learned
    # position table is refused, not read out of bounds.
    assert lib.q8_plan_run(plan._arr, n, 1, 0, marks, plan.n_marks) == 0
    assert all(marks[j] > 0 for j in range(plan.n_marks))
    assert lib.q8_plan_run(plan._arr, n, m.net.vocab_size, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    assert lib.q8_plan_run(plan._arr, n, -1, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    assert lib.q8_plan_run(plan._arr, n, 1, m.net.max_positions, ffi.NULL, 0) == lib.Q8_EINVAL
    # Too few mark slots for the plan's marks.
    assert lib.q8_plan_run(plan._arr, n, 1, 0, marks, plan.n_marks - 1) == lib.Q8_EINVAL
    # Unknown kinds, a nonzero reserved field, empty or missing lists, NULL operands.
    assert lib.q8_plan_run(one_op(0), 1, 0, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    assert lib.q8_plan_run(one_op(99), 1, 0, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    bad = one_op(lib.Q8_OP_MARK)
    bad[0].reserved = 1
    assert lib.q8_plan_run(bad, 1, 0, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    assert lib.q8_plan_run(one_op(lib.Q8_OP_MARK), 0, 0, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    assert lib.q8_plan_run(ffi.NULL, 1, 0, 0, ffi.NULL, 0) == lib.Q8_EINVAL
    for kind in range(lib.Q8_OP_EMBED_Q8, lib.Q8_OP_MARK):
        op = one_op(kind)
        op[0].i[0] = op[0].i[1] = 32
        assert lib.q8_plan_run(op, 1, 0, 0, ffi.NULL, 0) == lib.Q8_EINVAL, kind
