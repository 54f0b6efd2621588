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

import numpy as np

from .safetensors import Checkpoint

Progress = Callable[[int, int], None]


class ReportingCheckpoint(Checkpoint):
    """A Checkpoint that calls report(done, total) as tensor bytes are read: whole tensors
    (raw) or row ranges of the large ones (rows, read and quantized a piece at a time). A
    tensor counts once, however often it is read."""

    report: Progress
    total: int
    done: int
    read: dict[str, int]  # bytes of each tensor counted so far

    def __init__(self, directory: str, report: Progress, max_tensors: int) -> None:
        super().__init__(directory, max_tensors)
        self.report = report
        self.total = sum(self.info(n).end - self.info(n).start for n in self.names())
        self.done = 0
        self.read = {}

    def _count(self, name: str, nbytes: int) -> None:
        info = self.info(name)
        size = info.end - info.start
        before = self.read.get(name, 0)
        after = min(size, before + nbytes)
        if after > before:
            self.read[name] = after
            self.done += after - before
            self.report(self.done, self.total)

    def raw(self, name: str) -> np.ndarray:
        a = super().raw(name)
        self._count(name, int(a.nbytes))
        return a

    def rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        a = super().rows(name, r0, r1)
        self._count(name, int(a.nbytes))
        return a


def open_checkpoint(directory: str, progress: Progress | None, max_tensors: int) -> Checkpoint:
    if progress is None:
        return Checkpoint(directory, max_tensors)
    return ReportingCheckpoint(directory, progress, max_tensors)


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
