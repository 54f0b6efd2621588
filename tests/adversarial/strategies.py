"""Hypothesis strategies for hostile inputs: JSON values at the edges of every type and range,
mutations of the fixtures' config files and safetensors headers, chat templates built from
risky Jinja pieces, OpenAI-shaped messages and generate() arguments."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from pyrustml.models import gemma3, gpt2

FIX = Path(__file__).resolve().parents[1] / "fixtures"
BASES = ["gpt2-tiny-hf", "gemma3-tiny"]

EDGE_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    1e-320,
    1e-300,
    1e-45,
    1.1e-38,
    1e-7,
    0.5,
    1.0,
    1.5,
    2.0,
    3.4e38,
    3.5e38,
    1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
    -1.0,
    -1e-300,
]
EDGE_INTS = [
    0,
    1,
    -1,
    2,
    31,
    32,
    127,
    128,
    255,
    256,
    4095,
    65535,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**30,
    10**400,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.integers(-1000, 1000),
    st.sampled_from(EDGE_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "0.7",
            "false",
            "true",
            "null",
            "NaN",
            "1e400",
            "gelu",
            "linear",
            "default",
            "sliding_attention",
            "full_attention",
            "\udc80",
            "\x00",
            "<bos>",
            "x" * 300,
        ]
    ),
    st.text(max_size=6),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


def _config(base: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIX / base / name).read_text())
    return data


def _keys(base: str) -> list[str]:
    mod = gpt2 if base.startswith("gpt2") else gemma3
    keys = set(_config(base, "config.json")) | set(mod.CONFIG_KEYS_READ) | set(mod.CONFIG_KEYS_REFUSED)
    return sorted(keys | {"model_type", "architectures", "torch_dtype", "rope_parameters", "layer_types"})


GENERATION_KEYS = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "do_sample",
    "eos_token_id",
    "bos_token_id",
    "pad_token_id",
    "max_length",
    "max_new_tokens",
]
TOKENIZER_KEYS = [
    "add_bos_token",
    "add_eos_token",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "chat_template",
    "model_max_length",
    "clean_up_tokenization_spaces",
]

ROPE_VALUES = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "rope_type": st.sampled_from(["default", "linear", "yarn", "dynamic", 5]),
            "factor": scalars,
            "rope_theta": scalars,
        }
    ),
    st.fixed_dictionaries({"full_attention": json_values, "sliding_attention": json_values}),
)


@st.composite
def json_file_cases(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(st.sampled_from(BASES))
    file = draw(st.sampled_from(["config.json", "generation_config.json", "tokenizer_config.json"]))
    keys = {
        "config.json": _keys(base),
        "generation_config.json": GENERATION_KEYS,
        "tokenizer_config.json": TOKENIZER_KEYS,
    }[file]
    changes: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)):
        changes[key] = draw(ROPE_VALUES if key.startswith("rope") else json_values)
    deletes = draw(st.lists(st.sampled_from(keys), max_size=1))
    return {"kind": "json", "base": base, "file": file, "changes": changes, "deletes": deletes}


def _header(base: str) -> dict[str, Any]:
    raw = (FIX / base / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    data: dict[str, Any] = json.loads(raw[8 : 8 + n])
    return data


@st.composite
def safetensors_cases(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(st.sampled_from(BASES))
    if draw(st.integers(0, 3)) == 0:  # raw bytes: the length prefix, the JSON's first bytes, truncation
        pokes = draw(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
        truncate = draw(st.one_of(st.none(), st.integers(0, 1 << 20)))
        append = base64.b64encode(draw(st.binary(max_size=16))).decode()
        return {"kind": "st_bytes", "base": base, "pokes": pokes, "truncate": truncate, "append": append}
    header = _header(base)
    names = sorted(header)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        what = draw(
            st.sampled_from(
                ["dtype", "shape", "data_offsets", "entry", "rename", "delete", "add", "metadata", "swap"]
            )
        )
        entry = header.get(name)
        if what in ("dtype", "shape", "data_offsets") and isinstance(entry, dict):
            if what == "dtype":
                entry["dtype"] = draw(
                    st.one_of(
                        st.sampled_from(
                            ["F32", "F16", "BF16", "F64", "I64", "I8", "BOOL", "F8_E4M3", "U64", "f32"]
                        ),
                        json_values,
                    )
                )
            elif what == "shape":
                entry["shape"] = draw(
                    st.one_of(st.lists(st.sampled_from(EDGE_INTS), max_size=3), json_values)
                )
            else:
                entry["data_offsets"] = draw(
                    st.one_of(st.lists(st.sampled_from(EDGE_INTS), max_size=3), json_values)
                )
        elif what == "entry":
            header[name] = draw(json_values)
        elif what == "rename":
            header[draw(st.text(max_size=20))] = header.pop(name)
        elif what == "delete":
            header.pop(name)
        elif what == "add":
            header[draw(st.text(max_size=20))] = draw(json_values)
        elif what == "metadata":
            header["__metadata__"] = draw(json_values)
        elif what == "swap" and len(names) > 1:
            other = draw(st.sampled_from(names))
            if other in header and name in header:
                header[name], header[other] = header[other], header[name]
    text = json.dumps(header)
    return {"kind": "st_header", "base": base, "header": text}


# ---- chat templates ----------------------------------------------------------------------------

NUMBERS = ["0", "1", "9", "10", "100000", "10**9", "9**9", "(9**9)**9", "2.0", "1e308", "-1", "10**5000"]
STRINGS = ["'a'", "'ab\\n'", "''", "messages[0]['content']", "bos_token", "'%s'", "'{}'", "'{:>99}'"]
BINOPS = ["**", "*", "+", "-", "/", "//", "%", "~"]
FILTERS = [
    "length",
    "string",
    "list",
    "join",
    "tojson",
    "int",
    "float",
    "center(NUM)",
    "indent(NUM)",
    "replace('a', STR)",
    "format(NUM)",
    "trim",
    "upper",
    "first",
    "last",
    "sort",
    "unique",
    "reverse",
    "batch(NUM)",
    "wordwrap(NUM)",
    "truncate(NUM)",
    "sum",
    "map('upper')",
    "select",
    "dictsort",
    "items",
    "attr('__class__')",
    "safe",
    "escape",
    "e",
    "round",
    "abs",
    "count",
    "random",
]
CALLS = [
    "range(NUM)",
    "raise_exception(STR)",
    "strftime_now(STR)",
    "strftime_now(NUM)",
    "namespace(x=NUM)",
    "dict(a=NUM)",
    "cycler(1, 2)",
    "joiner(STR)",
    "STR.ljust(NUM)",
    "STR.format(NUM)",
    "STR.replace('a', STR)",
    "STR.join([STR, STR])",
    "STR.__class__",
    "messages.__class__.__mro__",
    "messages.append(1)",
    "STR.zfill(NUM)",
    "STR.expandtabs(NUM)",
    "lipsum(NUM)",
]


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 4 if depth < 2 else 1))
    if kind == 0:
        return draw(st.sampled_from(NUMBERS))
    if kind == 1:
        return draw(st.sampled_from(STRINGS))
    if kind == 2:
        return (
            f"({draw(expressions(depth + 1))} {draw(st.sampled_from(BINOPS))} {draw(expressions(depth + 1))})"
        )
    if kind == 3:
        f = draw(st.sampled_from(FILTERS))
        f = f.replace("NUM", draw(st.sampled_from(NUMBERS))).replace("STR", draw(st.sampled_from(STRINGS)))
        return f"({draw(expressions(depth + 1))})|{f}"
    c = draw(st.sampled_from(CALLS))
    return c.replace("NUM", draw(st.sampled_from(NUMBERS))).replace("STR", draw(st.sampled_from(STRINGS)))


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        shape = draw(st.integers(0, 5))
        e = draw(expressions())
        if shape == 0:
            parts.append("{{ " + e + " }}")
        elif shape == 1:
            n = draw(st.sampled_from(NUMBERS))
            parts.append(
                "{% for i in range(" + n + ") %}{% for j in range(" + n + ") %}{{ " + e + " }}"
                "{% endfor %}{% endfor %}"
            )
        elif shape == 2:
            parts.append(
                "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f("
                + draw(st.sampled_from(NUMBERS))
                + ") }}"
            )
        elif shape == 3:
            parts.append(
                "{% set ns = namespace(x=" + e + ") %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}"
                "{% endfor %}{{ ns.x|length }}"
            )
        elif shape == 4:
            parts.append(
                "{% for m in messages %}{{ m['role'] }}: {{ m['content'] "
                + draw(st.sampled_from(["", "|trim"]))
                + " }}{% endfor %}"
            )
        else:
            parts.append(
                draw(
                    st.sampled_from(
                        [
                            "{% for",
                            "{{",
                            "{% if %}",
                            "{% endfor %}",
                            "{{ }}",
                            "{% raw %}",
                            "{% include 'x' %}",
                            "{% import 'os' as o %}",
                            "{% extends 'a' %}",
                        ]
                    )
                )
            )
    return "".join(parts)


content = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\udc80", "\x00", "<start_of_turn>", "{{ 9**9**9 }}", "日本", "🙂" * 5]),
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=10)}),
            st.fixed_dictionaries(
                {"type": st.sampled_from(["image", "image_url", "audio", "video", "tool"])}
            ),
            json_values,
        ),
        max_size=3,
    ),
    json_values,
)
messages = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"]), "content": content}
            ),
            json_values,
        ),
        max_size=4,
    ),
    json_values,
)


@st.composite
def chat_cases(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {
            "kind": "chat",
            "template": draw(templates()),
            "messages": [{"role": "user", "content": "hi"}],
        }
    return {"kind": "chat", "template": None, "messages": draw(messages)}


@st.composite
def template_file_cases(draw: st.DrawFn) -> dict[str, Any]:
    raw = draw(st.one_of(templates().map(lambda t: t.encode()), st.binary(max_size=40)))
    return {"kind": "template_file", "base": "gemma3-tiny", "data": base64.b64encode(raw).decode()}


# ---- generate() arguments ----------------------------------------------------------------------

NUMPY = st.sampled_from(
    [
        np.int64(5),
        np.int32(-1),
        np.uint8(3),
        np.float32(0.5),
        np.float64("nan"),
        np.float16(1e-7),
        np.bool_(True),
        np.int64(2**62),
    ]
)
api_values = st.one_of(
    scalars,
    NUMPY,
    st.lists(st.one_of(st.text(max_size=4), scalars), max_size=3),
    st.tuples(st.text(max_size=3)),
)
API_KEYS = [
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "seed",
    "stop",
    "ignore_eos",
    "lookup",
]
prompts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "\udc80", "\x00" * 4, "<|endoftext|>" * 3, "日本語🙂"]),
    st.lists(st.integers(-5, 500), max_size=6),
    st.lists(st.sampled_from([np.int64(3), np.int32(7), True, 1.0, "a", None]), max_size=3),
    scalars,
)


# Values each option accepts: mixed in so that cases also run generations, not only refusals.
VALID = {
    "max_tokens": st.integers(1, 4),
    "temperature": st.sampled_from([0, 0.0, 1e-6, 0.7, 1, 5.0]),
    "top_k": st.integers(0, 500),
    "top_p": st.floats(0, 1),
    "min_p": st.floats(0, 1),
    "repetition_penalty": st.sampled_from([1.0, 1.3, 0.5, 1e-6]),
    "seed": st.integers(0, 2**64),
    "stop": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=3)),
    "ignore_eos": st.booleans(),
    "lookup": st.integers(0, 8),
}


@st.composite
def api_cases(draw: st.DrawFn) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(API_KEYS), min_size=1, max_size=4, unique=True)):
        kwargs[key] = draw(st.one_of(VALID[key], api_values))
    if "max_tokens" not in kwargs or draw(st.booleans()):
        kwargs["max_tokens"] = draw(st.integers(1, 4))
    return {"kind": "api", "base": draw(st.sampled_from(BASES)), "prompt": draw(prompts), "kwargs": kwargs}
