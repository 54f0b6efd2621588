"""Kernel paths: every path this machine supports is bitwise identical to 'ref'; set_isa refuses
unknown names; PYRUSTML_ISA forces a path; nothing turns on flush-to-zero or denormals-are-zero."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.kernel_props import QK, SEEDS, arrays, assert_same_as_ref

import pyrustml
from pyrustml import kernels
from pyrustml.errors import KernelArgumentError, PyrustmlError

ROWS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 15, 16, 17, 31, 33, 63, 64, 65, 257]), st.integers(1, 80))
SCALES = st.sampled_from(["1", "1e-3", "1e6", "1e-30", "1e-40", "mixed", "ties"])
F32_KS = st.one_of(st.sampled_from([1, 15, 16, 17, 31, 32, 33]), st.integers(1, 300))  # around 16 lanes
SUBNORMAL = np.float32(1e-40)
# (gemv, gemm, lmhead, lmhead_argmax) of one weight format
Q8_PRODUCTS = (kernels.gemv_q8_0, kernels.gemm_q8_0, kernels.lmhead_q8_0, kernels.lmhead_argmax_q8_0)
F32_PRODUCTS = (kernels.gemv_f32, kernels.gemm_f32, kernels.lmhead_f32, kernels.lmhead_argmax_f32)


def every_product(products: tuple[Any, Any, Any, Any], w: Any, x: np.ndarray, bias: np.ndarray) -> list[Any]:
    """Each product of one weight format on w, with and without the bias, on the first and the
    last of the tokens x (t, K)."""
    gemv, gemm, lmhead, argmax = products
    return [
        gemv(w, x[0]),
        gemv(w, x[-1], bias),
        gemm(w, x),
        gemm(w, x, bias),
        lmhead(w, x[0]),
        np.array(argmax(w, x[-1])),
    ]


@given(
    rows=ROWS,
    # 257 and 258 blocks: past the 256 prepared activation blocks gemv.c keeps on the stack (heap path)
    nb=st.one_of(st.sampled_from([1, 2, 3, 5, 257, 258]), st.integers(1, 12)),
    t=st.integers(1, 7),
    seed=SEEDS,
    w_scale=SCALES,
    x_scale=SCALES,
    nonfinite=st.booleans(),
)
def test_q8_products_bitwise_equal_ref(
    isa: str, rows: int, nb: int, t: int, seed: int, w_scale: str, x_scale: str, nonfinite: bool
) -> None:
    k = nb * QK
    q = kernels.quantize_q8_0(arrays(seed, (rows, k), w_scale, 0.2))
    x = arrays(seed + 1, (t, k), x_scale, 0.2)
    if nonfinite:
        x[seed % t, seed % k] = np.inf
    bias = arrays(seed + 2, (rows,))
    assert_same_as_ref(isa, lambda: every_product(Q8_PRODUCTS, q, x, bias))


@given(rows=ROWS, k=F32_KS, t=st.integers(1, 7), seed=SEEDS, scale=SCALES, nonfinite=st.booleans())
def test_f32_products_bitwise_equal_ref(
    isa: str, rows: int, k: int, t: int, seed: int, scale: str, nonfinite: bool
) -> None:
    w = arrays(seed, (rows, k), scale, 0.2)
    x = arrays(seed + 1, (t, k), "1", 0.2)
    if nonfinite:
        w[seed % rows, seed % k] = np.nan
    bias = arrays(seed + 2, (rows,))
    assert_same_as_ref(isa, lambda: every_product(F32_PRODUCTS, w, x, bias))


@given(
    n_kv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 3]),
    d=st.sampled_from([1, 7, 16, 17, 40, 64, 128, 256]),
    t=st.integers(1, 3),
    ctx=st.integers(3, 150),
    window=st.sampled_from([0, 1, 5, 64]),
    softcap=st.sampled_from([0.0, 30.0]),
    seed=SEEDS,
)
def test_attention_bitwise_equal_ref(
    isa: str, n_kv: int, group: int, d: int, t: int, ctx: int, window: int, softcap: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    t = min(t, ctx)
    q = rng.standard_normal((t, n_kv * group, d)).astype(np.float32)
    kc = rng.standard_normal((n_kv, ctx, d)).astype(np.float32)
    vc = rng.standard_normal((n_kv, ctx, d)).astype(np.float32)

    def run() -> list[Any]:
        return [kernels.attention(q, ctx - t, kc, vc, d**-0.5, window, softcap)]

    assert_same_as_ref(isa, run)


@given(
    rows=st.sampled_from([1, 2, 3, 5]),
    n=st.one_of(st.sampled_from([1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 768, 1000]), st.integers(1, 300)),
    # 40 rows of 1000: 40,000 activation elements, past ACT_PARALLEL_MIN (ops.c), so the pool splits them
    big=st.booleans(),
    seed=SEEDS,
    scale=SCALES,
    nonfinite=st.booleans(),
)
def test_elementwise_bitwise_equal_ref(
    isa: str, rows: int, n: int, big: bool, seed: int, scale: str, nonfinite: bool
) -> None:
    """The norms and activations run loops.c's table of this path's vector width (the 'ref' path
    runs the baseline one): every width gives ref's bits."""
    if big:
        rows, n = 40, 1000
    x = arrays(seed, (rows, n), scale, 0.1)
    g = arrays(seed + 1, (n,))
    b = arrays(seed + 2, (n,))
    gate_up = arrays(seed + 3, (rows, 2 * n), scale)
    if nonfinite:
        x[seed % rows, seed % n] = np.nan
        gate_up[-1, seed % (2 * n)] = -np.inf

    def run() -> list[Any]:
        return [
            kernels.layernorm(x, g, b, 1e-5),
            kernels.rmsnorm(x, g, 1e-6),
            kernels.rmsnorm(x, g, 1e-6, 1.0),
            kernels.gelu_tanh(x),
            kernels.geglu(x, gate_up[:, :n].copy()),
            kernels.geglu_rows(gate_up),
            kernels.softcap(x, 30.0),
        ]

    assert_same_as_ref(isa, run)


