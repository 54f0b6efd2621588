"""Reading safetensors checkpoints: single files and sharded ones (model.safetensors.index.json).

Our own reader, not the `safetensors` package (which is therefore not a runtime dependency; the
tests use it as the reference to compare with). Its parser is the format's reference and is
fuzzed, but it does not fit three needs here: numpy has no bfloat16 (real Gemma checkpoints are
bf16: we hand the raw 16-bit words to libq8's converter); its numpy API memory-maps the file; and
we are stricter (repeated keys, gaps, trailing bytes). A file from a stranger is validated
completely before any byte of it is used. Every refusal is a ModelFormatError whose message
starts with the file's name and names the tensor where there is one.

No mmap: the data is read with preadv straight into the destination buffer (a numpy array the
caller owns, or a bounded chunk that is quantized and dropped). A memory-mapped file that shrinks
while it is read (another process rewriting the cache, a full disk) kills the process with
SIGBUS; a read just comes back short, which is a ModelFormatError. Large matrices are read and
quantized in chunks of CHUNK_BYTES, so the load's peak RSS stays near the final model size.

Resource bounds before any parsing: the header length (100 MB, the reference implementation's
limit) and the number of tensors it declares (counted in the raw bytes, before json.loads builds
a million objects), at most max_tensors: MAX_TENSORS unless the caller knows its architecture's
need.

What a valid file is (at least as strict as the safetensors library, stricter where noted):
- 8 bytes of little-endian header length N, N <= 100,000,000 (the library's limit), 8 + N <= size;
- the header is UTF-8 JSON (standard JSON: no NaN/Infinity literals) holding one object; a key
  repeated anywhere in it is refused (stricter: json and serde keep the last copy silently, so
  two readers could disagree about which tensor a name means);
- "__metadata__", if present, is an object of string values (as the library requires); its
  contents are ignored, and no tensor can be called "__metadata__";
- every other key is a tensor: dtype one of DTYPES (others are refused, not skipped), shape a list
  of non-negative integers whose element count times the item size fits int64 (numpy's limit; the
  library refuses overflow in its own order), data_offsets [start, end] of integers with
  start <= end and end - start == element count x item size;
- the ranges tile the data section exactly: sorted by start they begin at 0, each starts where
  the previous one ended (no overlap, which would alias two tensors, and no gap), and the last
  ends at the end of the file. Trailing bytes after the data are refused, as the library does
  ("incomplete metadata, file not fully covered"): no writer produces them, so they mean a
  truncated-then-padded or concatenated file.
Data need not be aligned (the library does not require it): a tensor whose start is not a
multiple of its item size is copied once into an aligned array before C sees it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Final

import numpy as np

from ..errors import ModelFormatError, ModelNotFoundError

# dtype name -> (numpy dtype of the stored words, bytes per element)
DTYPES: Final[dict[str, tuple[str, int]]] = {
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<u2", 2),  # raw words; see to_float32
    "F64": ("<f8", 8),
    "I64": ("<i8", 8),
    "I32": ("<i4", 4),
    "I16": ("<i2", 2),
    "I8": ("i1", 1),
    "U8": ("u1", 1),
    "BOOL": ("u1", 1),
}
MAX_HEADER: Final = 100_000_000  # the safetensors library's own limit on N
# Tensors one checkpoint may declare: Gemma 3 27B has 800, GPT-2 XL 580. A header of a million
# zero-size tensors took 15 s and 1 GB to refuse after parsing; counted first, it takes ms.
MAX_TENSORS: Final = 1 << 16
# Tensors a layer may hold (GPT-2 has 14 names per block with its mask buffers, Gemma 3 has 13).
MAX_TENSORS_PER_LAYER: Final = 32
CHUNK_BYTES: Final = 4 << 20  # what a chunked read holds at once
INT64_MAX: Final = (1 << 63) - 1
METADATA: Final = "__metadata__"
INDEX: Final = "model.safetensors.index.json"


@dataclass(eq=False)
class TensorInfo:
    """Where one tensor lives: file, dtype, shape, byte range in the file."""

    name: str
    path: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _bad(path: str, msg: str) -> ModelFormatError:
    return ModelFormatError(f"{os.path.basename(path)}: {msg}")


class _DuplicateKey(ValueError):
    key: str

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json object_pairs_hook: a repeated key is an error, not "the last one wins"."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    """json parse_constant: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def load_json_text(text: str) -> object:
    """Strict JSON: no repeated keys, no NaN/Infinity. Raises ValueError (incl. _DuplicateKey)
    or RecursionError (absurd nesting) for the caller to turn into a ModelFormatError."""
    return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constant)


