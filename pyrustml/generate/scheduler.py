"""The scheduler: continuous batching over the model's KV-cache slots.

One engine thread runs steps while there is work. A step is one plan run (libq8 passes every row
through every layer in one call, each weight matrix streamed once for all rows): a decode row
for every sequence that has chosen a token (plus its prompt-lookup drafts), and prefill rows of
the sequences still reading their prompts, up to the step's row budget. A new request joins at
the next step; a finished or cancelled one leaves, and its slot keeps its tokens' keys and
values for the next request that shares their prefix (a system prompt, a chat's earlier turns).

Interference: beside running sequences a step takes at most `prefill_rows` prompt rows, and
fewer when they would cost more than INTERFERENCE of a decode step (both timed as the steps run:
a row of Gemma 3 1B's prefill costs what 1/30 of its 8-row decode step does, GPT-2's 1/35). So a
long prompt joining delays the running sequences' next token by at most one such chunk, never by
its whole length, and a step that carries one takes at most about two decode steps. (Measured:
with a fixed 32 rows such a step took 2.1-2.3x a decode step on Gemma 3 1B, which set the
inter-token p99 of running streams; the ramp of 8 joining prompts now takes longer in exchange,
tools/PERF_NOTES.md.)

Results never depend on batching: every row of a run computes exactly what it would alone (the
plan's contract), the lm_head rows likewise, and each sequence samples from its own seeded
generator, so a request gets the tokens it would get alone, whatever shares its steps.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from ..engine.kernels import check_greedy
from ..engine.profiler import DECODE as P_DECODE
from ..engine.profiler import PREFILL as P_PREFILL
from ..engine.profiler import StepRecord
from ..errors import NumericalError, PyrustmlError
from ..io.tokenizer import Tokenizer
from ..models.base import PREFILL_CHUNK, Transformer
from .sequence import DECODE, DONE, PREFILL, Sequence

# Signals for the process, not a thread's own fault: the main thread takes them.
ASYNC_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM, signal.SIGCHLD,
                 signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE, signal.SIGWINCH}  # fmt: skip
PREFILL_ROWS = 32  # prompt rows a step takes beside the decode rows, at most (see the docstring)
MIN_PREFILL_ROWS = 8  # ... and at least: a joining prompt always moves
INTERFERENCE = 1.0  # a step's prompt rows may add this fraction of a decode step's time
EMA = 0.25  # weight of the newest step in the running step-time estimates


@dataclass(eq=False)
class EngineStats:
    """Counters since load, for /metrics and the benchmark."""

    requests: int = 0
    active: int = 0
    queued: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    steps: int = 0
    step_seconds: float = 0.0

    def copy(self) -> EngineStats:
        return replace(self)


class WorkQueue:
    """What the engine thread waits on: the queued and running sequences, under one condition."""

    cv: threading.Condition
    waiting: deque[Sequence]
    active: list[Sequence]
    closing: bool
    engine_thread: threading.Thread | None

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.waiting = deque()
        self.active = []
        self.closing = False
        self.engine_thread = None

    def has_work(self) -> bool:
        return bool(self.waiting) or bool(self.active)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the engine thread after its current step and wait for it (unless called on it)."""
        with self.cv:
            self.closing = True
            self.cv.notify_all()
            thread = self.engine_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _fail_all(q: WorkQueue, exc: PyrustmlError) -> None:
    """End every sequence still queued or running (the queue's condition held)."""
    for seq in [*q.waiting, *q.active]:
        if seq.phase != DONE:
            seq.fail(exc)
        seq.publish()
    q.waiting.clear()
    q.active.clear()


def _engine_main(sched: Scheduler, q: WorkQueue) -> None:
    """The engine thread: sleep until there is work, then run a step of the scheduler. It ends
    when the queue closes (Scheduler.close, which the Model calls when it is freed or at exit).
    It blocks the asynchronous signals: delivered here, a Ctrl-C would only set Python's flag
    while the main thread sat in select() waiting for input, and the keypress would be lost."""
    signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
    while True:
        with q.cv:
            while not q.closing and not q.has_work():
                q.cv.wait()
            if q.closing:
                _fail_all(q, PyrustmlError("the model was closed while this request ran"))
                return
        sched.cycle()


