"""The one owner of cffi: loads the packaged libq8.so in ABI mode with q8.h as the cdef.

Kept interpreted (not mypyc-compiled): it runs once, and cffi's objects are dynamic.
PYRUSTML_LIBQ8=/path/to/libq8.so loads another build (the sanitizer builds in CI).
"""

from __future__ import annotations

import ctypes
import os
from importlib import resources
from typing import Any

import cffi

from ..errors import LibraryError

ABI_VERSION = 6


def _cdef_text(header: str) -> str:
    start = header.index("/* cdef-begin */")
    end = header.index("/* cdef-end */")
    return header[start:end]


_pinned: list[ctypes.CDLL] = []


def _load() -> tuple[Any, Any, str]:
    pkg = resources.files("pyrustml")
    header = pkg.joinpath("q8.h").read_text(encoding="utf-8")
    override = os.environ.get("PYRUSTML_LIBQ8")
    ffi: Any = cffi.FFI()
    ffi.cdef(_cdef_text(header))
    if override:
        path = override
    else:
        # as_file: a real path even if the package were imported from a zip.
        with resources.as_file(pkg.joinpath("libq8.so")) as p:
            path = str(p)
    try:
        lib: Any = ffi.dlopen(path)
        # A second handle that is never closed: the library stays mapped until the process ends,
        # so nothing freed late in interpreter teardown (a KV cache's q8_free, a pool worker
        # still spinning) can run code that was unmapped.
        _pinned.append(ctypes.CDLL(path))
    except OSError as exc:
        raise LibraryError(f"cannot load libq8 from {path}: {exc}") from exc
    if lib.q8_abi_version() != ABI_VERSION:
        raise LibraryError(f"{path} has ABI {lib.q8_abi_version()}, expected {ABI_VERSION}")
    forced = os.environ.get("PYRUSTML_ISA", "")
    if forced and ffi.string(lib.q8_isa_active()).decode() != forced:
        supported = ffi.string(lib.q8_isa_supported()).decode()
        raise LibraryError(f"PYRUSTML_ISA={forced} is not a kernel path this machine supports ({supported})")
    return ffi, lib, path


# Typed Any on purpose: cffi's stubs cannot know the functions the cdef declares.
ffi: Any
lib: Any
library_path: str
ffi, lib, library_path = _load()
