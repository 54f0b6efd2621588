"""The environment of a child interpreter that must import the same pyrustml as the tests do
(the installed package, or the source tree under PYRUSTML_ALLOW_SOURCE_TREE). Importable from
this directory's tests: its conftest puts the directory on sys.path."""

from __future__ import annotations

import os
from pathlib import Path

import pyrustml

ROOT = Path(__file__).resolve().parents[2]


def child_env(*, inherit_isa: bool = True, **extra: str) -> dict[str, str]:
    """os.environ for the child, pointed at this process's pyrustml; inherit_isa=False drops a
    forced PYRUSTML_ISA (the child picks its own kernel path unless extra sets one)."""
    env = dict(os.environ)
    if not inherit_isa:
        env.pop("PYRUSTML_ISA", None)
    if Path(pyrustml.__file__).resolve().parent.parent == ROOT:
        # Testing the source tree: the child runs outside the checkout, so point it there.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYRUSTML_ALLOW_SOURCE_TREE"] = "1"
    if env.get("PYRUSTML_LIBQ8"):  # a sanitizer build named relative to this process's directory
        env["PYRUSTML_LIBQ8"] = os.path.abspath(env["PYRUSTML_LIBQ8"])
    env.update(extra)
    return env
