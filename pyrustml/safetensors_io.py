"""Reading safetensors checkpoints: single files and sharded ones (model.safetensors.index.json).

Our own reader over mmap instead of safetensors.numpy, for two reasons: numpy has no bfloat16
(real Gemma checkpoints are bf16: we hand the raw 16-bit words to libq8's converter), and a file
from a stranger is validated completely before any byte of it is used: header size, JSON shape,
dtypes, shapes, and every data_offsets range (in bounds, matching dtype x shape, no overlap).
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
from typing import Final

import numpy as np

from .errors import ModelFormatError

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
MAX_HEADER: Final = 100 * 1024 * 1024  # the reference implementation's own limit


class TensorInfo:
    """Where one tensor lives: file, dtype, shape, byte range in the file."""

    name: str
    path: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    def __init__(self, name: str, path: str, dtype: str, shape: tuple[int, ...], start: int, end: int):
        self.name = name
        self.path = path
        self.dtype = dtype
        self.shape = shape
        self.start = start
        self.end = end

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _bad(path: str, msg: str) -> ModelFormatError:
    return ModelFormatError(f"{os.path.basename(path)}: {msg}")


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
        meta = json.loads(head[8 : 8 + n].decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _bad(path, f"header is not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise _bad(path, f"header is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(meta, dict):
        raise _bad(path, "header is not a JSON object")
    data_start = 8 + n
    data_len = file_size - data_start
    tensors: dict[str, TensorInfo] = {}
    for name, entry in meta.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor_info(path, name, entry, data_start, data_len)
    # Ranges must not overlap (a crafted file could alias two tensors).
    spans = sorted((t.start, t.end, t.name) for t in tensors.values())
    for (_s0, e0, n0), (s1, _e1, n1) in itertools.pairwise(spans):
        if s1 < e0:
            raise _bad(path, f"tensors {n0!r} and {n1!r} overlap")
    return data_start, tensors


def _tensor_info(path: str, name: str, entry: object, data_start: int, data_len: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise _bad(path, f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _bad(path, f"tensor {name!r}: unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise _bad(path, f"tensor {name!r}: shape {shape!r} is not a list of integers")
    if any(s < 0 for s in shape):
        raise _bad(path, f"tensor {name!r}: negative dimension in shape {shape}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise _bad(path, f"tensor {name!r}: data_offsets {offsets!r} is not two integers")
    start, end = int(offsets[0]), int(offsets[1])
    if start < 0 or end < start:
        raise _bad(path, f"tensor {name!r}: data_offsets [{start}, {end}] out of order or negative")
    if end > data_len:
        raise _bad(path, f"tensor {name!r}: data_offsets end {end} past the data ({data_len} bytes)")
    numel = 1
    for s in shape:
        numel *= s  # Python ints do not overflow; compared with the byte range below
    if numel * DTYPES[dtype][1] != end - start:
        raise _bad(
            path,
            f"tensor {name!r}: {dtype} x {shape} needs {numel * DTYPES[dtype][1]} bytes, "
            f"data_offsets give {end - start}",
        )
    return TensorInfo(name, path, dtype, tuple(int(s) for s in shape), data_start + start, data_start + end)


class SafetensorsFile:
    """One mmap'ed .safetensors file with a validated header."""

    path: str
    tensors: dict[str, TensorInfo]
    _mm: mmap.mmap | None

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise _bad(path, "file is empty")
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise ModelFormatError(f"cannot read {path}: {exc.strerror}") from None
        try:
            head_len = min(size, 8 + min(int.from_bytes(self._mm[:8], "little"), MAX_HEADER))
            _, self.tensors = parse_header(path, size, self._mm[:head_len])
        except BaseException:
            self.close()
            raise

    def array(self, name: str) -> np.ndarray:
        """A read-only view of the stored words (BF16 as uint16)."""
        info = self.tensors[name]
        if self._mm is None:
            raise ModelFormatError(f"{self.path} is closed")
        np_dtype = DTYPES[info.dtype][0]
        flat = np.frombuffer(self._mm, dtype=np_dtype, count=info.numel, offset=info.start)
        return flat.reshape(info.shape)

    def release(self, name: str) -> None:
        """Drop a tensor's pages from this process once it has been converted: the file stays
        in the page cache, but the load's peak RSS stays near the final model size."""
        info = self.tensors[name]
        if self._mm is None or info.end <= info.start:
            return
        start = info.start - info.start % mmap.PAGESIZE
        self._mm.madvise(mmap.MADV_DONTNEED, start, info.end - start)

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # a numpy view still references the map; it is freed with the view
            self._mm = None


def bf16_to_float32(words: np.ndarray) -> np.ndarray:
    """Exact widening of bfloat16 words (uint16) to float32."""
    return (words.astype(np.uint32) << 16).view(np.float32)


def to_float32(info: TensorInfo, data: np.ndarray) -> np.ndarray:
    if info.dtype == "BF16":
        return bf16_to_float32(data)
    if info.dtype in ("F32", "F16", "F64"):
        return data.astype(np.float32)
    raise ModelFormatError(f"tensor {info.name!r} has dtype {info.dtype}, not a float type")


class Checkpoint:
    """All tensors of a checkpoint directory, single-file or sharded."""

    files: list[SafetensorsFile]
    where: dict[str, SafetensorsFile]

    def __init__(self, directory: str) -> None:
        self.files = []
        self.where = {}
        index_path = os.path.join(directory, "model.safetensors.index.json")
        if os.path.isfile(index_path):
            shard_names = _read_index(index_path, directory)
        else:
            shard_names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
            if not shard_names:
                raise ModelFormatError(f"no .safetensors file in {directory}")
        try:
            for shard in shard_names:
                f = SafetensorsFile(os.path.join(directory, shard))
                self.files.append(f)
                for name in f.tensors:
                    if name in self.where:
                        raise ModelFormatError(f"tensor {name!r} appears in two files ({shard})")
                    self.where[name] = f
        except BaseException:
            self.close()
            raise

    def names(self) -> list[str]:
        return list(self.where)

    def info(self, name: str) -> TensorInfo:
        f = self.where.get(name)
        if f is None:
            raise ModelFormatError(f"checkpoint has no tensor {name!r}")
        return f.tensors[name]

    def raw(self, name: str) -> np.ndarray:
        f = self.where.get(name)
        if f is None:
            raise ModelFormatError(f"checkpoint has no tensor {name!r}")
        return f.array(name)

    def release(self, name: str) -> None:
        f = self.where.get(name)
        if f is not None:
            f.release(name)

    def float32(self, name: str) -> np.ndarray:
        """The tensor as a new float32 array, finite-checked."""
        info = self.info(name)
        out = to_float32(info, self.raw(name))
        if not bool(np.isfinite(out).all()):
            raise ModelFormatError(f"tensor {name!r} in {os.path.basename(info.path)} holds NaN or Inf")
        self.release(name)
        return out

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []
        self.where = {}


def _read_index(index_path: str, directory: str) -> list[str]:
    try:
        with open(index_path, encoding="utf-8") as fh:
            index = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"cannot read {os.path.basename(index_path)}: {exc}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelFormatError(f"{os.path.basename(index_path)} has no valid weight_map")
    shards = sorted(set(weight_map.values()))
    for s in shards:
        if os.path.basename(s) != s or not os.path.isfile(os.path.join(directory, s)):
            raise ModelFormatError(f"{os.path.basename(index_path)} names a missing shard {s!r}")
    return shards
