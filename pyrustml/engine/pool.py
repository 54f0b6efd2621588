"""Process-wide runtime settings: the libq8 thread pool (the seed's RuntimeConfig)."""

from __future__ import annotations

from typing import Final

from ..errors import KernelArgumentError, KernelTypeError, LibraryError
from ._ffi import lib

# q8.h: the most threads the pool runs
MAX_THREADS: Final[int] = int(lib.Q8_MAX_THREADS)


class RuntimeConfig:
    """The libq8 thread pool: one per process, shared by every model.

    threads=None uses one thread per physical core. Constructing a RuntimeConfig (re)starts
    the pool with that many threads, the calling thread included.
    """

    threads: int

    def __init__(self, threads: object = None) -> None:
        # `object`, not int | None: mypyc would reject a wrong type with its own bare TypeError.
        if threads is not None and not isinstance(threads, int):
            raise KernelTypeError(f"threads must be an integer or None, got {threads!r}")
        if threads is not None and (isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS):
            raise KernelArgumentError(f"threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")
        rc = int(lib.q8_pool_init(threads if isinstance(threads, int) else 0))
        if rc != 0:
            raise LibraryError(f"could not start the libq8 thread pool (error {rc})")
        self.threads = int(lib.q8_pool_threads())

    def warmup_thread_pool(self) -> None:
        """Wake every worker and map its stack before the first real job, so the first layers
        of the first token do not pay for thread start-up (the seed's jitter fix)."""
        rc = int(lib.q8_pool_warmup())
        if rc != 0:
            raise LibraryError(f"thread pool warmup failed (error {rc})")

    @staticmethod
    def physical_cores() -> int:
        """Physical cores as psutil counts them (libq8's own count sets only its C default)."""
        from .host import physical_cores

        return physical_cores()

    def __repr__(self) -> str:
        return f"RuntimeConfig(threads={self.threads})"
