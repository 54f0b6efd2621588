"""Argument checking of the kernel wrappers: a wrong dtype raises KernelTypeError (a TypeError);
a wrong shape, non-contiguous, misaligned, empty array or K % 32 != 0 raises KernelArgumentError
(a ValueError); both are PyrustmlErrors and every message names the offending argument."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import pyrustml
from pyrustml import kernels
from pyrustml.errors import KernelArgumentError, KernelTypeError, PyrustmlError

K = 64  # a valid Q8_0 row length
N = 3
T = 2
D = 8


def _w() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, K)).astype(np.float32)


def _q() -> kernels.Q8Matrix:
    return kernels.quantize_q8_0(_w())


def f32(*shape: int) -> np.ndarray:
    return np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)


# function name -> (the function, its valid keyword arguments)
VALID: dict[str, tuple[Callable[..., Any], Callable[[], dict[str, Any]]]] = {
    "quantize_q8_0": (kernels.quantize_q8_0, lambda: {"w": _w()}),
    "gemv_q8_0": (kernels.gemv_q8_0, lambda: {"q": _q(), "x": f32(K), "bias": f32(N)}),
    "gemm_q8_0": (kernels.gemm_q8_0, lambda: {"q": _q(), "x": f32(T, K), "bias": f32(N)}),
    "gemv_f32": (kernels.gemv_f32, lambda: {"w": _w(), "x": f32(K), "bias": f32(N)}),
    "gemm_f32": (kernels.gemm_f32, lambda: {"w": _w(), "x": f32(T, K), "bias": f32(N)}),
    "lmhead_q8_0": (kernels.lmhead_q8_0, lambda: {"q": _q(), "x": f32(K)}),
    "lmhead_f32": (kernels.lmhead_f32, lambda: {"w": _w(), "x": f32(K)}),
    "lmhead_argmax_q8_0": (kernels.lmhead_argmax_q8_0, lambda: {"q": _q(), "x": f32(K)}),
    "lmhead_argmax_f32": (kernels.lmhead_argmax_f32, lambda: {"w": _w(), "x": f32(K)}),
    "layernorm": (kernels.layernorm, lambda: {"x": f32(T, D), "gamma": f32(D), "beta": f32(D), "eps": 1e-5}),
    "rmsnorm": (kernels.rmsnorm, lambda: {"x": f32(T, D), "w": f32(D), "eps": 1e-6, "offset": 1.0}),
    "gelu_tanh": (kernels.gelu_tanh, lambda: {"x": f32(D)}),
    "geglu": (kernels.geglu, lambda: {"gate": f32(D), "up": f32(D)}),
    "add": (kernels.add, lambda: {"a": f32(D), "b": f32(D)}),
    "softcap": (kernels.softcap, lambda: {"x": f32(D), "cap": 30.0}),
    "softmax": (kernels.softmax, lambda: {"x": f32(T, D)}),
    "rope": (kernels.rope, lambda: {"x": f32(T, 2, D), "pos": np.arange(T, dtype=np.int64), "theta": 1e4}),
    "kv_write": (
        kernels.kv_write,
        lambda: {
            "k_new": f32(1, 2, D),
            "v_new": f32(1, 2, D),
            "pos0": 0,
            "k_cache": f32(2, 4, D),
            "v_cache": f32(2, 4, D),
        },
    ),
    "attention": (
        kernels.attention,
        lambda: {
            "q": f32(1, 4, D),
            "pos0": 0,
            "k_cache": f32(2, 4, D),
            "v_cache": f32(2, 4, D),
            "scale": 0.35,
            "window": 0,
            "softcap": 0.0,
        },
    ),
    "from_blocks": (kernels.Q8Matrix.from_blocks, lambda: {"blocks": _q().blocks.copy(), "k": K}),
}

# Arguments whose last axis must match another argument's (a wrong length is a shape error).
LENGTH_TIED = {
    ("gemv_q8_0", "x"),
    ("gemv_q8_0", "bias"),
    ("gemm_q8_0", "x"),
    ("gemm_q8_0", "bias"),
    ("gemv_f32", "x"),
    ("gemv_f32", "bias"),
    ("gemm_f32", "x"),
    ("gemm_f32", "bias"),
    ("lmhead_q8_0", "x"),
    ("lmhead_f32", "x"),
    ("lmhead_argmax_q8_0", "x"),
    ("lmhead_argmax_f32", "x"),
    ("layernorm", "gamma"),
    ("layernorm", "beta"),
    ("rmsnorm", "w"),
    ("geglu", "up"),
    ("add", "b"),
    ("rope", "pos"),
    ("from_blocks", "blocks"),
}
# Arguments that must have exactly this many dimensions (softmax/norms also take 1-D x).
FIXED_NDIM = {
    (f, a) for f, (_, make) in VALID.items() for a, v in make().items() if isinstance(v, np.ndarray)
} - {
    ("layernorm", "x"),
    ("rmsnorm", "x"),
    ("softmax", "x"),
    ("gelu_tanh", "x"),
    ("softcap", "x"),
    ("geglu", "gate"),
    ("add", "a"),
}


def misaligned_like(a: np.ndarray) -> np.ndarray:
    """Same dtype, shape and values, at a byte offset of 1 into a uint8 buffer: not aligned."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


