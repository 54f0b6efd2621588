"""pyrustml.load and the Model it returns: the public facade over the engine.

A Model owns the weights and nothing per request. Every call (generate, stream, chat, ...)
becomes a Sequence handed to the Scheduler, whose engine thread advances all running sequences
together, one batched step at a time; so calls from many threads at once share each weight pass
instead of waiting in line, and each gets exactly the tokens it would get alone.

Left interpreted (not mypyc-compiled): a facade that runs once per call and types its options
once, as keyword arguments (PEP 692), which compiled code cannot take.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import time
import weakref
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from typing import Any, TypedDict, Unpack

import numpy as np

from .engine.pool import RuntimeConfig
from .engine.profiler import Profiler
from .errors import (
    ContextLengthError,
    ModelFormatError,
    OptionError,
    OptionTypeError,
    PromptError,
    PromptTypeError,
    PyrustmlError,
)
from .generate.options import check_generation_options, check_load_arguments
from .generate.result import Generation, Timings, TokenLogprob, Usage
from .generate.sampling import SamplingParams
from .generate.scheduler import EngineStats, Scheduler
from .generate.sequence import Event, EventSink, Sequence
from .io.chat_template import ChatTemplate, ChatTemplateError, load_template
from .io.config import Fields, generation_defaults, read_json
from .io.hub import resolve
from .io.progress import Progress, open_checkpoint
from .io.safetensors import tensor_budget
from .io.tokenizer import Tokenizer
from .io.weights import QUANTS, QuantPlan
from .models.base import LoadOptions, Transformer
from .models.registry import builder_for

log = logging.getLogger("pyrustml")

DEFAULT_PARALLEL = 4  # sequences decoded together when load() is not told
MAX_PARALLEL = 128  # a step's decode rows share the plan's 256-row buffers with prompt rows


class GenerateOptions(TypedDict, total=False):
    """The options of every generation call; unset ones come from generation_config.json."""

    max_tokens: int | None  # default 16
    temperature: float | None  # <= 0 is greedy
    top_k: int | None  # 0 disables it
    top_p: float | None
    min_p: float | None
    repetition_penalty: float | None
    seed: int | None
    stop: str | list[str] | None
    ignore_eos: bool
    lookup: int  # prompt-lookup drafts per step (greedy only)
    logprobs: bool
    top_logprobs: int


class Submission:
    """A generation the engine is running: its tokens and log-probabilities so far, and close()
    to cancel it (its sequence leaves at the next step). Model.submit returns one, and dropping
    it cancels nothing: the sink goes on receiving. TextStream is one whose text a caller
    iterates; dropping a TextStream cancels its request."""

    _seq: Sequence
    _engine: Scheduler

    def __init__(self, seq: Sequence, engine: Scheduler) -> None:
        self._seq = seq
        self._engine = engine

    @property
    def tokens(self) -> list[int]:
        """Token ids generated so far."""
        return list(self._seq.out)

    @property
    def logprobs(self) -> list[TokenLogprob]:
        """Log-probabilities of the tokens generated so far (when asked for)."""
        return list(self._seq.logprobs)

    def close(self) -> None:
        if self._seq.result is None:  # finished ones have nothing to cancel
            self._engine.cancel(self._seq)


class TextStream(Submission):
    """Text pieces of a running generation as they become final. After the last piece,
    .generation holds the Generation; .close() (or leaving a for loop early and dropping the
    stream) cancels it, and its sequence leaves at the next step."""

    generation: Generation | None
    _events: queue.SimpleQueue[Event]

    def __init__(self, seq: Sequence, engine: Scheduler, events: queue.SimpleQueue[Event]) -> None:
        super().__init__(seq, engine)
        self._events = events
        self.generation = None

    def __iter__(self) -> Iterator[str]:
        return self

    def close(self) -> None:
        """Stop here: no more pieces, even ones the engine already made."""
        if self.generation is None:
            self._engine.cancel(self._seq)

    def __del__(self) -> None:
        # Nobody can read a dropped stream: its request ends (a Submission's sink still reads).
        try:
            self.close()
        except Exception:
            pass

    def __next__(self) -> str:
        if self.generation is not None or self._seq.cancelled:
            raise StopIteration
        try:
            while True:
                try:
                    # Waits of 10 ms: a signal (Ctrl-C) reaches this thread between them even
                    # while a long prefill step sends nothing.
                    kind, value = self._events.get(timeout=0.01)
                except queue.Empty:
                    if self._seq.cancelled:  # closed from another thread: no event may come
                        raise StopIteration from None
                    continue
                if kind == "text":
                    assert isinstance(value, str)
                    if value:
                        return value
                elif kind == "logprobs":
                    continue  # .logprobs reads them from the sequence
                elif kind == "done":
                    assert isinstance(value, Generation)
                    self.generation = value
                    raise StopIteration
                else:
                    assert isinstance(value, PyrustmlError)
                    raise value
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            self.close()
            raise


class Exclusive:
    """`with model.exclusive() as net:` runs the network directly (tools, audits): no engine step
    runs meanwhile, and afterwards no slot's cache is trusted."""

    _engine: Scheduler

    def __init__(self, engine: Scheduler) -> None:
        self._engine = engine

    def __enter__(self) -> Transformer:
        self._engine.step_lock.acquire()
        return self._engine.net

    def __exit__(self, *exc: object) -> None:
        self._engine.forget_slots()
        self._engine.step_lock.release()


