"""One layer's KV caches: keys and values of `slots` sequences, (slots, n_kv, cap, head_dim)
float32 each; a sequence's position p lives at index p % cap of its slot (a ring when cap is
below the context)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._ffi import ffi
from .host import available_bytes
from .kernels import alloc


class KVCache:
    """Keys and values of one layer. Both buffers are huge-page-advised libq8 allocations whose
    pages are all faulted in here: lazily mapped pages made the first write of every 16th
    position fault inside decode steps (4.3 us mean, up to 126 us per GPT-2 cache write)."""

    k: np.ndarray  # (slots, n_kv, cap, head_dim)
    v: np.ndarray
    k_ptr: Any  # float[] cdata for libq8
    v_ptr: Any
    slots: int
    n_kv: int
    cap: int
    head_dim: int
    _mem: list[Any]  # the allocations behind k and v (the arrays do not own them)

    def __init__(self, n_kv: int, cap: int, head_dim: int, slots: int, what: str) -> None:
        self.n_kv, self.cap, self.head_dim, self.slots = n_kv, cap, head_dim, slots
        self._mem = []
        self.k = self._zeros(f"{what}'s key cache ({slots} x {cap} positions)")
        self.v = self._zeros(f"{what}'s value cache ({slots} x {cap} positions)")
        self.k_ptr = ffi.from_buffer("float[]", self.k)
        self.v_ptr = ffi.from_buffer("float[]", self.v)

    @property
    def row_bytes(self) -> int:
        """Bytes of keys and values per cached position: what attention reads per position."""
        return 2 * self.n_kv * self.head_dim * 4

    def _zeros(self, what: str) -> np.ndarray:
        n = self.slots * self.n_kv * self.cap * self.head_dim * 4
        # Touching every page of a cache larger than the free memory would summon the OOM killer:
        # refuse it instead.
        mem = alloc(n, what, zero=True, limit=available_bytes())
        self._mem.append(mem)
        return np.frombuffer(ffi.buffer(mem, n), dtype=np.float32).reshape(
            self.slots, self.n_kv, self.cap, self.head_dim
        )
