"""Shared pieces of the property suite.

- Hypothesis profiles: `ci` (default; derandomized, so every run draws the same examples) and
  `dev` (more examples); HYPOTHESIS_PROFILE picks one.
- The `isa` fixture: every test that computes runs once per kernel path this machine supports;
  `restore_pool` puts the default thread pool back after a test that resized it.
- Guard buffers for the tests that call libq8 through the raw cffi `lib`.

pytest runs in importlib mode (pyproject.toml), so test modules cannot import this file: the
guard buffers reach them through session-scoped fixtures. What test modules import directly
lives in tests/support: the error analysis every tolerance is built from (fp_bounds.py), the
seeded input arrays, shared strategies and oracles (kernel_props.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import pyrustml
from pyrustml import kernels
from pyrustml.engine._ffi import ffi

# The `isa` fixture is function-scoped and @given tests use it: it only switches the process-wide
# kernel table to a fixed path, which is equally valid for every example of the test, so the
# health check that warns about function-scoped fixtures does not apply.
_SUPPRESSED = [HealthCheck.function_scoped_fixture]
settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=_SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ISAS: list[str] = kernels.isa_supported()


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with one kernel path forced; the path active before is restored after."""
    before = kernels.isa_active()
    kernels.set_isa(request.param)
    try:
        yield str(request.param)
    finally:
        kernels.set_isa(before)


@pytest.fixture
def restore_pool() -> Iterator[None]:
    try:
        yield
    finally:
        pyrustml.RuntimeConfig()


# ---- guard buffers for raw libq8 calls ---------------------------------------------------------
GUARD_BITS = 0x7FA5A5A5  # a signaling-NaN payload that no kernel computes
FILL_BITS = 0x7FB0B0B0  # prefilled into the region: any left afterwards was never written
GUARD_FLOATS = 16  # 64 bytes on each side; keeps the region as aligned as the allocation
GUARD_BYTE = 0xA5
FILL_BYTE = 0x5A


class GuardedFloats:
    """A float32 region with GUARD_FLOATS guard words before and after it, for C to write into."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        n = math.prod(shape)
        self.raw = np.full(n + 2 * GUARD_FLOATS, GUARD_BITS, dtype=np.uint32)
        self.raw[GUARD_FLOATS : GUARD_FLOATS + n] = FILL_BITS
        self.region = self.raw[GUARD_FLOATS : GUARD_FLOATS + n].view(np.float32).reshape(shape)

    def ptr(self) -> Any:
        return ffi.from_buffer("float[]", self.region)

    def guards_intact(self) -> bool:
        g = GUARD_FLOATS
        return bool((self.raw[:g] == GUARD_BITS).all() and (self.raw[-g:] == GUARD_BITS).all())

    def fully_written(self) -> bool:
        return not bool((self.region.view(np.uint32) == FILL_BITS).any())


class GuardedBytes:
    """A byte region (e.g. Q8_0 blocks) with 64 guard bytes before and after it."""

    def __init__(self, nbytes: int) -> None:
        g = 4 * GUARD_FLOATS
        self.raw = np.full(nbytes + 2 * g, GUARD_BYTE, dtype=np.uint8)
        self.raw[g : g + nbytes] = FILL_BYTE
        self.region = self.raw[g : g + nbytes]

    def ptr(self, ctype: str = "q8_block *") -> Any:
        return ffi.cast(ctype, ffi.from_buffer("char[]", self.region))

    def guards_intact(self) -> bool:
        g = 4 * GUARD_FLOATS
        return bool((self.raw[:g] == GUARD_BYTE).all() and (self.raw[-g:] == GUARD_BYTE).all())


@pytest.fixture(scope="session")
def guarded_floats() -> type[GuardedFloats]:
    return GuardedFloats


@pytest.fixture(scope="session")
def guarded_bytes() -> type[GuardedBytes]:
    return GuardedBytes
