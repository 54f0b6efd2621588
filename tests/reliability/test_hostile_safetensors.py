"""Malformed safetensors files: every one is refused with a ModelFormatError that names the file
(and the tensor, where there is one), by the low-level reader and by pyrustml.load; no other
exception type, no crash (CI runs this file under AddressSanitizer too).

Files are built by hand here (bytes, not a library), so each defect is exactly the one intended;
the valid ones are checked against the safetensors library, which must read them the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import FIX

import pyrustml
from pyrustml.errors import ModelFormatError, ModelNotFoundError, PyrustmlError
from pyrustml.io.safetensors import MAX_HEADER, Checkpoint

FILE = "model.safetensors"

# The ci profile (default) is derandomized: every run draws the same examples.
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ = settings(
    max_examples=300 if _PROFILE == "dev" else 60,
    derandomize=_PROFILE != "dev",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---- building files by hand -------------------------------------------------------------------
def assemble(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def encode_header(meta: dict[str, Any]) -> bytes:
    """JSON padded with spaces to a multiple of 8 bytes, as the safetensors writer does."""
    text = json.dumps(meta, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def build(tensors: list[tuple[str, str, list[int], bytes]], metadata: dict[str, str] | None = None) -> bytes:
    """A valid file: (name, dtype, shape, raw little-endian bytes), stored in the given order."""
    meta: dict[str, Any] = {} if metadata is None else {"__metadata__": metadata}
    data = b""
    for name, dtype, shape, raw in tensors:
        meta[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return assemble(encode_header(meta), data)


def bf16_words(a: np.ndarray) -> bytes:
    """float32 -> bfloat16 by truncation (exact for the values used here)."""
    return (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


W_F32 = np.arange(6, dtype="<f4").reshape(2, 3) / 4
W_F16 = np.array([1.5, -2.0, 0.25, 65504.0], dtype="<f2")
W_BF16 = np.array([[1.0, -0.5], [3.0, 256.0]], dtype="<f4")
W_I64 = np.array(-7, dtype="<i8")
TINY_TENSORS = [
    ("w.f32", "F32", [2, 3], W_F32.tobytes()),
    ("w.f16", "F16", [4], W_F16.tobytes()),
    ("w.bf16", "BF16", [2, 2], bf16_words(W_BF16)),
    ("empty", "U8", [0, 5], b""),
    ("step", "I64", [], W_I64.tobytes()),
]
TINY = build(TINY_TENSORS, {"format": "pt"})


def write(tmp_path: Path, content: bytes) -> Path:
    d = tmp_path / "ckpt"
    d.mkdir(exist_ok=True)
    (d / FILE).write_bytes(content)
    return d


def refused(tmp_path: Path, content: bytes, *needles: str) -> str:
    """Checkpoint() must raise ModelFormatError naming the file and every needle."""
    d = write(tmp_path, content)
    with pytest.raises(ModelFormatError) as err:
        Checkpoint(str(d)).close()
    msg = str(err.value)
    assert FILE in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


def one_tensor(entry: dict[str, Any], data: bytes, name: str = "t") -> bytes:
    return assemble(encode_header({name: entry}), data)


# ---- the valid tiny file ---------------------------------------------------------------------
def test_tiny_file_is_valid_and_read_like_the_safetensors_library(tmp_path: Path) -> None:
    assert 200 <= len(TINY) <= 600
    d = write(tmp_path, TINY)
    ours = Checkpoint(str(d))
    theirs = safetensors.numpy.load(TINY.replace(b'"BF16"', b'"F16" '))  # numpy has no bf16
    assert sorted(ours.names()) == sorted(n for n, *_ in TINY_TENSORS)
    np.testing.assert_array_equal(ours.raw("w.f32"), W_F32)
    np.testing.assert_array_equal(ours.raw("w.f32"), theirs["w.f32"])
    np.testing.assert_array_equal(ours.raw("w.f16"), theirs["w.f16"])
    np.testing.assert_array_equal(ours.float32("w.bf16"), W_BF16)
    assert ours.raw("empty").shape == (0, 5) and ours.raw("step").shape == ()
    assert int(ours.raw("step")) == -7
    ours.close()


# ---- the 8-byte length and the header ---------------------------------------------------------
@pytest.mark.parametrize("size", range(0, 8))
def test_file_shorter_than_8_bytes(tmp_path: Path, size: int) -> None:
    refused(tmp_path, TINY[:size], "empty" if size == 0 else "too short")


@pytest.mark.parametrize("n", [MAX_HEADER + 1, 2**63, 2**64 - 1])
def test_huge_header_length(tmp_path: Path, n: int) -> None:
    refused(tmp_path, struct.pack("<Q", n) + TINY[8:], str(n), "limit")


@pytest.mark.parametrize("extra", [1, 1000, MAX_HEADER - 400])
def test_header_length_past_the_end(tmp_path: Path, extra: int) -> None:
    n = len(TINY) - 8 + extra
    refused(tmp_path, struct.pack("<Q", n) + TINY[8:], "past the end")


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (b'{"t\xff":1}', "not UTF-8"),
        (b'{"t":\xc3(}', "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not JSON"),  # a UTF-8 byte-order mark is not JSON
        (b'{"t": {"dtype": "F32"', "not JSON"),
        (b"hello", "not JSON"),
        (b"", "not JSON"),
        (b"{}\x00", "not JSON"),
        (b"[]", "not an object"),
        (b'"a string"', "not an object"),
        (b"42", "not an object"),
        (b"null", "not an object"),
        (b'{"t": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', "NaN"),
        (b'{"t": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}', "Infinity"),
        (b'{"t": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}', "JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
    ids=[
        "bad-utf8-key", "bad-utf8-value", "bom", "cut-json", "not-json", "empty", "nul-after",
        "list", "string", "number", "null", "nan-literal", "infinity-literal", "5000-digit-number",
        "nested-100000-deep",
    ],
)  # fmt: skip
def test_header_not_utf8_json_or_object(tmp_path: Path, header: bytes, needle: str) -> None:
    refused(tmp_path, assemble(header, b"\0" * 4), needle)


def test_header_padding_with_spaces_is_accepted(tmp_path: Path) -> None:
    """The safetensors writer pads with spaces; leading and trailing JSON whitespace is fine."""
    header = b'  {"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}     '
    d = write(tmp_path, assemble(header, struct.pack("<f", 2.5)))
    assert Checkpoint(str(d)).raw("t").tolist() == [2.5]


# ---- repeated keys ----------------------------------------------------------------------------
T_ENTRY = b'{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'


@pytest.mark.parametrize(
    "header",
    [
        b'{"t":' + T_ENTRY + b',"t":' + T_ENTRY + b"}",
        b'{"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        b'{"__metadata__":{"a":"1","a":"2"},"t":' + T_ENTRY + b"}",
    ],
    ids=["tensor", "field", "metadata"],
)
def test_repeated_key_is_refused(tmp_path: Path, header: bytes) -> None:
    """json and the safetensors library both let the last copy win; two readers of one file
    must not disagree about which bytes a name means, so we refuse."""
    msg = refused(tmp_path, assemble(header, b"\0" * 4), "repeats the key")
    assert "'t'" in msg or "'dtype'" in msg or "'a'" in msg


# ---- __metadata__ -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "metadata", [[1], "pt", {"format": 1}, {"nested": {"a": "b"}}, None, {"dtype": "F32", "shape": [1]}]
)
def test_metadata_must_be_an_object_of_strings(tmp_path: Path, metadata: Any) -> None:
    meta = {"__metadata__": metadata, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    refused(tmp_path, assemble(encode_header(meta), b"\0" * 4), "__metadata__")


def test_metadata_is_ignored_not_a_tensor(tmp_path: Path) -> None:
    d = write(tmp_path, build([("t", "F32", [1], b"\0" * 4)], {"format": "pt", "__x": ""}))
    assert Checkpoint(str(d)).names() == ["t"]


# ---- one tensor's entry -----------------------------------------------------------------------
OK_ENTRY: dict[str, Any] = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dtype": "F8_E4M3"}, "unsupported dtype"),
        ({"dtype": "f32"}, "unsupported dtype"),
        ({"dtype": 4}, "unsupported dtype"),
        ({"dtype": None}, "unsupported dtype"),
        ({"shape": [2.0]}, "not a list of integers"),
        ({"shape": [True, 2]}, "not a list of integers"),
        ({"shape": "2"}, "not a list of integers"),
        ({"shape": None}, "not a list of integers"),
        ({"shape": [-2], "data_offsets": [0, 8]}, "negative dimension"),
        ({"shape": [-1, -2]}, "negative dimension"),
        ({"data_offsets": [0]}, "not two integers"),
        ({"data_offsets": [0, 4, 8]}, "not two integers"),
        ({"data_offsets": ["0", "8"]}, "not two integers"),
        ({"data_offsets": [0, 8.0]}, "not two integers"),
        ({"data_offsets": [False, 8]}, "not two integers"),
        ({"data_offsets": [8, 0]}, "out of order"),
        ({"data_offsets": [-8, 0]}, "negative"),
        ({"data_offsets": [0, 400]}, "past the data"),
        ({"data_offsets": [0, 2**64]}, "past the data"),
        ({"shape": [3]}, "needs 12 bytes"),
        ({"shape": [1]}, "needs 4 bytes"),
        ({"shape": [2, 0]}, "needs 0 bytes"),
        ({"dtype": "F16"}, "needs 4 bytes"),
        ({"dtype": "F64"}, "needs 16 bytes"),
        ({"shape": [2**62, 4, 0], "data_offsets": [0, 0]}, "overflows int64"),
        ({"shape": [0, 2**62, 4], "data_offsets": [0, 0]}, "overflows int64"),
        ({"shape": [2**63, 0], "data_offsets": [0, 0]}, "overflows int64"),
        ({"shape": [2**32, 2**32, 2**32], "data_offsets": [0, 8]}, "overflows int64"),
        ({"shape": [2**31, 2**31]}, "overflows int64"),
    ],
)
def test_bad_tensor_entry_names_file_and_tensor(tmp_path: Path, change: dict[str, Any], needle: str) -> None:
    entry = {**OK_ENTRY, **change}
    refused(tmp_path, one_tensor(entry, b"\0" * 8, name="layer.7.w"), "'layer.7.w'", needle)


@pytest.mark.parametrize("entry", [[], "F32", 5, None])
def test_entry_that_is_not_an_object(tmp_path: Path, entry: Any) -> None:
    refused(tmp_path, assemble(encode_header({"w": entry})), "'w'", "not an object")


def test_the_unchanged_entry_is_valid(tmp_path: Path) -> None:
    """The base of the parametrized refusals above loads: each refusal is its change's doing."""
    d = write(tmp_path, one_tensor(OK_ENTRY, struct.pack("<2f", 1.0, 2.0), name="layer.7.w"))
    assert Checkpoint(str(d)).raw("layer.7.w").tolist() == [1.0, 2.0]


