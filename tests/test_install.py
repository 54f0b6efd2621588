"""The installed package is what runs: compiled modules and the libq8.so shipped inside it."""

from __future__ import annotations

import importlib.machinery
import os
from importlib import resources
from pathlib import Path

import pyrustml
import pyrustml.engine.pool
import pyrustml.engine.profiler
import pyrustml.generate.sampling
import pyrustml.kernels
import pyrustml.model
import pyrustml.models.gpt2
from pyrustml.engine import _ffi

COMPILED_MODULES = [
    pyrustml.kernels,
    pyrustml.engine.pool,
    pyrustml.model,
    pyrustml.models.gpt2,
    pyrustml.generate.sampling,
    pyrustml.engine.profiler,
]


def test_typed_modules_are_mypyc_extensions() -> None:
    if os.environ.get("PYRUSTML_NO_MYPYC") == "1":
        # The documented development switch: the build skipped mypyc on purpose.
        return
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for mod in COMPILED_MODULES:
        assert mod.__file__ is not None
        assert mod.__file__.endswith(suffixes), f"{mod.__name__} is not compiled: {mod.__file__}"
        assert type(pyrustml.kernels.Q8Matrix).__name__ == "type"


def test_packaged_libq8_is_the_one_loaded() -> None:
    if os.environ.get("PYRUSTML_LIBQ8"):
        assert Path(_ffi.library_path).samefile(os.environ["PYRUSTML_LIBQ8"])
        return
    packaged = Path(str(resources.files("pyrustml").joinpath("libq8.so")))
    assert packaged.is_file()
    assert Path(_ffi.library_path).samefile(packaged)
    # The dynamic loader really mapped that file into this process.
    maps = Path("/proc/self/maps").read_text()
    assert str(packaged.resolve()) in maps


def test_package_is_not_the_source_tree() -> None:
    # pytest runs in importlib mode so the checkout's pyrustml/ does not shadow the install.
    source_tree = Path(__file__).resolve().parent.parent / "pyrustml"
    if os.environ.get("PYRUSTML_ALLOW_SOURCE_TREE") == "1":
        return
    assert Path(pyrustml.__file__).resolve().parent != source_tree


def test_library_reports_its_kernel_paths() -> None:
    supported = pyrustml.kernels.isa_supported()
    assert supported[0] == "ref"
    assert pyrustml.kernels.isa_active() in supported
