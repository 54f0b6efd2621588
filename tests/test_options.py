"""The public-boundary checks of pyrustml.generate.options: every wrong type or value is a
family error naming the argument; what a caller reasonably passes comes back normalized."""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrustml.errors import OptionError, OptionTypeError, PyrustmlError
from pyrustml.generate.options import (
    MAX_LOOKUP,
    MAX_STOP_CHARS,
    MAX_STOPS,
    check_generation_options,
    check_load_arguments,
)

# (argument, bad value): each must be refused with an error that names the argument.
BAD_GENERATION = [
    ("max_tokens", "5"),
    ("max_tokens", 5.0),
    ("max_tokens", True),
    ("max_tokens", 0),
    ("max_tokens", -1),
    ("max_tokens", np.float64(5)),
    ("temperature", "0.5"),
    ("temperature", float("nan")),
    ("temperature", float("inf")),
    ("temperature", -0.1),
    ("temperature", 5e-324),
    ("temperature", 1e-320),
    ("temperature", 1e-7),
    ("temperature", 10**400),
    ("temperature", True),
    ("temperature", 1j),
    ("top_k", 1.5),
    ("top_k", -1),
    ("top_k", "40"),
    ("top_k", np.bool_(True)),
    ("top_p", 1.5),
    ("top_p", -0.01),
    ("top_p", float("nan")),
    ("top_p", "0.9"),
    ("min_p", 2),
    ("min_p", float("-inf")),
    ("repetition_penalty", 0),
    ("repetition_penalty", -1.0),
    ("repetition_penalty", 5e-324),
    ("repetition_penalty", 1e300),
    ("repetition_penalty", float("nan")),
    ("seed", 1.5),
    ("seed", -1),
    ("seed", "1"),
    ("seed", False),
    ("stop", [1]),
    ("stop", 5),
    ("stop", {"a": 1}),
    ("stop", ["ok", None]),
    ("stop", ["x"] * (MAX_STOPS + 1)),
    ("stop", "y" * (MAX_STOP_CHARS + 1)),
    ("ignore_eos", "yes"),
    ("ignore_eos", 1),
    ("ignore_eos", None),
    ("lookup", MAX_LOOKUP + 1),
    ("lookup", -1),
    ("lookup", 2.0),
    ("logprobs", "true"),
    ("top_logprobs", 21),
    ("top_logprobs", 1.0),
]


@pytest.mark.parametrize(
    ("name", "value"), BAD_GENERATION, ids=[f"{n}={v!r}"[:40] for n, v in BAD_GENERATION]
)
def test_bad_generation_option_is_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(OptionError) as info:
        check_generation_options(**{name: value})
    assert name.split("[")[0] in str(info.value)


def test_option_errors_are_family_errors_and_builtin_ones() -> None:
    # What the two tests around this one rely on, pinned once: callers may catch either base.
    assert issubclass(OptionError, PyrustmlError) and issubclass(OptionError, ValueError)
    assert issubclass(OptionTypeError, OptionError) and issubclass(OptionTypeError, TypeError)


@pytest.mark.parametrize(
    ("name", "value"), [("max_tokens", "5"), ("top_k", 1.5), ("stop", [1]), ("ignore_eos", "yes")]
)
def test_wrong_types_are_type_errors_too(name: str, value: object) -> None:
    with pytest.raises(OptionTypeError):
        check_generation_options(**{name: value})


def test_numpy_scalars_are_accepted_and_normalized() -> None:
    o = check_generation_options(
        max_tokens=np.int64(5),
        temperature=np.float32(0.5),
        top_k=np.uint8(40),
        top_p=np.float64(0.9),
        min_p=np.float16(0.05),
        repetition_penalty=np.int32(1),
        seed=np.int64(7),
        ignore_eos=np.bool_(True),
        lookup=np.int16(3),
    )
    assert (o.max_tokens, o.top_k, o.seed, o.lookup, o.ignore_eos) == (5, 40, 7, 3, True)
    for v in (o.max_tokens, o.top_k, o.seed, o.lookup):
        assert type(v) is int
    for v in (o.temperature, o.top_p, o.min_p, o.repetition_penalty):
        assert type(v) is float
    assert o.temperature == pytest.approx(0.5)
    assert type(o.ignore_eos) is bool


def test_unset_options_stay_unset() -> None:
    o = check_generation_options()
    assert o.max_tokens is None and o.temperature is None and o.top_k is None and o.seed is None
    assert o.stop == [] and o.ignore_eos is False and o.lookup == 0


@pytest.mark.parametrize(
    ("stop", "want"),
    [("x", ["x"]), (["a", "", "b"], ["a", "b"]), (("q",), ["q"]), ("", []), (None, []), ([], [])],
)
def test_stop_accepts_a_string_or_a_sequence(stop: object, want: list[str]) -> None:
    assert check_generation_options(stop=stop).stop == want