class Scheduler:
    net: Transformer
    tokenizer: Tokenizer
    prefill_rows: int
    decode_s: float  # running estimate of a decode-only step's time (0: none seen yet)
    row_s: float  # ... and of what a prompt row adds beside decode rows (0: none seen yet)
    stats: EngineStats
    step_lock: threading.Lock  # held for each step; tools hold it to use the model directly
    _q: WorkQueue
    _owner: list[Sequence | None]  # per slot
    _slot_tokens: list[list[int]]  # per free slot: the tokens whose keys and values it holds
    _ring_pos: np.ndarray  # (slots, ring size) int64: the position each ring index last held
    _slot_used: list[int]  # per slot: the step it was last released (least recently used first)
    _pid: int

    def __init__(self, net: Transformer, tokenizer: Tokenizer, prefill_rows: int = PREFILL_ROWS) -> None:
        self.net = net
        self.tokenizer = tokenizer
        self.prefill_rows = prefill_rows
        self.decode_s = 0.0
        self.row_s = 0.0
        self.stats = EngineStats()
        self._reset()

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (the parent's engine thread does
        not exist there, and a step it was running left the caches in an unknown state)."""
        self._pid = os.getpid()
        self.step_lock = threading.Lock()
        self._q = WorkQueue()
        n = self.net.slots
        self._owner = [None] * n
        self._slot_tokens = [[] for _ in range(n)]
        self._ring_pos = np.full((n, max(1, self.net.ring()[0])), -1, dtype=np.int64)
        self._slot_used = [0] * n

    # ---- callers' side -------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> None:
        if os.getpid() != self._pid:
            self._reset()
        q = self._q
        with q.cv:
            if q.closing:
                raise PyrustmlError("the model is closed")
            q.waiting.append(seq)
            self.stats.requests += 1
            if q.engine_thread is None:
                q.engine_thread = threading.Thread(
                    target=_engine_main, args=(self, q), name="pyrustml-engine", daemon=True
                )
                q.engine_thread.start()
            q.cv.notify()

    def cancel(self, seq: Sequence) -> None:
        """The caller is gone: the sequence leaves at the next step (a waiting one at once)."""
        q = self._q
        with q.cv:
            seq.cancelled = True
            if seq in q.waiting:
                q.waiting.remove(seq)
                seq.phase = DONE
            q.cv.notify()

    def snapshot(self) -> EngineStats:
        with self._q.cv:
            s = self.stats.copy()
            s.active = len(self._q.active)
            s.queued = len(self._q.waiting)
            return s

    def close(self, timeout: float = 10.0) -> None:
        """Stop the engine thread after its current step: waiting and running sequences end with
        an error. Called at exit too, so no step runs while the interpreter tears down."""
        if os.getpid() != self._pid:
            return
        self._q.close(timeout)

    def forget_slots(self) -> None:
        """Someone ran the model directly (tools holding step_lock): no slot's cache is known."""
        for s in range(self.net.slots):
            self._slot_tokens[s] = []

    # ---- the engine thread ---------------------------------------------------------------------
    def cycle(self) -> None:
        """Admit waiting sequences, then run one step (on the engine thread)."""
        q = self._q
        with q.cv:
            pr = self.net.prof
            if pr is not None:  # the whole step is profiled: admitting and building rows is glue
                pr.begin(P_DECODE, 0, 0)
            self._admit()
            batch = list(q.active)
        with self.step_lock:
            try:
                self._step(batch)
            except PyrustmlError as exc:
                # A failed run leaves its rows' caches unknown: every sequence in it ends.
                with q.cv:
                    for seq in batch:
                        if seq.phase != DONE:
                            seq.fail(exc)
                    self._release_done()
            except Exception as exc:  # the engine thread must survive a bug; its callers learn of it
                with q.cv:
                    for seq in batch:
                        if seq.phase != DONE:
                            seq.fail(PyrustmlError(f"internal error: {type(exc).__name__}: {exc}"))
                    self._release_done()

    def _reusable(self, slot: int, ids: list[int]) -> int:
        """How many leading prompt tokens already sit in the slot's cache and can be kept."""
        prev = self._slot_tokens[slot]
        n = 0
        limit = min(len(prev), len(ids) - 1)  # at least one token must run to give logits
        while n < limit and prev[n] == ids[n]:
            n += 1
        # Sliding layers keep a ring: the window before the first new query must still be the
        # kept tokens' (later writes, this sequence's drafts or an older sequence's, may have
        # taken their ring indices).
        cap, window = self.net.ring()
        if cap and n > 0:
            lo = max(0, n - window + 1)
            want = np.arange(lo, n, dtype=np.int64)
            if not bool((self._ring_pos[slot, want % cap] == want).all()):
                return 0
        return n

    def _admit(self) -> None:
        """Waiting sequences take free slots, each the one holding most of its prefix (the least
        recently used among equals). Called with the condition held."""
        q = self._q
        while q.waiting:
            free = [s for s in range(self.net.slots) if self._owner[s] is None]
            if not free:
                return
            seq = q.waiting.popleft()
            if seq.cancelled:
                seq.phase = DONE
                continue
            best, cached = free[0], -1
            for s in free:
                # Model.logits needs every prompt row's logits: nothing may be skipped.
                n = 0 if seq.logits_out is not None else self._reusable(s, seq.ids)
                if n > cached or (n == cached and self._slot_used[s] < self._slot_used[best]):
                    best, cached = s, n
            self._owner[best] = seq
            self._slot_tokens[best] = []
            seq.start(best, cached)
            self.stats.prompt_tokens += len(seq.ids)
            self.stats.cached_tokens += cached
            q.active.append(seq)

    def _release_done(self) -> None:
        """Finished and cancelled sequences leave; their slots remember what they hold. Called
        with the condition held."""
        keep = []
        for seq in self._q.active:
            if seq.phase == DONE or seq.cancelled:
                seq.phase = DONE
                seq.publish()
                s = seq.slot
                self._owner[s] = None
                self._slot_tokens[s] = list(seq.fed)
                self._slot_used[s] = self.stats.steps
                self.stats.generated_tokens += len(seq.out)
            else:
                keep.append(seq)
        self._q.active[:] = keep

    def _step(self, batch: list[Sequence]) -> None:
        """One plan run over the batch's rows, then each sequence takes its results."""
        net = self.net
        t0 = time.perf_counter()
        pr = net.prof
        runnable = [s for s in batch if not s.cancelled]
        decoding = [s for s in runnable if s.phase == DECODE]
        prefilling = [s for s in runnable if s.phase == PREFILL]
        tokens: list[int] = []
        slots: list[int] = []
        positions: list[int] = []
        # (sequence, first row, rows, rows whose logits it needs from `first`)
        spans: list[tuple[Sequence, int, int, int]] = []
        # Alone, a prompt runs in the model's full chunks; beside running sequences, its rows per
        # step are bounded so their next token waits at most one small chunk.
        budget = PREFILL_CHUNK if not decoding else min(PREFILL_CHUNK, self.prompt_rows() + len(decoding))
        spare = budget - len(decoding)  # rows left for drafts and prompt chunks
        prompt_rows = 0
        for seq in decoding:
            row = seq.decode_rows(min(spare, net.prefill_chunk - 1))
            spare -= len(row) - 1
            spans.append((seq, len(tokens), len(row), len(row)))
            tokens.extend(row)
            slots.extend([seq.slot] * len(row))
            positions.extend(range(seq.pos, seq.pos + len(row)))
        for seq in prefilling:
            if spare <= 0:
                break
            chunk = seq.prompt_chunk(min(spare, net.prefill_chunk))
            spare -= len(chunk)
            last = seq.prefilled + len(chunk) == len(seq.ids)
            want = len(chunk) if seq.logits_out is not None else (1 if last else 0)
            spans.append((seq, len(tokens), len(chunk), want))
            prompt_rows += len(chunk)
            tokens.extend(chunk)
            slots.extend([seq.slot] * len(chunk))
            positions.extend(range(seq.pos, seq.pos + len(chunk)))
        t = len(tokens)
        if t == 0:
            with self._q.cv:
                self._release_done()
            if pr is not None:
                pr.cur = StepRecord(P_DECODE, 0, 0, net.n_layers)  # nothing ran: no record
            return
        net.row_tokens[:t] = tokens
        net.row_slots[:t] = slots
        net.row_pos[:t] = positions
        cap = self._ring_pos.shape[1]
        if cap > 1:  # which position each ring index of each slot holds after this run
            self._ring_pos[net.row_slots[:t], net.row_pos[:t] % cap] = net.row_pos[:t]
        if pr is not None:
            pr.cur.kind, pr.cur.tokens, pr.cur.pos = (P_PREFILL if prefilling else P_DECODE), t, positions[0]
            pr.lap_glue()
        net.run(t)
        self._take(spans)
        took = time.perf_counter() - t0
        if decoding:
            self._timed(took, prompt_rows)
        with self._q.cv:
            self.stats.steps += 1
            self.stats.step_seconds += took
        if pr is not None:
            pr.end()
        with self._q.cv:
            self._release_done()

    def prompt_rows(self) -> int:
        """Prompt rows a step may take beside decode rows: what costs at most INTERFERENCE of a
        decode step, within [MIN_PREFILL_ROWS, prefill_rows] (prefill_rows until both are timed)."""
        if self.decode_s <= 0.0 or self.row_s <= 0.0:
            return self.prefill_rows
        fit = int(INTERFERENCE * self.decode_s / self.row_s)
        return max(min(MIN_PREFILL_ROWS, self.prefill_rows), min(fit, self.prefill_rows))

    def _timed(self, took: float, prompt_rows: int) -> None:
        """A step with decode rows took `took` seconds: update the running estimates."""
        if prompt_rows == 0:
            self.decode_s = took if self.decode_s <= 0.0 else (1 - EMA) * self.decode_s + EMA * took
        elif self.decode_s > 0.0:
            per_row = max(0.0, took - self.decode_s) / prompt_rows
            self.row_s = per_row if self.row_s <= 0.0 else (1 - EMA) * self.row_s + EMA * per_row

    def _take(self, spans: list[tuple[Sequence, int, int, int]]) -> None:
        """The lm_head over the rows that need it (one batched pass), then each sequence's tokens."""
        net = self.net
        pr = net.prof
        heads: list[int] = []
        for _, first, n, want in spans:
            heads.extend(range(first + n - want, first + n))
        if pr is not None:
            pr.lap_glue()
        raw: np.ndarray | None = None
        fused = -1
        if len(heads) == 1 and not spans_need_logits(spans):
            try:
                fused = net.argmax_row(heads[0])  # the logits never leave C
            except NumericalError as exc:
                for seq, _, _, want in spans:
                    if want:
                        seq.fail(_at_step(exc, seq))
                fused = -2
        elif heads:
            raw = net.project(heads)
        if pr is not None:
            pr.lap_lm_head()
        h = 0
        for seq, _, n, want in spans:
            rows = raw[h : h + want] if raw is not None else None
            h += want
            if seq.phase == DONE:
                continue
            try:
                self._advance(seq, n, rows, fused)
            except NumericalError as exc:
                seq.fail(_at_step(exc, seq))
            except PyrustmlError as exc:
                seq.fail(exc)
        if pr is not None:
            pr.lap_sampling()

    def _advance(self, seq: Sequence, n: int, rows: np.ndarray | None, fused: int) -> None:
        """A sequence takes the results of its n rows of this step."""
        net, tok = self.net, self.tokenizer
        if seq.phase == PREFILL:
            if seq.logits_out is not None and rows is not None:
                net.softcap(rows)
                seq.logits_out[seq.prefilled : seq.prefilled + n] = rows
            if not seq.prefilled_chunk(n):
                return
            if seq.logits_out is not None:
                seq.complete()
                return
            token = fused if rows is None else seq.choose(rows[0], net.softcap, tok)
            seq.phase = DECODE
            seq.next_token = token
            if not seq.accept(token):
                seq.complete()
            return
        # Decode: the fed token (and drafts) ran at positions pos .. pos + n - 1.
        seq.fed_token()
        seq.stepped()
        if n == 1:
            token = fused if rows is None else seq.choose(rows[0], net.softcap, tok)
            chosen = [token]
        else:
            assert rows is not None
            preds = [int(np.argmax(r)) for r in rows]
            for r, p in zip(rows, preds, strict=True):
                check_greedy(float(r[p]))
            k = 0
            while k < len(seq.drafts) and preds[k] == seq.drafts[k]:
                k += 1
            seq.timings.draft_tokens += len(seq.drafts)
            seq.timings.accepted_tokens += k
            chosen = [*seq.drafts[:k], preds[k]]
        for i, token in enumerate(chosen):
            if i > 0:  # an accepted draft token: its keys and values are in the cache already
                seq.next_token = chosen[i - 1]
                seq.fed.append(seq.next_token)
                seq.pos += 1
            if not seq.accept(token):
                seq.complete()
                return
            seq.next_token = token
        seq.drafts = []


def _at_step(exc: NumericalError, seq: Sequence) -> NumericalError:
    return NumericalError(f"{exc} at generation step {len(seq.out) + 1} (position {seq.pos - 1})")


def spans_need_logits(spans: list[tuple[Sequence, int, int, int]]) -> bool:
    return any(want and (seq.needs_logits or seq.logits_out is not None) for seq, _, _, want in spans)