class Model:
    net: Transformer
    tokenizer: Tokenizer
    directory: str
    quant: str
    eos_ids: list[int]
    bos_id: int | None
    add_bos: bool
    bos_setting: bool | None  # tokenizer_config.json's add_bos_token, when it says
    defaults: dict[str, float]
    load_ms: float
    warmup_ms: float  # the thread pool's warmup, part of load_ms
    runtime: RuntimeConfig
    chat_template: ChatTemplate | None
    engine: Scheduler

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
        self.bos_setting = tok_cfg.bool_("add_bos_token", False) if tok_cfg.has("add_bos_token") else None
        self.add_bos = bool(self.bos_setting) and self.bos_id is not None
        # Sampling defaults from generation_config.json (explicit arguments override them).
        self.defaults = generation_defaults(gen_cfg)
        self.engine = Scheduler(net, tokenizer)
        # The engine thread holds the Scheduler: when this Model is freed (or the interpreter
        # exits), the thread is stopped and joined, and the weights go with it.
        weakref.finalize(self, self.engine.close)

    # ---- facts -------------------------------------------------------------------------
    @property
    def ctx(self) -> int:
        """Positions each sequence may use (prompt plus generated tokens)."""
        return self.net.ctx

    @property
    def parallel(self) -> int:
        """Sequences decoded together (KV-cache slots)."""
        return self.net.slots

    def stats(self) -> EngineStats:
        """The engine's counters: requests, active and queued sequences, tokens, steps."""
        return self.engine.snapshot()

    def close(self) -> None:
        """Stop the engine thread (running calls end with an error). Also done at exit."""
        self.engine.close()

    def exclusive(self) -> Exclusive:
        return Exclusive(self.engine)

    # ---- profiling ---------------------------------------------------------------------
    def enable_profiling(self) -> Profiler:
        """Start recording per-step component timings (pyrustml.perf.report analyses them);
        returns the Profiler, whose .steps grow with every step until disabled."""
        with self.engine.step_lock:
            if self.net.prof is None:
                self.net.prof = Profiler(self.net.n_layers)
            return self.net.prof

    def disable_profiling(self) -> None:
        with self.engine.step_lock:
            self.net.prof = None

    # ---- inputs ------------------------------------------------------------------------
    def encode(self, prompt: object) -> list[int]:
        if isinstance(prompt, str):
            # The tokenizer's post-processor adds what the model expects (Llama 3, Gemma: BOS;
            # Qwen, GPT-2: nothing), as transformers' tokenizer(text) does; add_bos_token in
            # tokenizer_config.json adds BOS where the post-processor does not. Never two.
            # An explicit add_bos_token: false turns the post-processor's BOS off, as transformers'
            # fast tokenizers rebuild their post-processor from it.
            ids = self.tokenizer.encode(prompt, add_special_tokens=self.bos_setting is not False)
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
        if n > self.net.ctx:
            raise ContextLengthError(f"the prompt has {n} tokens; the context is {self.net.ctx}")

    def render_chat(self, messages: object, *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the conversation rendered by the checkpoint's chat template (the rendered
        text already holds BOS, so none is added)."""
        if self.chat_template is None:
            raise ChatTemplateError("this checkpoint has no chat template")
        text = self.chat_template.render(messages, add_generation_prompt=add_generation_prompt)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise ChatTemplateError("the chat template rendered an empty prompt")
        return ids

    # ---- the engine --------------------------------------------------------------------
    def _sequence(self, ids: list[int], options: GenerateOptions, events: EventSink) -> Sequence:
        unknown = sorted(set(options) - set(GenerateOptions.__annotations__))
        if unknown:
            raise OptionTypeError(
                f"unknown option {unknown[0]!r} (options: {', '.join(GenerateOptions.__annotations__)})"
            )
        o = check_generation_options(**options)
        self._check_context(len(ids))
        d = self.defaults
        params = SamplingParams(
            max_tokens=16 if o.max_tokens is None else o.max_tokens,
            temperature=d.get("temperature", 1.0) if o.temperature is None else o.temperature,
            top_k=int(d.get("top_k", 0)) if o.top_k is None else o.top_k,
            top_p=d.get("top_p", 1.0) if o.top_p is None else o.top_p,
            min_p=d.get("min_p", 0.0) if o.min_p is None else o.min_p,
            repetition_penalty=d.get("repetition_penalty", 1.0)
            if o.repetition_penalty is None
            else o.repetition_penalty,
            seed=o.seed,
            ignore_eos=o.ignore_eos,
            lookup=o.lookup,
        )
        return Sequence(
            ids,
            params,
            o.stop,
            self.tokenizer,
            frozenset(self.eos_ids),
            self.net.ctx,
            want_logprobs=o.logprobs,
            top_logprobs=o.top_logprobs,
            events=events,
        )

    def _start(self, ids: list[int], options: GenerateOptions) -> TextStream:
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        seq = self._sequence(ids, options, events)
        self.engine.submit(seq)
        return TextStream(seq, self.engine, events)

    # ---- the public calls --------------------------------------------------------------
    def stream(self, prompt: object, **options: Unpack[GenerateOptions]) -> TextStream:
        """Yield text pieces as they become valid UTF-8; see generate for the options."""
        return self._start(self.encode(prompt), options)

    def submit(self, prompt: object, sink: EventSink, **options: Unpack[GenerateOptions]) -> Submission:
        """Start a generation whose events go to `sink.put(event)` as they happen, on the engine
        thread: ("text", piece) for each piece of final UTF-8 text, each preceded, when logprobs
        were asked for, by ("logprobs", [TokenLogprob, ...]) of its tokens; then ("done",
        Generation) or ("error", PyrustmlError). For a server that follows many requests from
        one event loop, where stream() would need a thread waiting on each. put runs inside the
        engine's step: it must be quick and must not block (a put that raises cancels its
        request). close() on the returned Submission ends it at the next step: the step in
        progress may still hand out its text, never the end. Options as for generate."""
        if not callable(getattr(sink, "put", None)):
            raise OptionTypeError(f"sink must have a put(event) method, got {type(sink).__name__}")
        seq = self._sequence(self.encode(prompt), options, sink)
        self.engine.submit(seq)
        return Submission(seq, self.engine)

    def generate(self, prompt: object, **options: Unpack[GenerateOptions]) -> Generation:
        """Generate up to max_tokens tokens from a prompt (text, or a list of token ids).

        temperature <= 0 is greedy; unset options come from the checkpoint's
        generation_config.json. Stops on every eos id (unless ignore_eos) and on `stop` strings.
        lookup=N > 0 (greedy only) drafts up to N tokens per step from the context
        (prompt-lookup speculative decoding): the output is the same, often sooner.
        logprobs=True (top_logprobs=k) records each token's log-probability (and k
        alternatives)."""
        return _finish(self.stream(prompt, **options))

    def stream_chat(self, messages: list[dict[str, Any]], **options: Unpack[GenerateOptions]) -> TextStream:
        """The assistant's reply to a conversation of {"role", "content"} messages, as text
        pieces; the KV cache of earlier turns is kept (the prefix cache)."""
        return self._start(self.render_chat(messages), options)

    def chat(self, messages: list[dict[str, Any]], **options: Unpack[GenerateOptions]) -> Generation:
        """The assistant's reply to a conversation of {"role", "content"} messages."""
        return _finish(self.stream_chat(messages, **options))

    def generate_batch(self, prompts: Seq[object], **options: Unpack[GenerateOptions]) -> list[Generation]:
        """Generate for every prompt at once (decoded together); results in prompt order."""
        if not isinstance(prompts, list | tuple):  # a str is a Sequence too, and one prompt
            raise PromptTypeError(f"prompts must be a list or tuple of prompts, got {type(prompts).__name__}")
        streams = [self.stream(p, **options) for p in prompts]
        try:
            return [_finish(s) for s in streams]
        finally:
            for s in streams:
                s.close()

    def logits(self, token_ids: object) -> np.ndarray:
        """float32 logits (len(token_ids), vocab) of every position of the prompt."""
        if isinstance(token_ids, list) and not token_ids:
            return np.empty((0, self.net.vocab_size), dtype=np.float32)
        ids = self.encode(token_ids)
        self._check_context(len(ids))
        out = np.empty((len(ids), self.net.vocab_size), dtype=np.float32)
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        seq = Sequence(
            ids,
            SamplingParams(),
            [],
            self.tokenizer,
            frozenset(),
            self.net.ctx,
            logits_out=out,
            events=events,
        )
        self.engine.submit(seq)
        _finish(TextStream(seq, self.engine, events))
        return out