# ---- how the ranges cover the data -------------------------------------------------------------
def two(a: list[int], b: list[int], data_len: int) -> bytes:
    meta = {
        "a": {"dtype": "U8", "shape": [a[1] - a[0]], "data_offsets": a},
        "b": {"dtype": "U8", "shape": [b[1] - b[0]], "data_offsets": b},
    }
    return assemble(encode_header(meta), bytes(range(data_len)))


@pytest.mark.parametrize(
    ("a", "b", "data_len", "needle"),
    [
        ([0, 8], [4, 12], 12, "overlap"),
        ([0, 8], [0, 8], 8, "overlap"),
        ([4, 12], [0, 8], 12, "overlap"),
        ([0, 12], [4, 8], 12, "overlap"),
        ([0, 4], [6, 10], 10, "belong to no tensor"),
        ([2, 6], [6, 10], 10, "belong to no tensor"),
        ([0, 4], [4, 8], 12, "trailing bytes"),
    ],
    ids=["partial", "same", "partial-reversed", "nested", "gap", "gap-at-start", "trailing"],
)
def test_ranges_must_tile_the_data(
    tmp_path: Path, a: list[int], b: list[int], data_len: int, needle: str
) -> None:
    msg = refused(tmp_path, two(a, b, data_len), needle)
    if needle != "trailing bytes":
        assert "'a'" in msg or "'b'" in msg


