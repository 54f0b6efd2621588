"""The one owner of cffi: loads the packaged libq8.so in ABI mode with q8.h as the cdef.

Kept interpreted (not mypyc-compiled): it runs once, and cffi's objects are dynamic.
PYRUSTML_LIBQ8=/path/to/libq8.so loads another build (the sanitizer builds in CI).

The library is opened with RTLD_NODELETE: the interpreter's teardown frees cffi's library object,
and a dlclose then would unmap code that the pool's workers (or a daemon thread's job) may still
run. It stays mapped until the process ends; libq8's own destructor parks and joins its workers.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import cffi

from ..errors import LibraryError

ABI_VERSION = 8


def _cdef_text(header: str) -> str:
    start = header.index("/* cdef-begin */")
    end = header.index("/* cdef-end */")
    return header[start:end]


def _source_tree_without_build(pkg: Any) -> None:
    """Imported from a checkout that was never built (as numpy says for its own source tree):
    q8.h and libq8.so are copied into the package only by `pip install`."""
    if pkg.joinpath("q8.h").is_file():
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(root)
    if os.path.isfile(os.path.join(checkout, "setup.py")) and os.path.isdir(os.path.join(checkout, "libq8")):
        raise LibraryError(
            f"pyrustml is being imported from its source tree ({checkout}), which has no built libq8: "
            "install it (`pip install .` or `pip install -e .`) and run Python from another directory"
        )
    raise LibraryError(f"this pyrustml installation lacks q8.h ({root}): reinstall the package")


def _load() -> tuple[Any, Any, str]:
    pkg = resources.files("pyrustml")
    _source_tree_without_build(pkg)
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
    flags = ffi.RTLD_NOW | getattr(ffi, "RTLD_NODELETE", 0)
    try:
        lib: Any = ffi.dlopen(path, flags)
    except OSError as exc:
        raise LibraryError(f"cannot load libq8 from {path}: {exc}") from exc
    # cffi resolves symbols lazily: a library that is not libq8 (or an older build) would fail
    # later, at some call, with AttributeError. Resolve every declared function now.
    missing = [name for name in dir(lib) if name.startswith("q8_") and not _resolves(lib, name)]
    if missing:
        raise LibraryError(
            f"{path} is not a libq8 build this package can use: it lacks {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    if lib.q8_abi_version() != ABI_VERSION:
        raise LibraryError(f"{path} has ABI {lib.q8_abi_version()}, expected {ABI_VERSION}")
    forced = os.environ.get("PYRUSTML_ISA", "")
    if forced and ffi.string(lib.q8_isa_active()).decode() != forced:
        supported = ffi.string(lib.q8_isa_supported()).decode()
        raise LibraryError(f"PYRUSTML_ISA={forced} is not a kernel path this machine supports ({supported})")
    return ffi, lib, path


def _resolves(lib: Any, name: str) -> bool:
    try:
        getattr(lib, name)
    except AttributeError:
        return False
    return True


# Typed Any on purpose: cffi's stubs cannot know the functions the cdef declares.
ffi: Any
lib: Any
library_path: str
ffi, lib, library_path = _load()