def test_greedy_and_the_smallest_temperature_are_accepted() -> None:
    assert check_generation_options(temperature=0).temperature == 0.0
    assert check_generation_options(temperature=1e-6).temperature == 1e-6
    assert check_generation_options(temperature=100).temperature == 100.0


def test_top_logprobs_needs_logprobs() -> None:
    with pytest.raises(OptionError, match="logprobs"):
        check_generation_options(top_logprobs=3)
    o = check_generation_options(logprobs=True, top_logprobs=3)
    assert (o.logprobs, o.top_logprobs) == (True, 3)


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.complex_numbers(),
    )
)
def test_any_value_is_accepted_or_a_family_error(value: object) -> None:
    for name in ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed",
                 "stop", "ignore_eos", "lookup"):  # fmt: skip
        try:
            o = check_generation_options(**{name: value})
        except PyrustmlError as exc:
            assert name in str(exc)
            continue
        got = getattr(o, name)
        if isinstance(got, float):
            assert math.isfinite(got)


# ---- load ---------------------------------------------------------------------------------------


def test_load_source_accepts_paths_and_expands_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_load_arguments(pathlib.Path("/x/y")).source == "/x/y"
    assert check_load_arguments("~/m").source == os.path.join(str(tmp_path), "m")
    assert check_load_arguments(pathlib.Path("~") / "m").source == os.path.join(str(tmp_path), "m")
    assert check_load_arguments("google/gemma-3-1b-it").source == "google/gemma-3-1b-it"


BAD_LOAD = [
    ("source", None),
    ("source", 5),
    ("source", b"/bytes/path"),
    ("source", ""),
    ("source", "a\x00b"),
    ("source", "\udc80"),
    ("quant", None),
    ("quant", 8),
    ("threads", "2"),
    ("threads", 0),
    ("threads", 257),
    ("threads", True),
    ("threads", 2.0),
    ("revision", 5),
    ("revision", ""),
    ("ctx", "4096"),
    ("ctx", 0),
    ("parallel", 1.5),
    ("parallel", 0),
]


@pytest.mark.parametrize(("name", "value"), BAD_LOAD, ids=[f"{n}={v!r}"[:40] for n, v in BAD_LOAD])
def test_bad_load_argument_is_refused_by_name(name: str, value: object) -> None:
    kwargs: dict[str, object] = {"source": "some/dir", name: value}
    with pytest.raises(OptionError) as info:
        check_load_arguments(**kwargs)  # type: ignore[arg-type]
    assert name in str(info.value)


def test_load_numbers_are_normalized() -> None:
    a = check_load_arguments("d", "f32", np.int64(2), "main", np.int32(4096), np.uint8(2))
    assert (a.quant, a.threads, a.revision, a.ctx, a.parallel) == ("f32", 2, "main", 4096, 2)
    assert type(a.threads) is int and type(a.ctx) is int and type(a.parallel) is int


# ---- one rule for every boundary -------------------------------------------------------------
# (option, CLI flag, value): values at and around each range's edges. The API, the CLI and a
# checkpoint's generation_config.json take their ranges from io.values, so each edge value is
# accepted by all three or refused by all three (before, the CLI refused --top-p 0 and
# --temperature 1e-4 that the API took, and the API took a top_k the config file refused).
EDGES = [
    ("temperature", "--temperature", v) for v in (0.0, 1e-7, 1e-6, 1e-4, 2.0, -0.0, -1e-9, 1e6)
] + [
    ("top_p", "--top-p", v) for v in (0.0, 1e-9, 1.0, 1.0000001, -1e-9)
] + [
    ("min_p", "--min-p", v) for v in (0.0, 1.0, 1.5)
] + [
    ("repetition_penalty", "--repeat-penalty", v) for v in (1e-7, 1e-6, 1.0, 1e6, 1.1e6)
] + [
    ("top_k", "--top-k", v) for v in (0, 1, 2**31, 2**62, -1)
]  # fmt: skip


@pytest.mark.parametrize(("option", "flag", "value"), EDGES, ids=[f"{o}={v!r}" for o, _, v in EDGES])
def test_api_cli_and_config_agree_at_the_edges(option: str, flag: str, value: float) -> None:
    from pyrustml import cli
    from pyrustml.io.config import Fields, generation_defaults

    def refused(f: Any) -> str | None:
        try:
            f()
        except (PyrustmlError, cli.UsageError) as exc:
            return str(exc)
        return None

    api = refused(lambda: check_generation_options(**{option: value}))
    args = cli._parser().parse_args(["-p", "x", f"{flag}={value}"])
    by_cli = refused(lambda: cli._validate(args))
    by_config = refused(lambda: generation_defaults(Fields({option: value}, "generation_config.json")))
    assert (api is None) == (by_cli is None) == (by_config is None), (api, by_cli, by_config)
    if api is not None:
        assert option in api and flag in str(by_cli) and repr(option) in str(by_config)