def test_ranges_out_of_file_order_are_fine(tmp_path: Path) -> None:
    d = write(tmp_path, two([4, 8], [0, 4], 8))
    ck = Checkpoint(str(d))
    assert ck.raw("a").tolist() == [4, 5, 6, 7] and ck.raw("b").tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("extra", [b"\0", b"\0" * 8, TINY])
def test_trailing_bytes_after_the_data_are_refused(tmp_path: Path, extra: bytes) -> None:
    """As the safetensors library does ("file not fully covered"): no writer leaves them, so they
    mean a damaged file (e.g. two files concatenated)."""
    refused(tmp_path, TINY + extra, f"{len(extra)} trailing bytes")


def test_empty_header_with_no_data_is_an_empty_checkpoint(tmp_path: Path) -> None:
    d = write(tmp_path, assemble(b"{}"))
    assert Checkpoint(str(d)).names() == []
    refused(tmp_path, assemble(b"{}", b"\0"), "trailing bytes")


# ---- truncation and misalignment ---------------------------------------------------------------
def test_truncated_at_every_byte_offset(tmp_path: Path) -> None:
    d = write(tmp_path, TINY)
    path = d / FILE
    for size in range(len(TINY)):
        path.write_bytes(TINY[:size])
        with pytest.raises(ModelFormatError, match=FILE):
            Checkpoint(str(d)).close()
    path.write_bytes(TINY)
    Checkpoint(str(d)).close()


