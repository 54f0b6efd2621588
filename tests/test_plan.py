"""The plan (a whole forward pass in one libq8 call, for any rows of any sequences): a row's bits
never depend on the other rows of its run, and q8_plan_run refuses malformed op lists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support import FIX

import pyrustml
from pyrustml.engine._ffi import ffi, lib
from pyrustml.engine.plan import op_kind
from pyrustml.errors import KernelArgumentError
from pyrustml.models.base import Transformer

# libq8's plan ops (libq8/src/plan.c), by the names the Plan methods use.
OP_NAMES = [
    "embed_q8", "embed_q4", "embed_f32", "add_row", "scale", "layernorm", "rmsnorm", "gemv_q8",
    "gemv_q4", "gemv_f32", "rope", "rope_freq", "kv_write", "attention", "add", "gelu",
    "geglu_rows", "swiglu_rows", "copy_cols", "mark",
]  # fmt: skip


def slot_caches(net: Transformer, slot: int) -> list[np.ndarray]:
    n: Any = net
    layers = n.blocks if hasattr(n, "blocks") else n.layers
    return [np.array(c[slot]) for layer in layers for c in (layer.kv.k, layer.kv.v)]


def run_rows(net: Transformer, rows: list[tuple[int, int, int]]) -> np.ndarray:
    """One plan run over (token, slot, position) rows; returns a copy of the final rows."""
    t = len(rows)
    net.row_tokens[:t] = [r[0] for r in rows]
    net.row_slots[:t] = [r[1] for r in rows]
    net.row_pos[:t] = [r[2] for r in rows]
    net.run(t)
    return np.array(net.final[:t])


PROMPTS = [[3, 9, 4, 1, 7, 2, 8], [5, 5, 6], [2, 11, 13, 4, 9, 1, 1, 6, 3, 12, 7]]


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
@pytest.mark.parametrize("quant", ["q8_0", "q4_0", "q4_0-pure", "f32"])
def test_batched_rows_are_bitwise_their_solo_runs(name: str, quant: str) -> None:
    """Three sequences, each first alone in slot 0 (a prefill chunk, then two decode steps), then
    together in slots 0-2: their prompts prefilled one token per row beside each other's decode
    rows, then decode steps of all three in one run. Every hidden row and every slot's cache must
    equal the solo run's to the bit."""
    m = pyrustml.load(str(FIX / name), quant=quant, parallel=3)
    net = m.net
    nxt = [[5, 1], [7, 7], [4, 2]]
    solo = []
    for p, n in zip(PROMPTS, nxt, strict=True):
        pre = run_rows(net, [(tok, 0, i) for i, tok in enumerate(p)])
        steps = [run_rows(net, [(n[k], 0, len(p) + k)])[0] for k in range(2)]
        solo.append((pre, steps, slot_caches(net, 0)))
    for slot in range(3):  # start from caches unlike the solo run's: stale rows must not leak in
        for c in slot_caches(net, slot):
            assert c.shape[0] > 0
    # Prompts of unequal length, interleaved: row i of every prompt that still has one.
    pre_rows: list[list[np.ndarray]] = [[], [], []]
    for i in range(max(map(len, PROMPTS))):
        rows = [(p[i], s, i) for s, p in enumerate(PROMPTS) if i < len(p)]
        out = run_rows(net, rows)
        for r, (_, s, _) in enumerate(rows):
            pre_rows[s].append(out[r])
    steps_b: list[list[np.ndarray]] = [[], [], []]
    for k in range(2):
        out = run_rows(net, [(nxt[s][k], s, len(PROMPTS[s]) + k) for s in range(3)])
        for s in range(3):
            steps_b[s].append(out[s])
    for s, (pre, steps, caches) in enumerate(solo):
        np.testing.assert_array_equal(np.stack(pre_rows[s]), pre)
        for a, b in zip(steps_b[s], steps, strict=True):
            np.testing.assert_array_equal(a, b)
        assert np.isfinite(pre).all() and np.abs(pre).sum() > 0
        # The solo run used slot 0 with the same positions: its cache rows are this slot's.
        for a, b in zip(slot_caches(net, s), caches, strict=True):
            used = len(PROMPTS[s]) + 2
            np.testing.assert_array_equal(a[..., :used, :], b[..., :used, :])


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


def test_op_kinds_come_from_libq8_by_name() -> None:
    kinds = [op_kind(name) for name in OP_NAMES]
    assert sorted(kinds) == list(range(1, len(OP_NAMES) + 1))  # every op, one kind each
    for name in ("", "nope", "ADD", "add "):
        assert lib.q8_op_kind(name.encode()) == lib.Q8_EINVAL
        with pytest.raises(KernelArgumentError, match="no plan op"):
            op_kind(name)
    assert lib.q8_op_kind(ffi.NULL) == lib.Q8_EINVAL


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
    def run(
        tok: int,
        slot: int,
        pos: int,
        ops: Any = plan._arr,
        count: int = n,
        t: int = 1,
        mk: Any = ffi.NULL,
        n_marks: int = 0,
    ) -> int:
        rows = [ffi.new("int64_t[]", [v] * max(t, 1)) for v in (tok, slot, pos)]
        return int(lib.q8_plan_run(ops, count, t, rows[0], rows[1], rows[2], mk, n_marks))

    assert run(1, 0, 0, mk=marks, n_marks=plan.n_marks) == 0
    assert all(marks[j] > 0 for j in range(plan.n_marks))
    assert run(m.net.vocab_size, 0, 0) == lib.Q8_EINVAL
    assert run(-1, 0, 0) == lib.Q8_EINVAL
    assert run(1, 0, m.net.max_positions) == lib.Q8_EINVAL
    assert run(1, 0, -1) == lib.Q8_EINVAL
    # A slot past the caches', or a negative one.
    assert run(1, m.net.slots, 0) == lib.Q8_EINVAL
    assert run(1, -1, 0) == lib.Q8_EINVAL
    # Row counts outside 1 .. Q8_PLAN_MAX_ROWS.
    assert run(1, 0, 0, t=0) == lib.Q8_EINVAL
    assert run(1, 0, 0, t=lib.Q8_PLAN_MAX_ROWS + 1) == lib.Q8_EINVAL
    # Too few mark slots for the plan's marks.
    assert run(1, 0, 0, mk=marks, n_marks=plan.n_marks - 1) == lib.Q8_EINVAL
    # Unknown kinds, a nonzero reserved field, empty or missing lists, NULL operands.
    assert run(0, 0, 0, ops=one_op(0), count=1) == lib.Q8_EINVAL
    assert run(0, 0, 0, ops=one_op(99), count=1) == lib.Q8_EINVAL
    assert run(0, 0, 0, ops=one_op(len(OP_NAMES) + 1), count=1) == lib.Q8_EINVAL
    bad = one_op(op_kind("mark"))
    bad[0].reserved = 1
    assert run(0, 0, 0, ops=bad, count=1) == lib.Q8_EINVAL
    assert run(0, 0, 0, ops=one_op(op_kind("mark")), count=0) == lib.Q8_EINVAL
    assert run(0, 0, 0, ops=ffi.NULL, count=1) == lib.Q8_EINVAL
    for kind in (op_kind(name) for name in OP_NAMES if name != "mark"):
        op = one_op(kind)
        op[0].i[0] = op[0].i[1] = 32
        assert run(0, 0, 0, ops=op, count=1) == lib.Q8_EINVAL, kind
    # NULL row arrays.
    assert lib.q8_plan_run(plan._arr, n, 1, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0) == lib.Q8_EINVAL
