"""Feedback while a checkpoint loads: a Checkpoint that reports each tensor as it is converted,
and the tqdm bar (as huggingface_hub draws its downloads) that pyrustml-infer shows on stderr.

load(..., progress=callback) calls callback(done_bytes, total_bytes) after each tensor has been
read and converted (quantized or copied); the bar is one such callback. Compiled with mypyc
alongside io/safetensors.py: a subclass of a compiled class must be compiled too."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from .safetensors import Checkpoint

Progress = Callable[[int, int], None]


class ReportingCheckpoint(Checkpoint):
    """A Checkpoint that calls report(done, total) each time a tensor is released: the builders
    release every tensor once it is converted, so `done` counts the bytes read so far."""

    report: Progress
    total: int
    done: int
    seen: set[str]

    def __init__(self, directory: str, report: Progress) -> None:
        super().__init__(directory)
        self.report = report
        self.total = sum(f.tensors[n].end - f.tensors[n].start for n, f in self.where.items())
        self.done = 0
        self.seen = set()

    def release(self, name: str) -> None:
        super().release(name)
        f = self.where.get(name)
        if f is None or name in self.seen:
            return
        self.seen.add(name)
        info = f.tensors[name]
        self.done += info.end - info.start
        self.report(self.done, self.total)


def open_checkpoint(directory: str, progress: Progress | None) -> Checkpoint:
    return Checkpoint(directory) if progress is None else ReportingCheckpoint(directory, progress)


def wanted(quiet: bool) -> bool:
    """A bar only for a person watching: stderr is a terminal, and neither --quiet nor
    PYRUSTML_LOG=error asked for silence."""
    if quiet or os.environ.get("PYRUSTML_LOG", "").lower() == "error":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # stderr replaced or closed
        return False


class Bar:
    """A tqdm bar on stderr in bytes, drawn from the first report on; close() ends it (full when
    the load finished)."""

    desc: str
    _bar: Any

    def __init__(self, desc: str = "loading weights") -> None:
        self.desc = desc
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            try:
                size = os.get_terminal_size(sys.stderr.fileno())
                sized = size.columns > 0 and size.lines > 0
            except (OSError, ValueError, AttributeError):
                sized = False
            # A terminal that reports no size (some pseudo-terminals) would get no bar at all.
            self._bar = tqdm(
                total=total, desc=self.desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, leave=False, dynamic_ncols=sized,
                ncols=None if sized else 80, nrows=None if sized else 24,
            )  # fmt: skip
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
