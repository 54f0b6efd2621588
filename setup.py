"""Build: `make -C libq8` for the C kernels, then mypyc for the typed modules.

PYRUSTML_NO_MYPYC=1 skips mypyc (a faster edit-run loop in development); the wheel is still
platform-specific because it carries libq8.so.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

# Typed modules compiled by mypyc. Left interpreted, each for a reason:
#   engine/_ffi.py      owns cffi, whose objects are dynamic; it runs once at import.
#   engine/plan.py      records forward() once at load (cffi pointers in, a q8_op array out);
#                       a step is then one libq8 call, so nothing per row runs in it.
#   engine/kv_cache.py, engine/host.py: allocate the caches and read the host (psutil) once
#                       per load.
#   errors.py           exception classes with two built-in bases, which mypyc cannot make native.
#   io/hub.py           a thin wrapper over huggingface_hub, imported lazily, runs once per load.
#   io/chat_template.py subclasses Jinja's sandbox and hands it callables; runs once per turn.
#   generate/options.py checks a call's options once per call; io/values.py holds the ranges it,
#                       the CLI and generation_config.json share (once per call or load).
#   model.py            the public facade: runs once per call, and types its options once as
#                       keyword arguments (PEP 692 **kwargs), which compiled code cannot take.
#   kernels.py (the public re-export), __init__.py, __main__.py, cli.py: entry points.
#   perf/               the profiler's report, the audit and the benchmark driver: once per run,
#                       over JSON-shaped dicts.
#   serve/              the HTTP server and Ray deployment: glue over Starlette, pydantic, uvicorn
#                       and Ray (dynamic, optional dependencies); the per-token work stays in the
#                       engine.
COMPILED = [
    "pyrustml/engine/kernels.py",
    "pyrustml/engine/pool.py",
    "pyrustml/io/config.py",
    "pyrustml/io/safetensors.py",
    "pyrustml/io/progress.py",  # subclasses the compiled Checkpoint
    "pyrustml/engine/linear.py",
    "pyrustml/io/weights.py",
    "pyrustml/io/weight_map.py",
    "pyrustml/generate/sampling.py",
    "pyrustml/io/tokenizer.py",
    "pyrustml/generate/result.py",
    "pyrustml/generate/stops.py",
    "pyrustml/generate/sequence.py",
    "pyrustml/generate/scheduler.py",
    "pyrustml/models/base.py",
    "pyrustml/models/decoder.py",
    "pyrustml/models/gpt2.py",
    "pyrustml/models/gemma3.py",
    "pyrustml/models/gemma3_multimodal.py",
    "pyrustml/models/llama.py",
    "pyrustml/models/rope.py",
    "pyrustml/models/registry.py",
    "pyrustml/engine/profiler.py",
    "pyrustml/generate/prompt_lookup.py",
]


class BuildPyWithLibq8(build_py):
    def run(self) -> None:
        if shutil.which("make") is None:
            raise SystemExit("building pyrustml needs `make` and a C compiler (apt-get install make gcc)")
        subprocess.run(["make", "-C", "libq8", "lib"], check=True)
        super().run()
        for target in (os.path.join(self.build_lib, "pyrustml"), "pyrustml"):
            # The source tree gets a copy too, so an editable install finds the library.
            os.makedirs(target, exist_ok=True)
            for src in ("libq8/build/libq8.so", "libq8/include/q8.h"):
                # Copy then rename: a process that has the old library mapped keeps its inode
                # (copying over the live file in place crashed running benchmarks).
                dst = os.path.join(target, os.path.basename(src))
                shutil.copy(src, dst + ".tmp")
                os.replace(dst + ".tmp", dst)


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True  # libq8.so makes the wheel platform-specific even without mypyc


def ext_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("PYRUSTML_NO_MYPYC") == "1":
        return []
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3")


setup(
    cmdclass={"build_py": BuildPyWithLibq8},
    distclass=BinaryDistribution,
    ext_modules=ext_modules(),
)
