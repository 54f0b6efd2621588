"""The timings record of a run: per step, how long each component took (monotonic clock, ns).

A Profiler is attached to a model only while profiling (Model.enable_profiling); the forward pass
calls its lap_* methods at component boundaries behind one `is not None` test, so a model that is
not profiled pays nothing measurable. Laps are contiguous: each one closes the interval the
previous one opened, so the components of a step add up to its measured total. Everything here
records; pyrustml.perf.report analyses and formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PREFILL = "prefill"
DECODE = "decode"


class StepRecord:
    """One step: a prompt's prefill (all its chunks) or one decode token, each ending with the
    lm_head and the sampler choosing the next token. Times in nanoseconds."""

    kind: str
    tokens: int  # rows run through the layers
    pos: int  # position of the first of them
    embedding_ns: int
    attention_ns: list[int]  # per layer: norm, QKV, RoPE, cache, attention, output projection
    ffn_ns: list[int]  # per layer: norms, up/gate projections, activation, down projection
    norm_ns: int  # final norm
    glue_ns: int  # between the forward pass and the lm_head (the generation loop)
    lm_head_ns: int
    sampling_ns: int
    total_ns: int
    start_ns: int  # when the step began (perf_counter_ns), to order steps on one clock

    def __init__(self, kind: str, tokens: int, pos: int, n_layers: int) -> None:
        self.kind = kind
        self.tokens = tokens
        self.pos = pos
        self.embedding_ns = 0
        self.attention_ns = [0] * n_layers
        self.ffn_ns = [0] * n_layers
        self.norm_ns = 0
        self.glue_ns = 0
        self.lm_head_ns = 0
        self.sampling_ns = 0
        self.total_ns = 0
        self.start_ns = 0

    @property
    def layers_ns(self) -> int:
        return sum(self.attention_ns) + sum(self.ffn_ns)

    @property
    def components_ns(self) -> int:
        """The sum of the components, to reconcile with total_ns."""
        return (
            self.embedding_ns
            + self.layers_ns
            + self.norm_ns
            + self.glue_ns
            + self.lm_head_ns
            + self.sampling_ns
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "tokens": self.tokens,
            "pos": self.pos,
            "embedding_ns": self.embedding_ns,
            "attention_ns": list(self.attention_ns),
            "ffn_ns": list(self.ffn_ns),
            "norm_ns": self.norm_ns,
            "glue_ns": self.glue_ns,
            "lm_head_ns": self.lm_head_ns,
            "sampling_ns": self.sampling_ns,
            "total_ns": self.total_ns,
            "start_ns": self.start_ns,
        }


class Profiler:
    """Collects StepRecords; `listener` (if set) sees each step as it ends."""

    n_layers: int
    steps: list[StepRecord]
    cur: StepRecord
    listener: Callable[[StepRecord], None] | None
    _start: int
    _t: int

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.steps = []
        self.cur = StepRecord(DECODE, 0, 0, n_layers)
        self.listener = None
        self._start = self._t = time.perf_counter_ns()

    def begin(self, kind: str, tokens: int, pos: int) -> None:
        self.cur = StepRecord(kind, tokens, pos, self.n_layers)
        self._start = self._t = time.perf_counter_ns()

    def _lap(self) -> int:
        now = time.perf_counter_ns()
        dt = now - self._t
        self._t = now
        return dt

    def lap_embedding(self) -> None:
        self.cur.embedding_ns += self._lap()

    def lap_attention(self, layer: int) -> None:
        self.cur.attention_ns[layer] += self._lap()

    def lap_ffn(self, layer: int) -> None:
        self.cur.ffn_ns[layer] += self._lap()

    def lap_norm(self) -> None:
        self.cur.norm_ns += self._lap()

    def lap_glue(self) -> None:
        self.cur.glue_ns += self._lap()

    def lap_lm_head(self) -> None:
        self.cur.lm_head_ns += self._lap()

    def lap_sampling(self) -> None:
        self.cur.sampling_ns += self._lap()

    def lap_marks(self, marks: list[int]) -> None:
        """The laps of a decode plan's run from its marks (CLOCK_MONOTONIC, the clock of
        perf_counter_ns on Linux): embedding, then attention and feed-forward of each layer,
        then the final norm."""
        if len(marks) != 2 + 2 * self.n_layers:
            raise ValueError(f"{len(marks)} plan marks for {self.n_layers} layers")
        t = self._t
        self.cur.embedding_ns += marks[0] - t
        for i in range(self.n_layers):
            self.cur.attention_ns[i] += marks[1 + 2 * i] - marks[2 * i]
            self.cur.ffn_ns[i] += marks[2 + 2 * i] - marks[1 + 2 * i]
        self.cur.norm_ns += marks[-1] - marks[-2]
        self._t = marks[-1]

    def end(self) -> None:
        """Close the step: what ran since the last lap is glue, so the components add up to the
        total exactly (one clock read ends both)."""
        rec = self.cur
        rec.glue_ns += self._lap()
        rec.start_ns = self._start
        rec.total_ns = self._t - self._start
        self.steps.append(rec)
        self.cur = StepRecord(DECODE, 0, 0, self.n_layers)
        if self.listener is not None:
            self.listener(rec)