def parse_header(path: str, file_size: int, head: bytes) -> tuple[int, dict[str, TensorInfo]]:
    """Validate a safetensors header; returns (data start offset, tensors by name).

    `head` holds at least the first 8 + header-length bytes of the file (or all of it)."""
    if file_size < 8 or len(head) < 8:
        raise _bad(path, f"file of {file_size} bytes is too short for a safetensors header")
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER:
        raise _bad(path, f"header length {n} exceeds the {MAX_HEADER}-byte limit")
    if 8 + n > file_size or 8 + n > len(head):
        raise _bad(path, f"header length {n} runs past the end of the file ({file_size} bytes)")
    try:
        text = head[8 : 8 + n].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(path, f"header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        meta = load_json_text(text)
    except _DuplicateKey as exc:
        raise _bad(path, f"header repeats the key {exc.key!r}") from None
    except json.JSONDecodeError as exc:
        raise _bad(path, f"header is not JSON ({exc.msg} at {exc.pos})") from None
    except (ValueError, RecursionError) as exc:  # 5000-digit numbers, NaN, nesting 10^5 deep
        raise _bad(path, f"header is not acceptable JSON ({str(exc)[:80]})") from None
    if not isinstance(meta, dict):
        raise _bad(path, f"header is a JSON {type(meta).__name__}, not an object")
    data_start = 8 + n
    data_len = file_size - data_start
    tensors: dict[str, TensorInfo] = {}
    for name, entry in meta.items():
        if name == METADATA:
            _check_metadata(path, entry)
            continue
        tensors[name] = _tensor_info(path, name, entry, data_start, data_len)
    _check_tiling(path, tensors, data_start, data_len)
    return data_start, tensors


def _check_metadata(path: str, entry: object) -> None:
    if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
        raise _bad(path, f"{METADATA} must be an object of strings, got {str(entry)[:60]}")


def _check_tiling(path: str, tensors: dict[str, TensorInfo], data_start: int, data_len: int) -> None:
    """The byte ranges must cover the data section exactly once: no overlap (a crafted file
    could alias two tensors; reported first, as the defect that matters), no gap, no trailing
    bytes."""
    spans = sorted((t.start - data_start, t.end - data_start, t.name) for t in tensors.values())
    end = 0
    last = ""
    for s, e, name in spans:
        if s < end:
            raise _bad(path, f"tensors {last!r} and {name!r} overlap (data bytes {s}..{min(e, end)})")
        if e >= end:
            end, last = e, name
    pos = 0
    prev = ""
    for s, e, name in spans:
        if s > pos:
            where = f"between tensors {prev!r} and {name!r}" if prev else f"before tensor {name!r}"
            raise _bad(path, f"data bytes {pos}..{s} {where} belong to no tensor")
        pos, prev = e, name
    if pos != data_len:
        raise _bad(
            path,
            f"{data_len - pos} trailing bytes after the last tensor's data "
            f"(tensors cover {pos} of {data_len} data bytes)",
        )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor_info(path: str, name: str, entry: object, data_start: int, data_len: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise _bad(path, f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _bad(path, f"tensor {name!r}: unsupported dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or not all(_is_int(s) for s in shape):
        raise _bad(path, f"tensor {name!r}: shape {str(shape)[:60]} is not a list of integers")
    if any(s < 0 for s in shape):
        raise _bad(path, f"tensor {name!r}: negative dimension in shape {shape}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise _bad(path, f"tensor {name!r}: data_offsets {str(offsets)[:60]} is not two integers")
    start, end = int(offsets[0]), int(offsets[1])
    if start < 0 or end < start:
        raise _bad(path, f"tensor {name!r}: data_offsets [{start}, {end}] out of order or negative")
    if end > data_len:
        raise _bad(path, f"tensor {name!r}: data_offsets end {end} past the data ({data_len} bytes)")
    size = DTYPES[dtype][1]
    # Python ints do not overflow, but numpy (and C) index with int64: refuse any shape whose
    # byte count would not fit, zero dimensions or not (numpy refuses those shapes too).
    span = size
    for s in shape:
        span *= max(s, 1)
    if span > INT64_MAX:
        raise _bad(path, f"tensor {name!r}: shape {shape} overflows int64")
    numel = 1
    for s in shape:
        numel *= s
    if numel * size != end - start:
        raise _bad(
            path,
            f"tensor {name!r}: {dtype} x {shape} needs {numel * size} bytes, data_offsets give {end - start}",
        )
    return TensorInfo(name, path, dtype, tuple(int(s) for s in shape), data_start + start, data_start + end)


def tensor_budget(n_layers: object) -> int:
    """The tensors a checkpoint of n_layers layers can use (per layer, plus embeddings, norms
    and heads), at most MAX_TENSORS; MAX_TENSORS when the count is not a sane integer yet (the
    config reader refuses it with its own error)."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 0 < n_layers <= 1 << 12:
        return MAX_TENSORS
    return min(MAX_TENSORS, MAX_TENSORS_PER_LAYER * n_layers + 64)


def _read_exact(fd: int, path: str, buf: memoryview, offset: int) -> None:
    """Fill buf from the file at offset; a short read (the file shrank) is a ModelFormatError."""
    done = 0
    total = len(buf)
    while done < total:
        try:
            if hasattr(os, "preadv"):
                n = os.preadv(fd, [buf[done:]], offset + done)
            else:  # pragma: no cover - platforms without preadv
                chunk = os.pread(fd, total - done, offset + done)
                n = len(chunk)
                buf[done : done + n] = chunk
        except OSError as exc:
            raise _bad(path, f"read failed at byte {offset + done}: {exc.strerror}") from None
        if n == 0:
            raise _bad(
                path,
                f"the file ended at byte {offset + done}, before {offset + total}: "
                "it was truncated or rewritten while being read",
            )
        done += n


def count_tensors(header: bytes) -> int:
    """An upper bound of the tensors a header declares, without parsing it: every tensor entry
    needs a "data_offsets" key (a key repeated or inside a string only raises the count)."""
    return header.count(b'"data_offsets"')


class SafetensorsFile:
    """One .safetensors file, open for reading, with a validated header."""

    path: str
    tensors: dict[str, TensorInfo]
    size: int
    _fd: int

    def __init__(self, path: str, max_tensors: int = MAX_TENSORS) -> None:
        self.path = path
        self._fd = -1
        try:
            # A FIFO or device named *.safetensors would block or stream forever: regular files only.
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise _bad(path, "is not a regular file")
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self.size = os.fstat(self._fd).st_size
        except OSError as exc:
            self.close()
            raise ModelFormatError(f"cannot read {path}: {exc.strerror}") from None
        try:
            self.tensors = self._read_header(max_tensors)
        except BaseException:
            self.close()
            raise

    def _read_header(self, max_tensors: int) -> dict[str, TensorInfo]:
        path, size = self.path, self.size
        if size == 0:
            raise _bad(path, "file is empty")
        if size < 8:
            raise _bad(path, f"file of {size} bytes is too short for a safetensors header")
        head = bytearray(8)
        _read_exact(self._fd, path, memoryview(head), 0)
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER:
            raise _bad(path, f"header length {n} exceeds the {MAX_HEADER}-byte limit")
        if 8 + n > size:
            raise _bad(path, f"header length {n} runs past the end of the file ({size} bytes)")
        head.extend(bytes(n))
        _read_exact(self._fd, path, memoryview(head)[8:], 8)
        header = bytes(head)
        del head
        declared = count_tensors(header)
        if declared > max_tensors:
            raise _bad(
                path,
                f"the header declares {declared} tensors; more than the {max_tensors} this loader accepts",
            )
        _, tensors = parse_header(path, size, header)
        return tensors

    def read_into(self, name: str, out: np.ndarray, first: int = 0) -> None:
        """Fill the C-contiguous array `out` with the tensor's bytes starting at element `first`
        (rows first..: a chunk of a matrix)."""
        info = self.tensors[name]
        if self._fd < 0:
            raise ModelFormatError(f"{os.path.basename(self.path)} is closed")
        itemsize = DTYPES[info.dtype][1]
        offset = info.start + first * itemsize
        if not out.flags.c_contiguous or offset + out.nbytes > info.end:
            raise ModelFormatError(f"{os.path.basename(self.path)}: bad read of tensor {name!r}")
        if out.nbytes:
            _read_exact(self._fd, self.path, out.reshape(-1).view(np.uint8).data, offset)

    def array(self, name: str) -> np.ndarray:
        """A new array of the stored words (BF16 as uint16), in the tensor's shape."""
        info = self.tensors[name]
        out = np.empty(info.shape, dtype=DTYPES[info.dtype][0])
        self.read_into(name, out)
        return out

    def rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        """A new array of rows r0 .. r1 - 1 (along the first dimension) of the stored words."""
        info = self.tensors[name]
        if not info.shape or not 0 <= r0 <= r1 <= info.shape[0]:
            raise ModelFormatError(f"{os.path.basename(self.path)}: bad row range of tensor {name!r}")
        row = 1
        for s in info.shape[1:]:
            row *= s
        out = np.empty((r1 - r0, *info.shape[1:]), dtype=DTYPES[info.dtype][0])
        self.read_into(name, out, r0 * row)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1


def bf16_to_float32(words: np.ndarray) -> np.ndarray:
    """Exact widening of bfloat16 words (uint16) to float32."""
    return (words.astype(np.uint32) << 16).view(np.float32)


def to_float32(info: TensorInfo, data: np.ndarray) -> np.ndarray:
    if info.dtype == "BF16":
        return bf16_to_float32(data)
    if info.dtype in ("F32", "F16", "F64"):
        return data.astype(np.float32, copy=False)  # a fresh read already: no second copy
    raise ModelFormatError(
        f"{os.path.basename(info.path)}: tensor {info.name!r} has dtype {info.dtype}, not a float type"
    )


class Checkpoint:
    """All tensors of a checkpoint directory, single-file or sharded."""

    files: list[SafetensorsFile]
    where: dict[str, SafetensorsFile]
    source: str  # what error messages call the checkpoint: its file, or its index

    def __init__(self, directory: str, max_tensors: int = MAX_TENSORS) -> None:
        self.files = []
        self.where = {}
        if not os.path.isdir(directory):
            raise ModelNotFoundError(f"{directory}: no such directory")
        index_path = os.path.join(directory, INDEX)
        weight_map: dict[str, str] | None = None
        if os.path.isfile(index_path):
            weight_map = _read_index(index_path, directory)
            shard_names = sorted(set(weight_map.values()))
            self.source = INDEX
        else:
            shard_names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
            if not shard_names:
                raise ModelFormatError(f"no .safetensors file in {directory}")
            self.source = ", ".join(shard_names)
        try:
            for shard in shard_names:
                f = SafetensorsFile(os.path.join(directory, shard), max_tensors)
                self.files.append(f)
                for name in f.tensors:
                    if name in self.where:
                        first = os.path.basename(self.where[name].path)
                        raise ModelFormatError(f"tensor {name!r} appears in two files ({first} and {shard})")
                    self.where[name] = f
            if weight_map is not None:
                self._check_index(weight_map)
        except BaseException:
            self.close()
            raise

    def _check_index(self, weight_map: dict[str, str]) -> None:
        """The index and the shards must agree on where every tensor is: a reader that trusts
        the index (transformers does) must see the same checkpoint we do."""
        for name, shard in sorted(weight_map.items()):
            f = self.where.get(name)
            if f is None:
                raise ModelFormatError(f"{INDEX} maps tensor {name!r} to {shard}, which does not hold it")
            if os.path.basename(f.path) != shard:
                raise ModelFormatError(
                    f"{INDEX} maps tensor {name!r} to {shard}, but it is in {os.path.basename(f.path)}"
                )
        for name in sorted(self.where):
            if name not in weight_map:
                raise ModelFormatError(
                    f"{os.path.basename(self.where[name].path)}: tensor {name!r} is missing from {INDEX}"
                )

    def names(self) -> list[str]:
        return list(self.where)

    def info(self, name: str) -> TensorInfo:
        f = self.where.get(name)
        if f is None:
            raise ModelFormatError(f"{self.source}: the checkpoint has no tensor {name!r}")
        return f.tensors[name]

    def _file(self, name: str) -> SafetensorsFile:
        f = self.where.get(name)
        if f is None:
            raise ModelFormatError(f"{self.source}: the checkpoint has no tensor {name!r}")
        return f

    def raw(self, name: str) -> np.ndarray:
        """The stored words of a tensor, read into a new array."""
        return self._file(name).array(name)

    def rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        """Rows r0 .. r1 - 1 of a tensor's stored words, read into a new array."""
        return self._file(name).rows(name, r0, r1)

    def float32(self, name: str) -> np.ndarray:
        """The tensor as a new float32 array, finite-checked."""
        info = self.info(name)
        out = to_float32(info, self.raw(name))
        if not bool(np.isfinite(out).all()):
            raise ModelFormatError(
                f"{os.path.basename(info.path)}: tensor {name!r} holds NaN or Inf (as float32)"
            )
        return out

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []
        self.where = {}


def _read_index(index_path: str, directory: str) -> dict[str, str]:
    """The index's weight_map (tensor name -> shard file), with every shard present."""
    base = os.path.basename(index_path)
    try:
        with open(index_path, "rb") as fh:
            index = load_json_text(fh.read().decode("utf-8"))
    except OSError as exc:
        raise ModelFormatError(f"cannot read {base}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{base} is not UTF-8 ({exc.reason})") from None
    except _DuplicateKey as exc:
        raise ModelFormatError(f"{base} repeats the key {exc.key!r}") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{base} is not valid JSON ({str(exc)[:80]})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelFormatError(f"{base} has no valid weight_map")
    for s in sorted(set(weight_map.values())):
        if os.path.basename(s) != s or not os.path.isfile(os.path.join(directory, s)):
            raise ModelFormatError(f"{base} names a missing shard {s!r}")
    return {str(k): str(v) for k, v in weight_map.items()}
