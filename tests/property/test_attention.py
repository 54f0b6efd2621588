"""kv_write + attention against a float64 reference of causal softmax attention: multi-head and
grouped-query, head_dim up to 256, sliding windows, ring-buffer caches smaller than the context,
logit softcapping; and the raw entry points write only their outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from support import fp_bounds as fp

from pyrustml import kernels
from pyrustml.engine._ffi import ffi, lib

HEAD_DIMS = [1, 3, 8, 16, 17, 40, 64, 80, 128, 256]
POS_BLOCK = 64  # attention.c: positions per online-softmax block (each may rescale the output)
FILL = np.float32(-7.75)  # cache slots never written keep this; any read of one shows up


@dataclass
class Case:
    n_kv: int
    group: int
    head_dim: int
    t: int  # queries: positions pos0 .. pos0 + t - 1
    ctx: int  # positions written: 0 .. ctx - 1 (= pos0 + t)
    cap: int
    window: int
    scale: float
    softcap: float
    q_gain: float  # scores grow with it: sharp or flat softmax
    chunks: list[int]  # kv_write call sizes, summing to ctx
    seed: int

    @property
    def n_heads(self) -> int:
        return self.n_kv * self.group

    @property
    def pos0(self) -> int:
        return self.ctx - self.t


@st.composite
def cases(draw: st.DrawFn, max_ctx: int = 200) -> Case:
    n_kv = draw(st.sampled_from([1, 2, 4]), label="n_kv")
    group = draw(st.sampled_from([1, 2, 4]), label="group")
    d = draw(st.sampled_from(HEAD_DIMS), label="head_dim")
    t = draw(st.integers(1, 4), label="t")
    ctx = draw(st.integers(t, max_ctx), label="ctx")
    window = draw(st.one_of(st.just(0), st.integers(1, ctx + 3)), label="window")
    ring = window > 0 and draw(st.booleans(), label="ring")
    lo_cap = window + t - 1  # the smallest ring that still holds every position a query reads
    if ring and lo_cap < ctx:
        cap = draw(st.integers(lo_cap, ctx - 1), label="cap")
    else:
        cap = ctx + draw(st.integers(0, 8), label="spare slots")
    scale = draw(st.sampled_from([1.0 / math.sqrt(d), 1.0, 0.0625]), label="scale")
    softcap = draw(st.sampled_from([0.0, 0.0, 5.0, 50.0]), label="softcap")
    q_gain = draw(st.sampled_from([1.0, 8.0]), label="q_gain")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    chunks: list[int] = []
    left = ctx
    while left > 0:
        c = draw(st.integers(1, min(left, 40)), label="chunk")
        chunks.append(c)
        left -= c
    return Case(n_kv, group, d, t, ctx, cap, window, scale, softcap, q_gain, chunks, seed)


def make_inputs(c: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q (t, H, D) and the keys/values of every position (ctx, n_kv, D), float32."""
    rng = np.random.default_rng(c.seed)
    q = (rng.standard_normal((c.t, c.n_heads, c.head_dim)) * c.q_gain).astype(np.float32)
    k = rng.standard_normal((c.ctx, c.n_kv, c.head_dim)).astype(np.float32)
    v = rng.standard_normal((c.ctx, c.n_kv, c.head_dim)).astype(np.float32)
    return q, k, v


