"""The installed package is what runs: compiled modules and the libq8.so shipped inside it."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import inspect
import os
import types
from importlib import resources
from pathlib import Path

import pytest

import pyrustml
import pyrustml.kernels
from pyrustml.engine import _ffi

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    """The dotted names of setup.py's COMPILED list: the one place that says what mypyc builds."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets):
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def test_typed_modules_are_mypyc_extensions() -> None:
    if os.environ.get("PYRUSTML_NO_MYPYC") == "1":
        pytest.skip("PYRUSTML_NO_MYPYC=1: the build skipped mypyc on purpose (the development switch)")
    names = compiled_modules()
    assert len(names) >= 14, names
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in names:
        mod = importlib.import_module(name)
        assert mod.__file__ is not None
        assert mod.__file__.endswith(suffixes), f"{name} is not compiled: {mod.__file__}"
    # A native class's methods are C descriptors, never Python functions.
    method = inspect.getattr_static(pyrustml.kernels.Q8Matrix, "ptr")
    assert not isinstance(method, types.FunctionType), method


def test_packaged_libq8_is_the_one_loaded() -> None:
    if os.environ.get("PYRUSTML_LIBQ8"):
        assert Path(_ffi.library_path).samefile(os.environ["PYRUSTML_LIBQ8"])
        return  # the override is what was asked for: checked above
    packaged = Path(str(resources.files("pyrustml").joinpath("libq8.so")))
    assert packaged.is_file()
    assert Path(_ffi.library_path).samefile(packaged)
    # The dynamic loader really mapped that file into this process.
    maps = Path("/proc/self/maps").read_text()
    assert str(packaged.resolve()) in maps


def test_package_is_not_the_source_tree() -> None:
    # pytest runs in importlib mode so the checkout's pyrustml/ does not shadow the install.
    source_tree = ROOT / "pyrustml"
    if os.environ.get("PYRUSTML_ALLOW_SOURCE_TREE") == "1":
        pytest.skip("PYRUSTML_ALLOW_SOURCE_TREE=1: running against the source tree on purpose")
    assert Path(pyrustml.__file__).resolve().parent != source_tree


def test_library_reports_its_kernel_paths() -> None:
    supported = pyrustml.kernels.isa_supported()
    assert supported[0] == "ref"
    assert pyrustml.kernels.isa_active() in supported