def non_contiguous_like(a: np.ndarray) -> np.ndarray:
    """Same dtype, shape and values, as every other element of a twice-as-long last axis."""
    big = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
    big[..., ::2] = a
    s = big[..., ::2]
    assert not s.flags.c_contiguous
    return s


def wrong_dtype_like(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32 if a.dtype != np.float32 else np.float64)


def empty_like(a: np.ndarray) -> np.ndarray:
    return np.zeros((*a.shape[:-1], 0), dtype=a.dtype)


def longer_like(a: np.ndarray) -> np.ndarray:
    return np.zeros((*a.shape[:-1], a.shape[-1] + 1), dtype=a.dtype)


def extra_axis_like(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[None])


MUTATIONS: dict[str, tuple[Callable[[np.ndarray], Any], type[Exception]]] = {
    "wrong-dtype": (wrong_dtype_like, KernelTypeError),
    "not-an-array": (lambda a: a.tolist(), KernelTypeError),
    "non-contiguous": (non_contiguous_like, KernelArgumentError),
    "misaligned": (misaligned_like, KernelArgumentError),
    "empty": (empty_like, KernelArgumentError),
    "wrong-length": (longer_like, KernelArgumentError),
    "wrong-ndim": (extra_axis_like, KernelArgumentError),
}


def array_cases() -> list[Any]:
    cases = []
    for fname, (_, make) in VALID.items():
        for arg, value in make().items():
            if not isinstance(value, np.ndarray):
                continue
            for mname in MUTATIONS:
                if mname == "wrong-length" and (fname, arg) not in LENGTH_TIED:
                    continue
                if mname == "wrong-ndim" and (fname, arg) not in FIXED_NDIM:
                    continue
                if mname == "empty" and fname == "from_blocks":
                    continue  # an empty blocks array is also the wrong length; covered there
                if mname == "misaligned" and value.dtype.itemsize == 1:
                    continue  # bytes are always aligned
                cases.append(pytest.param(fname, arg, mname, id=f"{fname}-{arg}-{mname}"))
    return cases


def names_in(msg: str, name: str) -> bool:
    """Whether the message names `name`. A longer name may appear anywhere as a whole word; a
    one-letter name ("a", "x") is also an ordinary word, so it counts only where it reads as a
    name: opening the message (after an optional "kernel: "), after "and"/"or"/"argument"/
    "parameter", or quoted."""
    n = re.escape(name)
    if len(name) > 1:
        return re.search(rf"(?<![\w.]){n}(?!\w)", msg) is not None
    patterns = (rf"^(?:\w+: )?{n}\b", rf"\b(?:and|or|argument|parameter) {n}\b", rf"['`\"]{n}['`\"]")
    return any(re.search(p, msg) for p in patterns)


def assert_names(exc: BaseException, *names: str) -> None:
    msg = str(exc)
    assert any(names_in(msg, n) for n in names), f"message {msg!r} does not name {' or '.join(names)}"


@pytest.mark.parametrize(("fname", "arg", "mutation"), array_cases())
def test_bad_array_argument_is_refused_by_name(fname: str, arg: str, mutation: str) -> None:
    fn, make = VALID[fname]
    kwargs = make()
    mutate, expected = MUTATIONS[mutation]
    kwargs[arg] = mutate(kwargs[arg])
    with pytest.raises(expected) as info:
        fn(**kwargs)
    assert isinstance(info.value, PyrustmlError)
    assert isinstance(info.value, TypeError if expected is KernelTypeError else ValueError)
    assert_names(info.value, arg)


@pytest.mark.parametrize("fname", list(VALID))
def test_valid_arguments_are_accepted(fname: str) -> None:
    """The baseline every refusal above mutates is itself valid: accepted, with a result that is
    finite and of the right size (kv_write: the new rows are in the caches)."""
    fn, make = VALID[fname]
    kwargs = make()
    result = fn(**kwargs)
    if fname == "kv_write":
        assert result is None
        for new, cache in (("k_new", "k_cache"), ("v_new", "v_cache")):
            np.testing.assert_array_equal(kwargs[cache][:, kwargs["pos0"]], kwargs[new][0])
    elif isinstance(result, kernels.Q8Matrix):
        got = result.dequantize()
        assert got.shape == (N, K) and np.isfinite(got).all()
    elif isinstance(result, tuple):
        index, value = result
        assert 0 <= index < N and np.isfinite(value)
    else:
        assert isinstance(result, np.ndarray) and result.size > 0 and np.isfinite(result).all()