def test_misaligned_tensors_are_read_as_aligned_copies(tmp_path: Path) -> None:
    """One odd byte first puts every later tensor at an odd address: C must never be handed a
    misaligned float or uint16 pointer (undefined behaviour), so the reader copies those."""
    content = build([("odd", "U8", [1], b"\x07"), *TINY_TENSORS])
    d = write(tmp_path, content)
    ck = Checkpoint(str(d))
    for name in ("w.f32", "w.f16", "w.bf16", "step"):
        assert ck.raw(name).flags.aligned, name
    np.testing.assert_array_equal(ck.raw("w.f32"), W_F32)
    np.testing.assert_array_equal(ck.raw("w.f16"), W_F16)
    np.testing.assert_array_equal(ck.float32("w.bf16"), W_BF16)
    assert int(ck.raw("step")) == -7


# ---- the directory ----------------------------------------------------------------------------
def test_missing_directory_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such directory"):
        Checkpoint(str(tmp_path / "absent"))
    with pytest.raises(ModelFormatError, match=r"no \.safetensors file"):
        Checkpoint(str(tmp_path))


def test_a_fifo_named_safetensors_is_refused_without_blocking(tmp_path: Path) -> None:
    """open() of a FIFO waits for a writer: run it in a daemon thread so a regression fails
    here instead of hanging the suite."""
    os.mkfifo(tmp_path / FILE)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            Checkpoint(str(tmp_path))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout=20)
    assert outcome, "Checkpoint() blocked on a FIFO"
    assert isinstance(outcome[0], ModelFormatError) and "not a regular file" in str(outcome[0])


def test_a_directory_named_safetensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / FILE).mkdir()
    with pytest.raises(ModelFormatError, match=FILE):
        Checkpoint(str(tmp_path))


# ---- fuzzing ----------------------------------------------------------------------------------
def load_all(d: Path) -> None:
    """Everything a model load does with a file: open, read every tensor, convert floats."""
    ck = Checkpoint(str(d))
    try:
        for name in ck.names():
            info = ck.info(name)
            raw = ck.raw(name)
            assert raw.shape == info.shape
            assert 8 <= info.start <= info.end <= len(TINY) + 64
            if info.dtype in ("F32", "F16", "BF16", "F64"):
                try:
                    ck.float32(name)
                except ModelFormatError as exc:
                    assert "NaN or Inf" in str(exc)
    finally:
        ck.close()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(TINY) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_random_byte_flips(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    """Any outcome is a clean load or a ModelFormatError (hypothesis reports any other type)."""
    b = bytearray(TINY)
    for pos, mask in flips:
        b[pos] ^= mask
    d = write(tmp_path, bytes(b))
    try:
        load_all(d)
        event("accepted")
    except ModelFormatError as exc:
        assert FILE in str(exc)
        event("refused")


_VALUES = st.one_of(
    st.integers(-(2**65), 2**65),
    st.integers(-2, 40),
    st.sampled_from(["F32", "F16", "BF16", "U8", "I64", "F8_E5M2", "", "__metadata__"]),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.integers(-2, 40), max_size=3),
)
_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I64": 8}