def fill_cache(c: Case, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write every position through kv_write, in the case's chunks; slot = position % cap."""
    kc = np.full((c.n_kv, c.cap, c.head_dim), FILL, np.float32)
    vc = np.full((c.n_kv, c.cap, c.head_dim), FILL, np.float32)
    p = 0
    for n in c.chunks:
        kernels.kv_write(k[p : p + n], v[p : p + n], p, kc, vc)
        p += n
    return kc, vc


def attention_oracle(c: Case, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 causal softmax attention, error bound for the float32 kernel), each (t, H, D).

    Reference: query j at position p = pos0 + j, head h, reads KV head h // group at positions
    lo..p, lo = max(0, p - window + 1) (window 0: lo = 0); s = scale q.k, optionally
    s = cap tanh(s / cap); out = softmax(s) @ v.

    Derivation of the bound (attention.c, first order in U32):
    - score: the f32 dot of length D errs by gamma_m sum|q k| (m = D // 16 + 4 + D % 16) plus
      (D + 15) 2^-150 for underflowing roundings (conftest.f32_dot_bound); * scale adds U32 |s|:
      ds_j. Softcap: s / cap rounds (U32 |s|), tanh moves by sech^2 * (its input
      error) / 1, q8_tanh adds 3 U32 |tanh|, * cap adds U32: ds_j grows accordingly.
    - weights: e_j = expf(s_j - m) with m the running max; the factor exp(m_true - m) and the
      rescalings are common to the numerator and the denominator and cancel, leaving a relative
      error eps_j <= expm1(ds_j + U32 (|s_j - max| + ds_j + max ds)) + 2 U32 (expf's ulp).
    - normalization: with eta = sum_j p_j eps_j, the ratio sum e v / sum e errs by at most
      (sum_j p_j eps_j |v_j| + |out| eta) / (1 - eta).
    - accumulation: each output element is a chain of fmas over the n positions read plus one
      rescale per POS_BLOCK block: gamma_(n + blocks) sum_j p_j |v_j| (1 + max eps) / (1 - eta).
    - the double-precision denominator (n 2^-53), its float32 inverse and the final product
      (2 U32); absolute terms, against a denominator >= 1 (the max's weight is expf(0) = 1):
      expf results that underflow (2^-149 each, times |v| in both sums) and fmas or rescales of
      the output that underflow (2^-150 each).
    """
    u = fp.U32
    m_dot = fp.f32_dot_depth(c.head_dim)
    g_dot = fp.gamma(m_dot)
    n_dot = fp.f32_dot_roundings(c.head_dim)
    scale = float(np.float32(c.scale))
    cap = float(np.float32(c.softcap))
    ref = np.zeros(q.shape)
    bound = np.zeros(q.shape)
    qd, kd, vd = q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)
    for j in range(c.t):
        p = c.pos0 + j
        lo = max(0, p - c.window + 1) if c.window > 0 else 0
        n = p - lo + 1
        for h in range(c.n_heads):
            kv = h // c.group
            kk, vv, qq = kd[lo : p + 1, kv], vd[lo : p + 1, kv], qd[j, h]
            raw = kk @ qq
            s = scale * raw
            ds = (
                abs(scale) * (g_dot * (np.abs(kk) @ np.abs(qq)) + n_dot * fp.TINY32)
                + u * np.abs(s)
                + fp.TINY32
            )
            if cap > 0.0:
                r = s / cap
                dr = (ds + u * (np.abs(s) + ds)) / cap + fp.TINY32
                th = np.tanh(r)
                s = cap * th
                ds = (
                    cap * (fp.sech2_bound(r, dr) * dr + fp.TANH_ULPS * np.abs(th)) + u * np.abs(s) + fp.TINY32
                )
            mx = s.max()
            e = np.exp(s - mx)
            pw = e / e.sum()
            out = pw @ vv
            eps = np.expm1(ds + u * (np.abs(s - mx) + ds + ds.max())) + fp.EXP_ULPS
            eta = float(pw @ eps)
            av = np.abs(vv)
            blocks = -(-n // POS_BLOCK)
            acc = fp.gamma(n + blocks) * (pw @ av) * (1.0 + eps.max())
            b = ((pw * eps) @ av + np.abs(out) * eta + acc) / (1.0 - eta)
            b = b + (2 * u + n * fp.U64) * (np.abs(out) + b)
            tiny = (4 * n * av.max(axis=0) + n + blocks + 1) * fp.TINY32
            b = b * fp.SECOND_ORDER + tiny
            ref[j, h], bound[j, h] = out, b
    return ref, bound


@given(c=cases())
def test_kv_write_puts_each_position_in_its_slot(isa: str, c: Case) -> None:
    """Slot s holds the last position p < ctx with p % cap == s, bit for bit; others stay FILL."""
    _, k, v = make_inputs(c)
    kc, vc = fill_cache(c, k, v)
    for s in range(c.cap):
        written = [p for p in range(s, c.ctx, c.cap)]
        if written:
            np.testing.assert_array_equal(kc[:, s], k[written[-1]])
            np.testing.assert_array_equal(vc[:, s], v[written[-1]])
        else:
            assert (kc[:, s] == FILL).all() and (vc[:, s] == FILL).all()


@given(c=cases())
def test_attention_matches_float64(isa: str, c: Case) -> None:
    q, k, v = make_inputs(c)
    kc, vc = fill_cache(c, k, v)
    out = kernels.attention(q, c.pos0, kc, vc, c.scale, c.window, c.softcap)
    assert out.shape == q.shape and out.dtype == np.float32
    ref, bound = attention_oracle(c, q, k, v)
    assert np.isfinite(out).all()
    assert (np.abs(out - ref) <= bound).all()


@given(c=cases(max_ctx=120))
def test_attention_does_not_depend_on_the_query_batch(isa: str, c: Case) -> None:
    """Each (query, head) is one work item with fixed arithmetic: a prefill of t queries is,
    bit for bit, t decode steps of one query each over the same cache."""
    q, k, v = make_inputs(c)
    kc, vc = fill_cache(c, k, v)
    out = kernels.attention(q, c.pos0, kc, vc, c.scale, c.window, c.softcap)
    for j in range(c.t):
        one = kernels.attention(q[j : j + 1], c.pos0 + j, kc, vc, c.scale, c.window, c.softcap)
        np.testing.assert_array_equal(out[j : j + 1], one)


@given(c=cases(max_ctx=120))
def test_grouped_query_equals_repeated_kv_heads(isa: str, c: Case) -> None:
    """GQA reads KV head h // group: the same as multi-head attention over repeated KV heads."""
    q, k, v = make_inputs(c)
    kc, vc = fill_cache(c, k, v)
    out = kernels.attention(q, c.pos0, kc, vc, c.scale, c.window, c.softcap)
    kr = np.ascontiguousarray(np.repeat(kc, c.group, axis=0))
    vr = np.ascontiguousarray(np.repeat(vc, c.group, axis=0))
    np.testing.assert_array_equal(out, kernels.attention(q, c.pos0, kr, vr, c.scale, c.window, c.softcap))


@given(c=cases(max_ctx=120))
def test_attention_and_kv_write_write_only_their_outputs(isa: str, guarded_floats: Any, c: Case) -> None:
    q, k, v = make_inputs(c)
    shape = (c.n_kv, c.cap, c.head_dim)
    kc, vc = guarded_floats(shape), guarded_floats(shape)
    kc.region[...] = FILL
    vc.region[...] = FILL
    p = 0
    for n in c.chunks:
        rc = lib.q8_kv_write(
            ffi.from_buffer("float[]", np.ascontiguousarray(k[p : p + n])),
            ffi.from_buffer("float[]", np.ascontiguousarray(v[p : p + n])),
            n,
            p,
            kc.ptr(),
            vc.ptr(),
            c.n_kv,
            c.cap,
            c.head_dim,
        )
        assert rc == lib.Q8_OK
        p += n
    assert kc.guards_intact() and vc.guards_intact()
    k_before, v_before = kc.raw.copy(), vc.raw.copy()
    out = guarded_floats(q.shape)
    rc = lib.q8_attention(
        ffi.from_buffer("float[]", q),
        c.t,
        c.pos0,
        kc.ptr(),
        vc.ptr(),
        c.n_heads,
        c.n_kv,
        c.cap,
        c.head_dim,
        c.window,
        c.scale,
        c.softcap,
        out.ptr(),
    )
    assert rc == lib.Q8_OK
    assert out.guards_intact() and out.fully_written()
    np.testing.assert_array_equal(kc.raw, k_before)  # the caches are only read
    np.testing.assert_array_equal(vc.raw, v_before)
    ref = kernels.attention(q, c.pos0, kc.region, vc.region, c.scale, c.window, c.softcap)
    np.testing.assert_array_equal(out.region, ref)


def test_long_grouped_decode_step_equals_the_batched_rows(isa: str) -> None:
    """A decode step over grouped query heads and a long context takes its block parts from the
    heap and folds them apart; a batched call folds them per row. Same bits, and finite."""
    rng = np.random.default_rng(7)
    n_kv, group, hd, ctx = 1, 4, 256, 1500  # 24 blocks x 4 heads: beyond the stack buffers
    kc = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    vc = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    q = rng.standard_normal((2, n_kv * group, hd)).astype(np.float32)
    for window in (0, 700):
        both = kernels.attention(q, ctx - 2, kc, vc, 0.0625, window)
        step = kernels.attention(q[1:], ctx - 1, kc, vc, 0.0625, window)
        assert np.isfinite(step).all()
        np.testing.assert_array_equal(both[1:], step)