@pytest.mark.parametrize(
    ("call", "names"),
    [
        pytest.param(lambda: kernels.quantize_q8_0(f32(N, 48)), ("w",), id="quantize-K48"),
        pytest.param(lambda: kernels.quantize_q8_0(f32(N, 1)), ("w",), id="quantize-K1"),
        pytest.param(lambda: kernels.Q8Matrix(N, 48), ("Q8Matrix",), id="Q8Matrix-K48"),
        pytest.param(lambda: kernels.Q8Matrix(0, 64), ("Q8Matrix",), id="Q8Matrix-N0"),
        pytest.param(
            lambda: kernels.Q8Matrix.from_blocks(np.zeros((N, 51), np.uint8), 48),
            ("k",),
            id="from_blocks-K48",
        ),
        pytest.param(lambda: kernels.gemv_q8_0(_q(), f32(K + 32)), ("x",), id="gemv-x-one-block-more"),
        pytest.param(lambda: kernels.gemv_f32(_w(), f32(K - 1)), ("x",), id="gemv_f32-x-short"),
    ],
)
def test_q8_row_length_must_be_a_multiple_of_32(call: Callable[[], Any], names: tuple[str, ...]) -> None:
    with pytest.raises(KernelArgumentError) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert_names(info.value, *names)


@pytest.mark.parametrize(
    "make_bad", [misaligned_like, non_contiguous_like], ids=["misaligned", "non-contiguous"]
)
def test_quantize_refuses_bad_float16_layouts(make_bad: Callable[[np.ndarray], np.ndarray]) -> None:
    with pytest.raises(KernelArgumentError, match=r"^w\b"):
        kernels.quantize_q8_0(make_bad(_w().astype(np.float16)))


def test_quantize_refuses_non_finite_weights_by_name() -> None:
    w = _w()
    w[1, 5] = np.nan
    with pytest.raises(KernelArgumentError, match=r"\bw\b"):
        kernels.quantize_q8_0(w)


def test_wrong_object_kinds() -> None:
    with pytest.raises(KernelTypeError, match=r"\bq\b"):
        kernels.gemv_q8_0(_q().blocks, f32(K))  # type: ignore[arg-type]
    with pytest.raises(KernelTypeError, match=r"\bq\b"):
        kernels.lmhead_argmax_q8_0(_w(), f32(K))  # type: ignore[arg-type]
    with pytest.raises(KernelTypeError, match=r"\bx\b"):
        kernels.gelu_tanh(np.float32(1.0))  # type: ignore[arg-type]
    with pytest.raises(KernelArgumentError, match=r"\bblocks\b"):
        bad = _q().blocks.copy()
        bad[0, 2] = 0x80  # the quant -128, which no ggml quantizer produces
        kernels.Q8Matrix.from_blocks(bad, K)


def test_read_only_caches_are_refused() -> None:
    kw = VALID["kv_write"][1]()
    kw["k_cache"].flags.writeable = False
    with pytest.raises(KernelArgumentError, match=r"\bk_cache\b"):
        kernels.kv_write(**kw)