def test_set_isa_switches_and_reports(isa: str) -> None:
    assert kernels.isa_active() == isa
    assert kernels.isa_supported()[0] == "ref"
    assert len(set(kernels.isa_supported())) == len(kernels.isa_supported())


KNOWN_ELSEWHERE = ["ref", "avx2", "avx512", "avx512vnni", "amx", "neon", "neon_dotprod"]


@pytest.mark.parametrize(
    "name",
    ["", "bogus", "REF", "ref ", " avx2", "avx", "sse2", "avx512vnni2"]
    + [n for n in KNOWN_ELSEWHERE if n not in kernels.isa_supported()],
)
def test_set_isa_refuses_unknown_or_unsupported_names(name: str) -> None:
    before = kernels.isa_active()
    with pytest.raises(KernelArgumentError, match="not supported") as info:
        kernels.set_isa(name)
    assert isinstance(info.value, ValueError) and isinstance(info.value, PyrustmlError)
    assert repr(name) in str(info.value)
    assert kernels.isa_active() == before


def test_set_isa_refuses_names_with_nul() -> None:
    before = kernels.isa_active()
    try:
        with pytest.raises(KernelArgumentError):
            kernels.set_isa("ref\x00junk")
    finally:
        kernels.set_isa(before)


def subnormal_arithmetic_works() -> bool:
    """np.float32 arithmetic on this thread keeps subnormals (no FTZ, no DAZ in MXCSR)."""
    a = SUBNORMAL * np.float32(1.0)  # DAZ would read 1e-40 as 0
    b = np.float32(1e-30) * np.float32(1e-10)  # FTZ would flush the subnormal product
    return bool(a != 0.0 and b != 0.0 and np.float32(2.0**-126) / np.float32(4.0) != 0.0)


@pytest.mark.usefixtures("restore_pool")
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_keep_subnormals(isa: str, threads: int) -> None:
    """Subnormal inputs and results survive every path, on the caller and on pool workers
    (2 threads; 64 rows are several chunks), and the caller's float mode is left alone."""
    pyrustml.RuntimeConfig(threads=threads)
    assert subnormal_arithmetic_works()
    rows, k = 64, 20
    w = np.full((rows, k), SUBNORMAL, np.float32)
    x = np.zeros(k, np.float32)
    x[0] = 1.0
    # fmaf(1e-40, 1, 0) = 1e-40 exactly; the other terms are +0
    np.testing.assert_array_equal(kernels.gemv_f32(w, x), np.full(rows, SUBNORMAL))
    np.testing.assert_array_equal(kernels.gemm_f32(w, np.stack([x, x])), np.full((2, rows), SUBNORMAL))
    np.testing.assert_array_equal(kernels.add(w[0], w[1]), np.full(k, SUBNORMAL + SUBNORMAL))
    # a subnormal weight block quantizes to scale 0 without trouble
    assert (kernels.quantize_q8_0(np.full((1, QK), SUBNORMAL)).dequantize() == 0.0).all()
    kernels.gemv_q8_0(kernels.quantize_q8_0(np.ones((rows, QK), np.float32)), np.ones(QK, np.float32))
    assert subnormal_arithmetic_works()


FRESH_PROCESS = textwrap.dedent(
    """
    import numpy as np
    def ok():
        return np.float32(1e-40) * np.float32(1) != 0 and np.float32(1e-30) * np.float32(1e-10) != 0
    assert ok(), "subnormals already flushed before importing pyrustml"
    import pyrustml
    from pyrustml import kernels
    assert ok(), "importing pyrustml turned on flush-to-zero"
    pyrustml.RuntimeConfig(threads=2)
    for name in kernels.isa_supported():
        kernels.set_isa(name)
        w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
        x = w[0].copy()
        kernels.gemv_q8_0(kernels.quantize_q8_0(w), x)
        kernels.gemm_f32(w, np.stack([x, x]))
        kernels.softmax(w)
        kernels.gelu_tanh(w)
        c = np.zeros((1, 8, 64), np.float32)
        kernels.attention(np.ones((1, 1, 64), np.float32), 0, c, c, 0.125)
        assert ok(), "calling kernels on " + name + " turned on flush-to-zero"
    print("subnormals kept")
    """
)


CHILD_TIMEOUT_S = 60  # each child normally takes about a second; a hang is a failure


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYRUSTML_ISA", None)
    # the child imports pyrustml the way this process did
    paths = [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def test_importing_pyrustml_keeps_subnormals() -> None:
    """A fresh interpreter: import and calls on every path leave subnormal arithmetic working."""
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=CHILD_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr
    assert "subnormals kept" in out.stdout


def test_environment_variable_forces_each_path() -> None:
    """PYRUSTML_ISA=name makes name the active path from the first call; an unsupported name
    makes the import fail with LibraryError instead of silently running another path."""
    code = "from pyrustml import kernels; print(kernels.isa_active())"
    for name in kernels.isa_supported():
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=child_env(PYRUSTML_ISA=name),
            timeout=CHILD_TIMEOUT_S,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == name
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(PYRUSTML_ISA="bogus"),
        timeout=CHILD_TIMEOUT_S,
    )
    assert out.returncode != 0
    assert "LibraryError" in out.stderr and "PYRUSTML_ISA=bogus" in out.stderr