@FUZZ
@given(
    layout=st.lists(
        st.tuples(st.sampled_from(sorted(_SIZES)), st.lists(st.integers(0, 3), max_size=3)), max_size=4
    ),
    order=st.randoms(use_true_random=False),
    mutation=st.one_of(
        st.none(),
        st.tuples(st.integers(0, 3), st.sampled_from(["dtype", "shape", "data_offsets", "drop"]), _VALUES),
    ),
    extra=st.sampled_from([0, 0, 0, 1, 4]),
)
def test_random_headers_we_accept_the_safetensors_library_accepts(
    tmp_path: Path, layout: list[tuple[str, list[int]]], order: Any, mutation: Any, extra: int
) -> None:
    """Structured fuzzing of the header: a valid layout of a few tensors (stored in a random
    order), then perhaps one field replaced by a random JSON value, perhaps trailing bytes.
    Whatever we accept, the reference library accepts and reads the same way (we are at least
    as strict); everything else is a ModelFormatError naming the file."""
    meta: dict[str, Any] = {}
    pos = 0
    stored = list(range(len(layout)))
    order.shuffle(stored)
    for k in stored:
        dtype, shape = layout[k]
        n = _SIZES[dtype] * int(np.prod(shape))
        meta[f"t{k}"] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    if mutation is not None and layout:
        k, field, value = mutation
        entry = meta[f"t{k % len(layout)}"]
        if field == "drop":
            del entry[order.choice(["dtype", "shape", "data_offsets"])]
        else:
            entry[field] = value
    content = assemble(encode_header(meta), bytes(i % 251 for i in range(pos + extra)))
    d = write(tmp_path, content)
    try:
        ck = Checkpoint(str(d))
    except ModelFormatError as exc:
        assert FILE in str(exc)
        event("refused")
        return
    event("accepted")
    ours = {n: ck.raw(n) for n in ck.names()}
    if any(ck.info(n).dtype == "BF16" for n in ours):
        content = content.replace(b'"BF16"', b'"F16" ')  # numpy has no bf16: same bytes as F16
    theirs = safetensors.numpy.load(content)
    assert sorted(theirs) == sorted(ours)
    for n, a in ours.items():
        assert a.shape == theirs[n].shape
        assert a.tobytes() == theirs[n].tobytes()
    ck.close()


# ---- pyrustml.load on a corrupted copy of a real fixture ---------------------------------------
@pytest.fixture
def gpt2_copy(tmp_path: Path) -> Path:
    d = tmp_path / "gpt2"
    shutil.copytree(FIX / "gpt2-tiny-hf", d)
    return d


def split_file(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def rewrite(path: Path, edit: Any) -> None:
    meta, data = split_file(path)
    edit(meta)
    path.write_bytes(assemble(encode_header(meta), data))


def test_the_uncorrupted_copy_loads(gpt2_copy: Path) -> None:
    rewrite(gpt2_copy / FILE, lambda m: None)  # re-encoding the header alone changes nothing
    assert pyrustml.load(str(gpt2_copy), quant="f32").generate([1, 2], max_tokens=2, temperature=0).tokens


def _overlap(m: dict[str, Any]) -> None:
    m["transformer.h.0.ln_1.bias"]["data_offsets"] = m["transformer.h.0.ln_1.weight"]["data_offsets"]


def _unknown_dtype(m: dict[str, Any]) -> None:
    m["transformer.h.1.attn.c_proj.weight"]["dtype"] = "Q4_K"


def _shape(m: dict[str, Any]) -> None:
    m["transformer.wpe.weight"]["shape"] = [64, 65]


def _negative(m: dict[str, Any]) -> None:
    m["transformer.ln_f.bias"]["data_offsets"][0] = -256


def _bad_metadata(m: dict[str, Any]) -> None:
    m["__metadata__"] = {"format": ["pt"]}


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_overlap, "overlap"),
        (_unknown_dtype, "transformer.h.1.attn.c_proj.weight"),
        (_shape, "transformer.wpe.weight"),
        (_negative, "transformer.ln_f.bias"),
        (_bad_metadata, "__metadata__"),
    ],
)
def test_load_refuses_a_bad_header(gpt2_copy: Path, edit: Any, needle: str) -> None:
    rewrite(gpt2_copy / FILE, edit)
    with pytest.raises(ModelFormatError, match=FILE) as err:
        pyrustml.load(str(gpt2_copy))
    assert needle in str(err.value)