@pytest.mark.parametrize(
    ("fname", "overrides", "names"),
    [
        pytest.param("rope", {"x": f32(T, 2, 7)}, ("head_dim", "x"), id="rope-odd-head_dim"),
        pytest.param(
            "rope", {"pos": np.array([0, 1 << 24], np.int64)}, ("pos", "positions"), id="rope-pos-2^24"
        ),
        pytest.param(
            "rope", {"pos": np.array([0, -1], np.int64)}, ("pos", "positions"), id="rope-pos-negative"
        ),
        pytest.param("rope", {"theta": 0.0}, ("theta",), id="rope-theta-0"),
        pytest.param("rope", {"theta": float("nan")}, ("theta",), id="rope-theta-nan"),
        pytest.param("softcap", {"cap": 0.0}, ("cap",), id="softcap-cap-0"),
        pytest.param("softcap", {"cap": -1.0}, ("cap",), id="softcap-cap-negative"),
        pytest.param("softcap", {"cap": float("nan")}, ("cap",), id="softcap-cap-nan"),
        pytest.param("kv_write", {"pos0": -1}, ("pos0",), id="kv_write-pos0-negative"),
        pytest.param(
            "kv_write", {"v_new": f32(1, 1, D)}, ("k_new", "v_new", "k and v"), id="kv_write-k-v-mismatch"
        ),
        pytest.param(
            "kv_write",
            {"k_cache": f32(2, 5, D)},
            ("k_cache", "v_cache", "k and v"),
            id="kv_write-caches-mismatch",
        ),
        pytest.param(
            "kv_write", {"k_cache": f32(3, 4, D), "v_cache": f32(3, 4, D)}, ("cache",), id="kv_write-n_kv"
        ),
        pytest.param("attention", {"pos0": -1}, ("pos0",), id="attention-pos0-negative"),
        pytest.param("attention", {"window": -1}, ("window",), id="attention-window-negative"),
        pytest.param(
            "attention", {"v_cache": f32(2, 5, D)}, ("k_cache", "v_cache"), id="attention-caches-mismatch"
        ),
        pytest.param("attention", {"q": f32(1, 3, D)}, ("heads",), id="attention-heads-not-divisible"),
        pytest.param("attention", {"q": f32(1, 4, D + 1)}, ("head_dim",), id="attention-head_dim-mismatch"),
        pytest.param("attention", {"pos0": 4}, ("cache", "positions"), id="attention-positions-not-in-cache"),
        pytest.param(
            "attention",
            {"q": f32(1, 2, 520), "k_cache": f32(1, 4, 520), "v_cache": f32(1, 4, 520)},
            ("head_dim",),
            id="attention-head_dim-520",
        ),
    ],
)
def test_bad_scalar_or_relation_is_refused_by_name(
    fname: str, overrides: dict[str, Any], names: tuple[str, ...]
) -> None:
    fn, make = VALID[fname]
    kwargs = make()
    kwargs.update(overrides)
    with pytest.raises(KernelArgumentError) as info:
        fn(**kwargs)
    assert_names(info.value, *names)


@pytest.mark.parametrize(
    ("fname", "overrides", "name"),
    [
        pytest.param("layernorm", {"eps": -1e-5}, "eps", id="layernorm-eps-negative"),
        pytest.param("layernorm", {"eps": float("nan")}, "eps", id="layernorm-eps-nan"),
        pytest.param("rmsnorm", {"eps": -1e-6}, "eps", id="rmsnorm-eps-negative"),
        pytest.param("attention", {"softcap": -1.0}, "softcap", id="attention-softcap-negative"),
        pytest.param(
            "attention",
            {"softcap": float("nan")},
            "softcap",
            id="attention-softcap-nan",
        ),
        pytest.param("attention", {"scale": float("nan")}, "scale", id="attention-scale-nan"),
        pytest.param("attention", {"scale": float("inf")}, "scale", id="attention-scale-inf"),
        pytest.param(
            "attention",
            {"pos0": 1 << 40, "window": 2},
            "pos0",
            id="attention-pos0-2^40",
        ),
        pytest.param("kv_write", {"pos0": 1 << 40}, "pos0", id="kv_write-pos0-2^40"),
        pytest.param(
            "rope",
            {"x": f32(1, 1, 1026), "pos": np.zeros(1, np.int64)},
            "head_dim",
            id="rope-head_dim-1026",
        ),
    ],
)
def test_values_libq8_refuses_are_refused_by_name(fname: str, overrides: dict[str, Any], name: str) -> None:
    fn, make = VALID[fname]
    kwargs = make()
    kwargs.update(overrides)
    with pytest.raises(KernelArgumentError) as info:
        fn(**kwargs)
    assert_names(info.value, name)


@pytest.mark.parametrize("fname", ["softcap", "attention"])
def test_infinite_softcap_is_refused_or_is_the_identity(fname: str) -> None:
    fn, make = VALID[fname]
    kwargs = make()
    kwargs["softcap" if fname == "attention" else "cap"] = float("inf")
    try:
        y = fn(**kwargs)
    except KernelArgumentError as exc:
        assert_names(exc, "cap", "softcap")
        return
    # the limit cap -> inf of cap * tanh(s / cap) is s: no capping at all
    if fname == "attention":
        kwargs["softcap"] = 0.0
        np.testing.assert_array_equal(y, fn(**kwargs))
    else:
        np.testing.assert_array_equal(y, kwargs["x"])


@pytest.mark.parametrize("threads", [0, -1, 257, True])
def test_runtime_config_refuses_bad_thread_counts(threads: Any) -> None:
    with pytest.raises(KernelArgumentError, match=r"\bthreads\b"):
        pyrustml.RuntimeConfig(threads=threads)


@pytest.mark.parametrize("threads", [1.5, "2"])
def test_runtime_config_refuses_non_integer_thread_counts(threads: Any) -> None:
    try:
        with pytest.raises(KernelTypeError, match=r"\bthreads\b"):
            pyrustml.RuntimeConfig(threads=threads)
    finally:
        pyrustml.RuntimeConfig()
