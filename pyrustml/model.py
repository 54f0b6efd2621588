"""pyrustml.load and the Model it returns: logits, generate, stream.

Concurrency: a Model serializes its callers with a per-model lock (its buffers and KV cache are
shared state), so several Python threads each get exactly what they would get alone. Every
generate() starts from a fresh cache, so an interrupted call (KeyboardInterrupt) leaves the
model ready for the next one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator

import numpy as np

from .engine.pool import RuntimeConfig
from .engine.profiler import DECODE, PREFILL, Profiler
from .errors import (
    ContextLengthError,
    ModelFormatError,
    NumericalError,
    OptionError,
    PromptError,
    PromptTypeError,
    PyrustmlError,
)
from .generate.prompt_lookup import PromptLookup
from .generate.sampling import Sampler, SamplingParams
from .io.chat_template import ChatTemplate, ChatTemplateError, load_template
from .io.config import Fields, read_json
from .io.hub import resolve
from .io.safetensors import Checkpoint
from .io.tokenizer import StreamDecoder, Tokenizer
from .io.weights import QUANTS, QuantPlan
from .models.base import Transformer
from .models.registry import builder_for

log = logging.getLogger("pyrustml")


class Timings:
    """Wall-clock figures of one generation, in milliseconds."""

    prompt_ms: float
    prompt_tokens: int
    eval_ms: float
    eval_tokens: int
    first_token_ms: float
    cached_tokens: int  # prompt tokens whose KV cache was kept from the previous call
    step_ms: list[float]  # each decode step after the first token: forward, lm_head, sampling
    draft_tokens: int  # prompt-lookup tokens proposed and verified (lookup > 0)
    accepted_tokens: int  # of them, those the model's greedy choice confirmed

    def __init__(self) -> None:
        self.cached_tokens = 0
        self.prompt_ms = 0.0
        self.prompt_tokens = 0
        self.eval_ms = 0.0
        self.eval_tokens = 0
        self.first_token_ms = 0.0
        self.step_ms = []
        self.draft_tokens = 0
        self.accepted_tokens = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "prompt_ms": self.prompt_ms,
            "prompt_tokens": float(self.prompt_tokens),
            "prompt_tok_per_s": _rate(self.prompt_tokens, self.prompt_ms),
            "eval_ms": self.eval_ms,
            "eval_tokens": float(self.eval_tokens),
            "eval_tok_per_s": _rate(self.eval_tokens, self.eval_ms),
            "time_to_first_token_ms": self.first_token_ms,
            "cached_tokens": float(self.cached_tokens),
            "draft_tokens": float(self.draft_tokens),
            "accepted_tokens": float(self.accepted_tokens),
        }


def _rate(n: int, ms: float) -> float:
    return 1000.0 * n / ms if ms > 0 else 0.0


class Generation:
    text: str
    tokens: list[int]
    prompt_tokens: list[int]
    finish_reason: str
    timings: Timings

    def __init__(
        self, text: str, tokens: list[int], prompt_tokens: list[int], finish_reason: str, timings: Timings
    ):
        self.text = text
        self.tokens = tokens
        self.prompt_tokens = prompt_tokens
        self.finish_reason = finish_reason
        self.timings = timings

    def __repr__(self) -> str:
        return (
            f"Generation(finish_reason={self.finish_reason!r}, tokens={len(self.tokens)}, text={self.text!r})"
        )


class Model:
    net: Transformer
    tokenizer: Tokenizer
    directory: str
    quant: str
    eos_ids: list[int]
    bos_id: int | None
    add_bos: bool
    defaults: dict[str, float]
    load_ms: float
    warmup_ms: float  # the thread pool's warmup, part of load_ms
    runtime: RuntimeConfig
    chat_template: ChatTemplate | None
    _session: list[int]  # token ids whose keys and values are in the KV cache, in order
    _high: int  # positions written in the cache by the last call (drafts may pass _session)
    _lock: threading.Lock
    _pid: int  # the process the lock belongs to (a forked child renews it)
    _epoch: int  # bumped by every call that writes the KV cache

    def __init__(
        self,
        net: Transformer,
        tokenizer: Tokenizer,
        directory: str,
        quant: str,
        gen_cfg: Fields,
        tok_cfg: Fields,
        runtime: RuntimeConfig,
        load_ms: float,
    ) -> None:
        self.net = net
        self.tokenizer = tokenizer
        self.directory = directory
        self.quant = quant
        self.runtime = runtime
        self.load_ms = load_ms
        self.warmup_ms = 0.0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._epoch = 0
        self._session = []
        self._high = 0
        self.chat_template = load_template(directory, tok_cfg.data)
        eos = gen_cfg.int_list("eos_token_id")
        # The tokenizer's eos token stops generation too (tokenizer_config.json names it).
        tok_eos = tok_cfg.data.get("eos_token")
        if isinstance(tok_eos, dict):
            tok_eos = tok_eos.get("content")
        if isinstance(tok_eos, str):
            i = tokenizer.token_id(tok_eos)
            if i is not None:
                eos.append(i)
        self.eos_ids = sorted({i for i in eos if 0 <= i < net.vocab_size})
        bos = gen_cfg.int_list("bos_token_id")
        self.bos_id = bos[0] if bos and 0 <= bos[0] < net.vocab_size else None
        self.add_bos = bool(tok_cfg.data.get("add_bos_token", False)) and self.bos_id is not None
        # Sampling defaults from generation_config.json (explicit arguments override them).
        self.defaults = {}
        for key in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty"):
            v = gen_cfg.data.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                self.defaults[key] = float(v)
        if gen_cfg.data.get("do_sample") is False:
            self.defaults["temperature"] = 0.0

    # ---- profiling ---------------------------------------------------------------------
    def enable_profiling(self) -> Profiler:
        """Start recording per-step component timings (pyrustml.perf.report analyses them); returns
        the Profiler, whose .steps grow with every prefill and decode step until disabled."""
        self._acquire()
        try:
            if self.net.prof is None:
                self.net.prof = Profiler(self.net.n_layers)
            return self.net.prof
        finally:
            self._lock.release()

    def disable_profiling(self) -> None:
        self._acquire()
        try:
            self.net.prof = None
        finally:
            self._lock.release()

    # ---- inputs ------------------------------------------------------------------------
    def encode(self, prompt: object) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, add_special_tokens=False)
            if self.add_bos and (not ids or ids[0] != self.bos_id) and self.bos_id is not None:
                ids = [self.bos_id, *ids]
        elif isinstance(prompt, list) and all(_is_token(i) for i in prompt):
            ids = [int(i) for i in prompt]
        else:
            got = type(prompt).__name__
            if isinstance(prompt, list):
                bad = next(i for i in prompt if not _is_token(i))
                got = f"a list holding {type(bad).__name__} {bad!r}"
            raise PromptTypeError(f"prompt must be a string or a list of integer token ids, got {got}")
        if not ids:
            # GPT-2 has no BOS in its prompts; its <|endoftext|> is the documented start token.
            start = self.bos_id if self.bos_id is not None else (self.eos_ids[0] if self.eos_ids else None)
            if start is None:
                raise PromptError("the prompt is empty and the model has no start token")
            ids = [start]
        bad = [i for i in ids if not 0 <= i < self.net.vocab_size]
        if bad:
            raise PromptError(f"token ids outside the vocabulary of {self.net.vocab_size}: {bad[:5]}")
        return ids

    def _check_context(self, n: int) -> None:
        if n > self.net.max_positions:
            raise ContextLengthError(
                f"the prompt has {n} tokens; the model's context is {self.net.max_positions}"
            )

    # ---- forward -----------------------------------------------------------------------
    def _prefill(self, ids: list[int], pos0: int) -> int:
        """Run ids through the model; returns the row of the last token in net.final."""
        rows = 0
        step = self.net.prefill_chunk
        for c in range(0, len(ids), step):
            chunk = ids[c : c + step]
            self.net.forward_chunk(chunk, pos0 + c)
            rows = len(chunk)
        return rows - 1

    def logits(self, token_ids: object) -> np.ndarray:
        """float32 logits (len(token_ids), vocab), from a fresh cache."""
        if isinstance(token_ids, list) and not token_ids:
            return np.empty((0, self.net.vocab_size), dtype=np.float32)
        ids = self.encode(token_ids)
        self._check_context(len(ids))
        out = np.empty((len(ids), self.net.vocab_size), dtype=np.float32)
        self._acquire()
        try:
            self._epoch += 1
            self._session = []
            step = self.net.prefill_chunk
            for c in range(0, len(ids), step):
                chunk = ids[c : c + step]
                self.net.forward_chunk(chunk, c)
                out[c : c + len(chunk)] = self.net.logits_rows(len(chunk))
            self._session = list(ids)
            self._high = len(ids)
        finally:
            self._lock.release()
        return out

    def _reusable_prefix(self, ids: list[int]) -> int:
        """How many leading tokens of ids already sit in the KV cache and can be kept."""
        prev = self._session
        n = 0
        limit = min(len(prev), len(ids) - 1)  # at least one token must run to give logits
        while n < limit and prev[n] == ids[n]:
            n += 1
        # Ring caches of sliding layers hold a bounded number of positions past the window.
        written = max(len(prev), self._high)
        if n < written and written - n > self.net.resume_slack():
            return 0
        return n

    # ---- chat --------------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the conversation rendered by the checkpoint's chat template (the rendered
        text already holds BOS, so none is added)."""
        if self.chat_template is None:
            raise ChatTemplateError("this checkpoint has no chat template")
        text = self.chat_template.render(messages, add_generation_prompt=add_generation_prompt)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise ChatTemplateError("the chat template rendered an empty prompt")
        return ids

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        ignore_eos: bool = False,
        lookup: int = 0,
    ) -> Generation:
        """The assistant's reply to a conversation of {"role", "content"} messages."""
        params = self._params(
            max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, ignore_eos, lookup
        )
        return drain(self._run(self.render_chat(messages), params, stop, reuse=True))

    # ---- generation --------------------------------------------------------------------
    def _params(
        self,
        max_tokens: int | None,
        temperature: float | None,
        top_k: int | None,
        top_p: float | None,
        min_p: float | None,
        repetition_penalty: float | None,
        seed: int | None,
        ignore_eos: bool = False,
        lookup: int = 0,
    ) -> SamplingParams:
        d = self.defaults
        return SamplingParams(
            max_tokens=16 if max_tokens is None else max_tokens,
            temperature=d.get("temperature", 1.0) if temperature is None else temperature,
            top_k=int(d.get("top_k", 0)) if top_k is None else top_k,
            top_p=d.get("top_p", 1.0) if top_p is None else top_p,
            min_p=d.get("min_p", 0.0) if min_p is None else min_p,
            repetition_penalty=d.get("repetition_penalty", 1.0)
            if repetition_penalty is None
            else repetition_penalty,
            seed=seed,
            ignore_eos=ignore_eos,
            lookup=lookup,
        )

    def stream(
        self,
        prompt: object,  # text, or a list of token ids (ints, numpy integers too)
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        ignore_eos: bool = False,
        lookup: int = 0,
    ) -> Iterator[str]:
        """Yield text pieces as they become valid UTF-8; see generate for the options."""
        params = self._params(
            max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, ignore_eos, lookup
        )
        gen = self._run(prompt, params, stop, yield_lock=True)
        try:
            while True:
                piece = next(gen)
                if piece:
                    yield piece
        except StopIteration:
            return

    def generate(
        self,
        prompt: object,  # text, or a list of token ids (ints, numpy integers too)
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        ignore_eos: bool = False,
        lookup: int = 0,
    ) -> Generation:
        """Generate up to max_tokens tokens. temperature <= 0 is greedy; unset options come from
        the checkpoint's generation_config.json. Stops on every eos id (unless ignore_eos) and
        on `stop` strings. lookup=N > 0 (greedy only) drafts up to N tokens per step from the
        context (prompt-lookup speculative decoding): the output is the same, often sooner."""
        params = self._params(
            max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, ignore_eos, lookup
        )
        return drain(self._run(prompt, params, stop))

    def _choose(
        self, row: int, sampler: Sampler, history: list[int], params: SamplingParams, step: int, pos: int
    ) -> int:
        """The next token from row `row` of the final hidden states (profiled as lm_head and
        sampling); NaN/Inf logits raise NumericalError naming the step."""
        pr = self.net.prof
        if pr is not None:
            pr.lap_glue()
        try:
            if params.needs_logits:
                logits = self.net.logits_row(row)
                if pr is not None:
                    pr.lap_lm_head()
                token = sampler.sample(logits, history)
            else:
                token = self.net.argmax_row(row)  # lm_head and argmax fused: no sampling
                if pr is not None:
                    pr.lap_lm_head()
        except NumericalError as exc:
            raise NumericalError(f"{exc} at generation step {step} (position {pos})") from None
        if pr is not None:
            pr.lap_sampling()
            pr.end()
        return token

    def _verify(self, draft: list[int], step: int, pos: int) -> list[int]:
        """After a batched pass of [token, *draft]: the draft's longest prefix the model's own
        greedy choice confirms, then the model's next token after it (so always one more)."""
        pr = self.net.prof
        if pr is not None:
            pr.lap_glue()
        try:
            preds = self.net.argmax_rows(1 + len(draft))
        except NumericalError as exc:
            raise NumericalError(f"{exc} at generation step {step} (position {pos})") from None
        if pr is not None:
            pr.lap_lm_head()
            pr.lap_sampling()
            pr.end()
        n = 0
        while n < len(draft) and preds[n] == draft[n]:
            n += 1
        return [*draft[:n], preds[n]]

    def _run(
        self,
        prompt: object,  # text, or a list of token ids (ints, numpy integers too)
        params: SamplingParams,
        stop: list[str] | None,
        reuse: bool = False,
        yield_lock: bool = False,
    ) -> Generator[str, None, Generation]:
        """The generation loop, as a generator of text pieces that returns the Generation.

        reuse=True keeps the KV cache of the tokens this prompt shares with the previous call (a
        chat's earlier turns) and prefills only the rest; the result is the same either way.
        yield_lock=True (Model.stream, whose consumer runs between pieces) lets go of the model
        while a piece is out: another call may run meanwhile (a stream left suspended never
        blocks the model), and this one rebuilds its cache when it resumes after one did."""
        stops = [s for s in (stop or []) if s]
        ids = self.encode(prompt)
        self._check_context(len(ids))
        sampler = Sampler(params)
        timings = Timings()
        out: list[int] = []
        text_parts: list[str] = []
        finish = "length"
        emitted = 0  # characters of the text already yielded
        t_eval = 0.0
        t_step = 0.0
        decoder = StreamDecoder(self.tokenizer)
        self._acquire()
        try:
            t0 = time.perf_counter()
            self._epoch += 1
            epoch = self._epoch  # whose tokens the cache holds
            start = self._reusable_prefix(ids) if reuse else 0
            timings.cached_tokens = start
            self._session = []  # until this call has written the cache it is in no known state
            pr = self.net.prof
            if pr is not None:
                pr.begin(PREFILL, len(ids) - start, start)
            row = self._prefill(ids[start:], start)
            self._high = len(ids)
            fed = list(ids)
            history = list(ids)
            pos = len(ids)
            lookup = PromptLookup(ids) if params.lookup else None
            queued: list[int] = []  # a verify pass's tokens; all but the last are in the cache
            while True:
                if queued:
                    token = queued.pop(0)
                else:
                    token = self._choose(row, sampler, history, params, len(out) + 1, pos - 1)
                    now = time.perf_counter()
                    if out:
                        timings.step_ms.append((now - t_step) * 1000.0)
                    else:
                        timings.prompt_ms = (now - t0) * 1000.0
                        timings.prompt_tokens = len(ids)
                        timings.first_token_ms = timings.prompt_ms
                        t_eval = now
                if token in self.eos_ids and not params.ignore_eos:
                    finish = "stop"
                    break
                out.append(token)
                history.append(token)
                if lookup is not None:
                    lookup.push(token)
                emit = ""
                piece = decoder.push(token)
                if piece:
                    text_parts.append(piece)
                    if stops:
                        full = "".join(text_parts)
                        cut = _stop_index(full, stops)
                        if cut >= 0:
                            finish = "stop"
                            emit = full[emitted:cut] if cut > emitted else ""
                            emitted = max(emitted, cut)
                        else:
                            # Hold back a suffix that may still grow into a stop string.
                            safe = len(full) - _stop_prefix_len(full, stops)
                            if safe > emitted:
                                emit = full[emitted:safe]
                                emitted = safe
                    else:
                        emitted += len(piece)
                        emit = piece
                if emit:
                    if yield_lock:
                        self._lock.release()
                        try:
                            yield emit
                        finally:
                            self._acquire()
                        if self._epoch != epoch:  # another call used the model meanwhile
                            epoch = self._restore(fed)
                            queued = []  # accepted drafts lost their cache: run them again
                    else:
                        yield emit
                if finish == "stop":
                    break
                if len(out) >= params.max_tokens or pos >= self.net.max_positions:
                    break
                fed.append(token)
                if queued:  # an accepted draft token: its keys and values are in the cache
                    pos += 1
                    continue
                # Draft tokens (prompt lookup) ride along with this token in one batched pass;
                # never past the context, the tokens still wanted, or one prefill chunk.
                draft: list[int] = []
                if lookup is not None:
                    room = min(
                        params.lookup,
                        params.max_tokens - len(out) - 1,
                        self.net.max_positions - pos - 1,
                        self.net.prefill_chunk - 1,
                    )
                    draft = lookup.draft(room)
                t_step = time.perf_counter()
                if pr is not None:
                    pr.begin(DECODE, 1 + len(draft), pos)
                self.net.forward_chunk([token, *draft], pos)
                self._high = max(self._high, pos + 1 + len(draft))
                row = 0
                pos += 1
                if draft:
                    queued = self._verify(draft, len(out) + 1, pos)
                    timings.draft_tokens += len(draft)
                    timings.accepted_tokens += len(queued) - 1
                    timings.step_ms.append((time.perf_counter() - t_step) * 1000.0)
            self._session = fed
            timings.eval_tokens = max(0, len(out) - 1)
            timings.eval_ms = (time.perf_counter() - t_eval) * 1000.0 if out or finish == "stop" else 0.0
        finally:
            self._lock.release()
        if finish != "stop" or not stops:
            text_parts.append(decoder.flush())
        full = "".join(text_parts)
        end = _stop_index(full, stops) if stops else -1
        end = len(full) if end < 0 else end
        if end > emitted:
            yield full[emitted:end]
        return Generation(full[:end], out, ids, finish, timings)

    def _acquire(self) -> None:
        """Take the model's lock. In a forked child, whose parent may have forked while one of
        its threads held it (that thread does not exist here), start with a fresh lock and an
        unknown cache."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._lock = threading.Lock()
            self._session = []
            self._epoch += 1
        self._lock.acquire()

    def _restore(self, fed: list[int]) -> int:
        """Rebuild the cache of positions 0 .. len(fed) - 1 after another call used the model
        (keeping what it shares with that call's tokens); returns the new epoch."""
        self._epoch += 1
        start = self._reusable_prefix(fed)
        self._session = []
        pr = self.net.prof
        if pr is not None:
            pr.begin(PREFILL, len(fed) - start, start)
        self._prefill(fed[start:], start)
        if pr is not None:
            pr.end()
        self._high = max(self._high, len(fed))
        return self._epoch


def drain(gen: Generator[str, None, Generation], sink: Callable[[str], None] | None = None) -> Generation:
    """Run a generation to its end, handing each text piece to sink; returns the Generation."""
    try:
        while True:
            try:
                piece = next(gen)
            except StopIteration as done:
                result: Generation = done.value
                return result
            if sink is not None:
                sink(piece)
    except BaseException:
        gen.close()  # an interrupted generation lets go of the model now, not when collected
        raise


def _is_token(i: object) -> bool:
    """An integer token id (numpy integers too), never a bool."""
    return isinstance(i, int | np.integer) and not isinstance(i, bool | np.bool_)


def _stop_index(text: str, stops: list[str]) -> int:
    """Index of the earliest stop string in text, or -1."""
    cut = -1
    for s in stops:
        i = text.find(s)
        if i >= 0 and (cut < 0 or i < cut):
            cut = i
    return cut


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def load(
    source: str,
    *,
    quant: str | QuantPlan = "q8_0",
    threads: int | None = None,
    revision: str | None = None,
) -> Model:
    """Load a checkpoint from a local directory or a hub repo id.

    quant="q8_0" quantizes every matrix whose width is a multiple of 32 (GGML Q8_0, 8.5 bits a
    weight); quant="q4_0" uses GGML Q4_0 (4.5 bits) except for the token embedding / tied
    lm_head and the attention output projections, which stay Q8_0 (measured: see the README's
    quant table); quant="q4_0-pure" makes
    every matrix Q4_0; quant="f32" keeps full precision (the conformance path). A QuantPlan
    chooses per weight role."""
    if not isinstance(quant, QuantPlan):
        if quant not in QUANTS:
            raise OptionError(f"quant must be one of {QUANTS}, got {quant!r}")
        quant = QuantPlan(quant)
    plan = quant
    t0 = time.perf_counter()
    runtime = RuntimeConfig(threads)
    directory = resolve(source, revision)
    cfg = read_json(os.path.join(directory, "config.json"), required=True)
    f = Fields(cfg, "config.json")
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str):
        raise ModelFormatError("config.json has no model_type")
    build = builder_for(model_type, "config.json")
    gen_cfg = Fields(
        read_json(os.path.join(directory, "generation_config.json"), required=False), "generation_config.json"
    )
    tok_cfg = Fields(
        read_json(os.path.join(directory, "tokenizer_config.json"), required=False), "tokenizer_config.json"
    )
    tokenizer = Tokenizer(directory)
    ckpt = Checkpoint(directory)
    try:
        net = build(f, ckpt, plan)
    finally:
        ckpt.close()
    if tokenizer.vocab_size > net.vocab_size:
        raise ModelFormatError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is {net.vocab_size}"
        )
    t_warm = time.perf_counter()
    runtime.warmup_thread_pool()
    warmup_ms = (time.perf_counter() - t_warm) * 1000.0
    load_ms = (time.perf_counter() - t0) * 1000.0
    # As the seed counted: every projection of the architecture (q, k, v, o, ...) and the lm_head
    # is a "layer"; the fusions turn them into fewer matrices, each one weight pass.
    fusions = ", ".join(f"{n} {k.upper() if k == 'qkv' else k} fusions" for k, n in net.fusions.items())
    log.debug(
        "loaded %s (%s): %d %s layers in %d matrices, %s; %d threads, kernels %s; %.0f ms",
        model_type, plan.name, net.n_projections, plan.name.upper(), net.n_matrices, fusions, runtime.threads,
        _isa(), load_ms,
    )  # fmt: skip
    model = Model(net, tokenizer, directory, plan.name, gen_cfg, tok_cfg, runtime, load_ms)
    model.warmup_ms = warmup_ms
    return model


def _isa() -> str:
    from .engine.kernels import isa_active

    return isa_active()


__all__ = ["Generation", "Model", "PyrustmlError", "Timings", "load"]
