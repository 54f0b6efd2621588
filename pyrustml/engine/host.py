"""Facts about this machine and process, from psutil so they hold beyond Linux: the memory the
kernel could give us, resident size, physical cores, and the CPU time of everyone else.

Interpreted (not mypyc-compiled): each is read a few times per load or benchmark."""

from __future__ import annotations

import os
import time

import psutil


def available_bytes() -> int:
    """Memory the system could give us now without swapping (Linux: MemAvailable)."""
    return int(psutil.virtual_memory().available)


def rss_bytes() -> int:
    """This process's resident set size."""
    return int(psutil.Process().memory_info().rss)


def physical_cores() -> int:
    """Physical cores (logical CPUs where the system does not say)."""
    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


class CpuShare:
    """Share of the machine's CPU time that other processes used since construction: all busy
    time minus this process's and its reaped children's (benchmark workers are our children)."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.t0 = time.monotonic()
        self.busy0, self.steal0 = self._machine()
        self.own0 = self._own()

    @staticmethod
    def _machine() -> tuple[float, float]:
        t = psutil.cpu_times()
        busy = (
            t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        )
        return float(busy), float(getattr(t, "steal", 0.0))

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def report(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        busy, steal = self._machine()
        own = self._own() - self.own0
        capacity = wall * (psutil.cpu_count() or 1)
        other = max(0.0, busy - self.busy0 - own)
        return {
            "wall_s": wall,
            "other_processes_pct": 100.0 * other / capacity,
            "steal_pct": 100.0 * (steal - self.steal0) / capacity,
        }