def test_load_refuses_a_repeated_tensor_name(gpt2_copy: Path) -> None:
    raw = (gpt2_copy / FILE).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    meta = json.loads(raw[8 : 8 + n])
    first = json.dumps({"transformer.wte.weight": meta["transformer.wte.weight"]})[1:-1]
    header = b"{" + first.encode() + b"," + json.dumps(meta).encode()[1:]
    (gpt2_copy / FILE).write_bytes(assemble(header, raw[8 + n :]))
    with pytest.raises(ModelFormatError, match=rf"{FILE}.*repeats the key 'transformer\.wte\.weight'"):
        pyrustml.load(str(gpt2_copy))


@pytest.mark.parametrize("where", ["0", "7", "8", "mid-header", "header-end", "data+1", "mid-data", "last"])
def test_load_refuses_a_truncated_file(gpt2_copy: Path, where: str) -> None:
    path = gpt2_copy / FILE
    raw = path.read_bytes()
    data_start = 8 + struct.unpack("<Q", raw[:8])[0]
    size = {
        "0": 0, "7": 7, "8": 8, "mid-header": data_start // 2, "header-end": data_start,
        "data+1": data_start + 1, "mid-data": (data_start + len(raw)) // 2, "last": len(raw) - 1,
    }[where]  # fmt: skip
    path.write_bytes(raw[:size])
    with pytest.raises(ModelFormatError, match=FILE):
        pyrustml.load(str(gpt2_copy))


def test_load_refuses_trailing_bytes(gpt2_copy: Path) -> None:
    with (gpt2_copy / FILE).open("ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(ModelFormatError, match=f"{FILE}: 16 trailing bytes"):
        pyrustml.load(str(gpt2_copy))


@pytest.mark.parametrize("n", [2**64 - 1, MAX_HEADER + 1])
def test_load_refuses_a_huge_header_length(gpt2_copy: Path, n: int) -> None:
    path = gpt2_copy / FILE
    path.write_bytes(struct.pack("<Q", n) + path.read_bytes()[8:])
    with pytest.raises(ModelFormatError, match=f"{FILE}: header length {n}"):
        pyrustml.load(str(gpt2_copy))


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny-v5"])  # f32 and bf16 words
def test_load_of_misaligned_data_gives_the_same_logits(tmp_path: Path, name: str) -> None:
    """Header padding that leaves the data at an odd offset: legal, and the same model (under
    UBSan in CI, a misaligned word handed to C would stop the run)."""
    want = pyrustml.load(str(FIX / name), quant="q8_0").logits([2, 5, 6, 7])
    d = tmp_path / name
    shutil.copytree(FIX / name, d)
    meta, data = split_file(d / FILE)
    header = json.dumps(meta).encode()
    header += b" " * ((-len(header) % 8) + 3)  # 8 + len(header) is now 3 mod 8
    (d / FILE).write_bytes(assemble(header, data))
    got = pyrustml.load(str(d), quant="q8_0").logits([2, 5, 6, 7])
    np.testing.assert_array_equal(got, want)


FLIP_FUZZ = settings(FUZZ, max_examples=120 if _PROFILE == "dev" else 25)


@FLIP_FUZZ
@given(data=st.data())
def test_load_with_random_flips_in_the_header(gpt2_copy: Path, data: st.DataObject) -> None:
    """Flips in the real fixture's header and first data bytes: a model or a PyrustmlError."""
    path = gpt2_copy / FILE
    raw = bytearray((FIX / "gpt2-tiny-hf" / FILE).read_bytes())
    data_start = 8 + struct.unpack("<Q", raw[:8])[0]
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, data_start + 64), st.integers(1, 255)), min_size=1, max_size=3)
    )
    for pos, mask in flips:
        raw[pos] ^= mask
    path.write_bytes(bytes(raw))
    try:
        m = pyrustml.load(str(gpt2_copy), quant="q8_0")
        m.generate([1], max_tokens=2, temperature=0)
        event("a model")
    except PyrustmlError as exc:
        assert str(exc)
        event(type(exc).__name__)
