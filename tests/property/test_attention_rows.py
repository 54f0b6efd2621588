"""The rows entry points of continuous batching against the single-sequence ones: rows of several
sequences (each its own KV-cache slot, position and ring) written and attended in one call give,
row by row, the bits q8_kv_write + q8_attention give for that sequence alone; and the calls refuse
slots, positions and ring overruns they cannot serve."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pyrustml.engine._ffi import ffi, lib


def p(a: np.ndarray, ctype: str = "float[]") -> object:
    return ffi.from_buffer(ctype, a)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, object]:
    n_kv = draw(st.sampled_from([1, 2]))
    group = draw(st.sampled_from([1, 4]))
    hd = draw(st.sampled_from([1, 8, 17, 64, 80]))
    slots = draw(st.integers(1, 4))
    window = draw(st.one_of(st.just(0), st.integers(1, 40)))
    cap = draw(st.integers(max(window + 8, 1), 90)) if window and draw(st.booleans()) else 200
    # Per slot: positions already in its cache, then this call's rows (a decode row or a chunk).
    hist = [draw(st.integers(0, 120)) for _ in range(slots)]
    rows = [draw(st.integers(0, min(8, cap - window) if window and cap < 200 else 8)) for _ in range(slots)]
    if sum(rows) == 0:
        rows[0] = 1
    return {"n_kv": n_kv, "group": group, "hd": hd, "slots": slots, "window": window, "cap": cap,
            "hist": hist, "rows": rows, "seed": draw(st.integers(0, 2**31 - 1)),
            "softcap": draw(st.sampled_from([0.0, 5.0]))}  # fmt: skip


@given(batches())
def test_rows_equal_each_sequence_alone(b: dict[str, object]) -> None:
    n_kv, group, hd, slots = int(b["n_kv"]), int(b["group"]), int(b["hd"]), int(b["slots"])  # type: ignore[call-overload]
    window, cap = int(b["window"]), int(b["cap"])  # type: ignore[call-overload]
    hist: list[int] = b["hist"]  # type: ignore[assignment]
    rows: list[int] = b["rows"]  # type: ignore[assignment]
    softcap = float(b["softcap"])  # type: ignore[arg-type]
    rng = np.random.default_rng(int(b["seed"]))  # type: ignore[call-overload]
    heads = n_kv * group
    shape = (slots, n_kv, cap, hd)
    k_all = np.full(shape, -3.5, dtype=np.float32)
    v_all = np.full(shape, -3.5, dtype=np.float32)
    # Each slot's history, written as that sequence would have written it.
    for s in range(slots):
        if hist[s]:
            kh = rng.standard_normal((hist[s], n_kv, hd), dtype=np.float32)
            vh = rng.standard_normal((hist[s], n_kv, hd), dtype=np.float32)
            for pos in range(hist[s]):
                ks, vs = np.ascontiguousarray(kh[pos]), np.ascontiguousarray(vh[pos])
                kc, vc = np.ascontiguousarray(k_all[s]), np.ascontiguousarray(v_all[s])
                assert lib.q8_kv_write(p(ks), p(vs), 1, pos, p(kc), p(vc), n_kv, cap, hd) == 0
                k_all[s], v_all[s] = kc, vc
    # This call's rows, interleaved across slots.
    order = [(s, i) for i in range(max(rows)) for s in range(slots) if i < rows[s]]
    t = len(order)
    slot = np.array([s for s, _ in order], dtype=np.int64)
    pos = np.array([hist[s] + i for s, i in order], dtype=np.int64)
    k_new = rng.standard_normal((t, n_kv, hd), dtype=np.float32)
    v_new = rng.standard_normal((t, n_kv, hd), dtype=np.float32)
    q = (rng.standard_normal((t, heads, hd), dtype=np.float32) * 2).astype(np.float32)
    scale = 1.0 / np.sqrt(hd)
    kb, vb = k_all.copy(), v_all.copy()
    rc = lib.q8_kv_write_rows(p(k_new), p(v_new), t, p(slot, "int64_t[]"), p(pos, "int64_t[]"), p(kb), p(vb),
                              slots, n_kv, cap, hd)  # fmt: skip
    assert rc == 0
    out = np.full((t, heads, hd), 9.0, dtype=np.float32)
    rc = lib.q8_attention_rows(p(q), t, p(slot, "int64_t[]"), p(pos, "int64_t[]"), p(kb), p(vb), slots, heads,
                               n_kv, cap, hd, window, scale, softcap, p(out))  # fmt: skip
    assert rc == 0
    # Alone: each slot's rows as one chunk through the single-cache calls.
    for s in range(slots):
        idx = [j for j, (ss, _) in enumerate(order) if ss == s]
        if not idx:
            continue
        kc, vc = np.ascontiguousarray(k_all[s]), np.ascontiguousarray(v_all[s])
        kn, vn = np.ascontiguousarray(k_new[idx]), np.ascontiguousarray(v_new[idx])
        assert lib.q8_kv_write(p(kn), p(vn), len(idx), hist[s], p(kc), p(vc), n_kv, cap, hd) == 0
        np.testing.assert_array_equal(kb[s], kc)
        np.testing.assert_array_equal(vb[s], vc)
        qs = np.ascontiguousarray(q[idx])
        alone = np.empty_like(qs)
        rc = lib.q8_attention(p(qs), len(idx), hist[s], p(kc), p(vc), heads, n_kv, cap, hd, window, scale,
                              softcap, p(alone))  # fmt: skip
        assert rc == 0
        np.testing.assert_array_equal(out[idx], alone)
        assert np.isfinite(alone).all()


def test_rows_refuse_what_they_cannot_serve() -> None:
    n_kv, hd, cap, slots = 1, 8, 16, 2
    k = np.zeros((slots, n_kv, cap, hd), dtype=np.float32)
    v = np.zeros_like(k)
    q = np.ones((2, 1, hd), dtype=np.float32)
    out = np.zeros_like(q)
    kn = np.ones((2, n_kv, hd), dtype=np.float32)

    def call(slot: list[int], pos: list[int], window: int = 8) -> tuple[int, int]:
        s = np.array(slot, dtype=np.int64)
        ps = np.array(pos, dtype=np.int64)
        a = lib.q8_kv_write_rows(p(kn), p(kn), 2, p(s, "int64_t[]"), p(ps, "int64_t[]"), p(k), p(v), slots,
                                 n_kv, cap, hd)  # fmt: skip
        b = lib.q8_attention_rows(p(q), 2, p(s, "int64_t[]"), p(ps, "int64_t[]"), p(k), p(v), slots, 1, n_kv,
                                  cap, hd, window, 1.0, 0.0, p(out))  # fmt: skip
        return a, b

    assert call([0, 1], [3, 40]) == (0, 0)
    assert call([0, 2], [3, 4]) == (lib.Q8_EINVAL, lib.Q8_EINVAL)  # no slot 2
    assert call([-1, 0], [3, 4]) == (lib.Q8_EINVAL, lib.Q8_EINVAL)
    assert call([0, 1], [-1, 4]) == (lib.Q8_EINVAL, lib.Q8_EINVAL)
    # Slot 0's second row lands a full ring after its first: the first row's window is gone.
    assert call([0, 0], [20, 20 + cap])[1] == lib.Q8_EINVAL
    # Without a window the ring cannot serve a query past its capacity at all.
    assert call([0, 1], [cap + 3, 2], window=0)[1] == lib.Q8_EINVAL
    # NULL row arrays.
    null = ffi.NULL
    assert lib.q8_attention_rows(p(q), 2, null, null, p(k), p(v), slots, 1, n_kv, cap, hd, 8, 1.0, 0.0,
                                 p(out)) == lib.Q8_EINVAL  # fmt: skip
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.zeros((3, 2), dtype=np.float32)
    assert lib.q8_copy_cols(p(x), 3, 4, 1, 2, p(y)) == 0
    np.testing.assert_array_equal(y, x[:, 1:3])
    assert lib.q8_copy_cols(p(x), 3, 4, 3, 2, p(y)) == lib.Q8_EINVAL  # past the row
    assert lib.q8_copy_cols(p(x), 3, 4, -1, 2, p(y)) == lib.Q8_EINVAL
