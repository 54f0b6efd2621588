"""A sequence: one request's generation in progress.

It owns everything per request: the prompt, its KV-cache slot and position, its sampler, its
stop state, its detokenizer, its prompt-lookup index, its timings, and where its events go. The
scheduler (generate.scheduler) decides which of its rows run in a step and hands it back the
step's results; nothing here touches another sequence.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..engine.kernels import check_greedy, expsum, topk
from ..errors import PyrustmlError
from ..io.tokenizer import StreamDecoder, Tokenizer
from .prompt_lookup import PromptLookup
from .result import Generation, Timings, TokenLogprob
from .sampling import Sampler, SamplingParams
from .stops import stop_index, stop_prefix_len

PREFILL = 0  # prompt tokens still to run
DECODE = 1  # a chosen token waits to be fed
DONE = 2

log = logging.getLogger("pyrustml")

# What a sequence hands its caller, in order: ("text", str) pieces of valid UTF-8, each preceded
# (when log-probabilities were asked for) by ("logprobs", list[TokenLogprob]) of the tokens
# since the last piece; then the end, ("done", Generation) or ("error", PyrustmlError).
Event = tuple[str, object]


class EventSink(Protocol):
    """Where a sequence's events go, on the engine thread, inside its step: a queue a caller
    waits on (TextStream), or a server's hook into its event loop. put must be quick and must
    neither block nor raise."""

    def put(self, event: Event, /) -> None: ...


class Sequence:
    ids: list[int]  # the prompt's token ids
    params: SamplingParams
    stops: list[str]
    want_logprobs: bool
    top_logprobs: int
    logits_out: np.ndarray | None  # Model.logits: every prompt row's logits land here
    eos_ids: frozenset[int]
    ctx: int  # positions this sequence may use
    phase: int
    slot: int  # KV-cache slot, -1 until admitted
    pos: int  # the next position to write
    prefilled: int  # prompt tokens whose keys and values are in the cache
    fed: list[int]  # tokens whose keys and values sit in the slot, in position order
    next_token: int  # DECODE: the token to feed at `pos`
    drafts: list[int]  # prompt-lookup tokens riding along with next_token this step
    history: list[int]  # prompt + generated ids (repetition penalty)
    out: list[int]
    sampler: Sampler
    decoder: StreamDecoder
    lookup: PromptLookup | None
    text_parts: list[str]
    emitted: int  # characters of the text already handed to the caller
    held: str  # the text after `emitted` that a stop string may still claim (with stops only)
    finish: str
    truncated: bool
    logprobs: list[TokenLogprob]
    logprobs_sent: int  # entries already handed to the caller
    timings: Timings
    events: EventSink
    cancelled: bool
    result: Generation | None
    error: PyrustmlError | None
    t_submit: float
    t_start: float
    t_first: float
    t_last: float  # the last token's time
    t_step: float  # when the last step's result came

    def __init__(
        self,
        ids: list[int],
        params: SamplingParams,
        stops: list[str],
        tokenizer: Tokenizer,
        eos_ids: frozenset[int],
        ctx: int,
        want_logprobs: bool = False,
        top_logprobs: int = 0,
        logits_out: np.ndarray | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.ids = ids
        self.params = params
        self.stops = [s for s in stops if s]
        self.want_logprobs = want_logprobs
        self.top_logprobs = top_logprobs
        self.logits_out = logits_out
        self.eos_ids = eos_ids
        self.ctx = ctx
        self.phase = PREFILL
        self.slot = -1
        self.pos = 0
        self.prefilled = 0
        self.fed = []
        self.next_token = -1
        self.drafts = []
        self.history = list(ids)
        self.out = []
        self.sampler = Sampler(params)
        self.decoder = StreamDecoder(tokenizer)
        self.lookup = PromptLookup(ids) if params.lookup else None
        self.text_parts = []
        self.emitted = 0
        self.held = ""
        self.finish = "length"
        self.truncated = False
        self.logprobs = []
        self.logprobs_sent = 0
        self.timings = Timings()
        self.events = queue.SimpleQueue() if events is None else events
        self.cancelled = False
        self.result = None
        self.error = None
        self.t_submit = time.perf_counter()
        self.t_start = 0.0
        self.t_first = 0.0
        self.t_last = 0.0
        self.t_step = 0.0

    # ---- what the scheduler asks ---------------------------------------------------------
    @property
    def needs_logits(self) -> bool:
        """Whether choosing a token needs the logits in Python (else the fused argmax will do)."""
        return self.params.needs_logits or self.want_logprobs

    def start(self, slot: int, cached: int) -> None:
        """Admitted into `slot`, whose cache already holds the first `cached` prompt tokens."""
        self.slot = slot
        self.prefilled = cached
        self.pos = cached
        self.fed = self.ids[:cached]
        self.timings.cached_tokens = cached
        self.t_start = time.perf_counter()
        self.timings.queue_ms = (self.t_start - self.t_submit) * 1000.0

    def prompt_chunk(self, limit: int) -> list[int]:
        """The next prompt tokens to prefill, at most `limit` of them."""
        return self.ids[self.prefilled : self.prefilled + limit]

    def decode_rows(self, room: int) -> list[int]:
        """The tokens this sequence feeds in a decode step: the chosen token, then up to `room`
        prompt-lookup drafts (never past the context or the tokens still wanted)."""
        self.drafts = []
        if self.lookup is not None and room > 0 and not self.want_logprobs:
            room = min(room, self.params.max_tokens - len(self.out) - 1, self.ctx - self.pos - 1)
            self.drafts = self.lookup.draft(room)
        return [self.next_token, *self.drafts]

    def prefilled_chunk(self, n: int) -> bool:
        """n prompt tokens ran; True when the prompt is complete (its last row chooses a token)."""
        self.fed.extend(self.ids[self.prefilled : self.prefilled + n])
        self.prefilled += n
        self.pos = self.prefilled
        return self.prefilled == len(self.ids)

    # ---- tokens ----------------------------------------------------------------------------
    def choose(self, raw: np.ndarray, softcap: Callable[[np.ndarray], None], tokenizer: Tokenizer) -> int:
        """The next token from a raw (not soft-capped) logits row of the model; the row may be
        modified. softcap(row) applies the model's final softcap in place. Greedy takes the raw
        argmax, as the fused lm_head argmax does (softcap is monotonic; rounding after it could
        tie what the raw logits order)."""
        p = self.params
        if p.greedy and p.repetition_penalty == 1.0:
            token = int(np.argmax(raw))
            check_greedy(float(raw[token]))
            if self.want_logprobs:
                row = raw.copy()
                softcap(row)
                self.logprobs.append(log_probability(row, token, self.top_logprobs, tokenizer))
            return token
        softcap(raw)
        row = raw.copy() if self.want_logprobs else raw
        token = self.sampler.sample(raw, self.history)
        if self.want_logprobs:
            self.logprobs.append(log_probability(row, token, self.top_logprobs, tokenizer))
        return token

    def accept(self, token: int) -> bool:
        """Take a generated token: stop on eos, append it, hand out the text that became final.
        Returns False when the sequence is finished."""
        now = time.perf_counter()
        if self.t_first == 0.0:
            self.t_first = now
            self.timings.prompt_ms = (now - self.t_start) * 1000.0
            self.timings.prompt_tokens = len(self.ids)
            self.timings.first_token_ms = (now - self.t_submit) * 1000.0
            self.t_step = now
        self.t_last = now
        if token in self.eos_ids and not self.params.ignore_eos:
            if self.want_logprobs and self.logprobs:
                self.logprobs.pop()  # the eos token is not part of the completion
            self.finish = "stop"
            return False
        self.out.append(token)
        self.history.append(token)
        if self.lookup is not None:
            self.lookup.push(token)
        piece = self.decoder.push(token)
        if piece:
            self.text_parts.append(piece)
            self._emit_safe(piece)
        if self.finish == "stop":
            return False
        if len(self.out) >= self.params.max_tokens:
            return False
        if self.pos >= self.ctx:
            self.truncated = True
            return False
        return True

    def _emit_safe(self, piece: str) -> None:
        """Hand out the text that no stop string can still claim. Only the held-back tail is
        searched: the text before it holds no stop and no start of one (stop_prefix_len keeps
        the longest such start), so a token costs the same however long the text has grown."""
        if not self.stops:
            self.emitted += len(piece)
            self._text(piece)
            return
        held = self.held + piece
        cut = stop_index(held, self.stops)
        if cut >= 0:
            self.finish = "stop"
            safe = cut
        else:
            safe = len(held) - stop_prefix_len(held, self.stops)
        if safe > 0:
            self._text(held[:safe])
            self.emitted += safe
        self.held = held[safe:]

    def stepped(self) -> None:
        """A decode step of this sequence ended: its duration joins the timings."""
        now = time.perf_counter()
        self.timings.step_ms.append((now - self.t_step) * 1000.0)
        self.t_step = now

    def fed_token(self) -> None:
        """The chosen token ran (its keys and values are in the cache at `pos`)."""
        self.fed.append(self.next_token)
        self.pos += 1

    # ---- the end -----------------------------------------------------------------------------
    def complete(self) -> Generation:
        """Finish: the decoder's held-back tail always joins the text (identical tokens give
        identical text, whatever the stops), then the text is cut at the first stop string."""
        self.phase = DONE
        self.text_parts.append(self.decoder.flush())
        full = "".join(self.text_parts)
        end = stop_index(full, self.stops) if self.stops else -1
        if end >= 0:
            self.finish = "stop"
        end = len(full) if end < 0 else end
        if end > self.emitted:
            self._text(full[self.emitted : end])
            self.emitted = end
        t = self.timings
        t.eval_tokens = max(0, len(self.out) - 1)
        t.eval_ms = (self.t_last - self.t_first) * 1000.0 if self.t_first > 0.0 else 0.0
        g = Generation(
            full[:end],
            self.out,
            self.ids,
            self.finish,
            t,
            self.logprobs if self.want_logprobs else None,
            self.truncated,
        )
        self.result = g
        return g

    def fail(self, exc: PyrustmlError) -> None:
        self.phase = DONE
        self.error = exc

    def publish(self) -> None:
        """Tell the caller it ended (after the step that ended it is fully accounted for)."""
        if self.error is not None:
            self._deliver(("error", self.error))
        elif self.result is not None:
            self._new_logprobs()
            self._deliver(("done", self.result))

    # ---- the caller's events -----------------------------------------------------------------
    def _deliver(self, event: Event) -> None:
        """Every event leaves through here. None after the caller cancelled (close() under the
        engine's lock: the step in progress may still hand out its text, never the end), and a
        sink that raises is cut off instead of taking the engine thread and its other
        sequences down with it."""
        if self.cancelled:
            return
        try:
            self.events.put(event)
        except Exception:
            log.exception("an event sink raised: its request is cancelled")
            self.cancelled = True

    def _new_logprobs(self) -> None:
        if self.want_logprobs and len(self.logprobs) > self.logprobs_sent:
            self._deliver(("logprobs", self.logprobs[self.logprobs_sent :]))
            self.logprobs_sent = len(self.logprobs)

    def _text(self, piece: str) -> None:
        self._new_logprobs()
        self._deliver(("text", piece))


def log_probability(row: np.ndarray, token: int, top: int, tokenizer: Tokenizer) -> TokenLogprob:
    """log-softmax of a logits row at `token`, with its `top` best alternatives: libq8 selects the
    top-k and sums the normalizer in C, so the vocabulary never becomes a Python list."""
    idx, val = topk(row, max(1, min(top, int(row.shape[0]))))
    m = float(val[0])
    lse = m + float(np.log(expsum(row, m, 1.0)))
    alts = [(int(i), tokenizer.decode([int(i)]), float(v) - lse) for i, v in zip(idx, val, strict=True)]
    return TokenLogprob(token, tokenizer.decode([token]), float(row[token]) - lse, alts[:top])