def _finish(stream: TextStream) -> Generation:
    """Run a stream to its end; returns its Generation."""
    for _ in stream:
        pass
    assert stream.generation is not None
    return stream.generation


@atexit.register
def _park_pool() -> None:
    """At exit, after the Models' finalizers (registered later, so run earlier) have stopped their
    engine threads: park and join the pool's workers, so none still spins inside libq8 while the
    interpreter tears down."""
    from .engine._ffi import lib

    lib.q8_pool_shutdown()


def _is_token(i: object) -> bool:
    """An integer token id (numpy integers too), never a bool."""
    return isinstance(i, int | np.integer) and not isinstance(i, bool | np.bool_)


def load(
    source: object,  # str or os.PathLike: a checkpoint directory or a hub repo id
    *,
    quant: object = "q8_0",  # "q8_0", "q4_0", "q4_0-pure", "f32", or a QuantPlan
    threads: object = None,
    revision: object = None,
    ctx: object = None,
    parallel: object = None,
    progress: Progress | None = None,
) -> Model:
    """Load a checkpoint from a local directory or a hub repo id.

    quant="q8_0" quantizes every matrix whose width is a multiple of 32 (GGML Q8_0, 8.5 bits a
    weight); quant="q4_0" uses GGML Q4_0 (4.5 bits) except for the token embedding / tied
    lm_head and the attention output projections, which stay Q8_0 (measured: see the README's
    quant table); quant="q4_0-pure" makes every matrix Q4_0; quant="f32" keeps full precision
    (the conformance path); a QuantPlan chooses per weight role. ctx is the context of each
    sequence (default min(the model's max positions, 4096)); parallel the number of sequences
    decoded together (default 4), each with its own KV cache. progress(done_bytes, total_bytes)
    is called as tensor bytes are read."""
    given = quant if isinstance(quant, QuantPlan) else None
    args = check_load_arguments(
        source, quant if given is None else given.name, threads, revision, ctx, parallel
    )
    if given is None and args.quant not in QUANTS:
        raise OptionError(f"quant must be one of {QUANTS}, got {args.quant!r}")
    plan = given if given is not None else QuantPlan(args.quant)
    slots = DEFAULT_PARALLEL if args.parallel is None else args.parallel
    if slots > MAX_PARALLEL:
        raise OptionError(f"parallel must be an integer in [1, {MAX_PARALLEL}], got {parallel!r}")
    t0 = time.perf_counter()
    runtime = RuntimeConfig(args.threads)
    directory = resolve(args.source, args.revision)
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
    # The header's tensor count is bounded by what this many layers can use, before parsing.
    budget = tensor_budget(cfg.get("n_layer", cfg.get("num_hidden_layers")))
    ckpt = open_checkpoint(directory, progress, budget)
    try:
        net = build(f, ckpt, LoadOptions(plan, args.ctx, slots))
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


__all__ = ["Generation", "Model", "PyrustmlError", "TextStream", "Timings", "Usage", "load"]
