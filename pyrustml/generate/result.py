"""What a generation returns: its text and tokens, why it ended, OpenAI-shaped usage counts,
optional log-probabilities, and its wall-clock timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The records below are dataclasses (eq=False: compared by identity, as before): each field is
# declared once, with its default, instead of once as a type and again in __init__.


@dataclass(eq=False)
class Timings:
    """Wall-clock figures of one generation, in milliseconds."""

    prompt_ms: float = 0.0
    prompt_tokens: int = 0
    eval_ms: float = 0.0
    eval_tokens: int = 0
    first_token_ms: float = 0.0
    queue_ms: float = 0.0  # from the call until the engine took the sequence into a step
    cached_tokens: int = 0  # prompt tokens whose KV cache was kept from an earlier sequence
    step_ms: list[float] = field(default_factory=list)  # time between consecutive tokens after the first
    draft_tokens: int = 0  # prompt-lookup tokens proposed and verified (lookup > 0)
    accepted_tokens: int = 0  # of them, those the model's greedy choice confirmed

    def as_dict(self) -> dict[str, float]:
        return {
            "prompt_ms": self.prompt_ms,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tok_per_s": _rate(self.prompt_tokens, self.prompt_ms),
            "eval_ms": self.eval_ms,
            "eval_tokens": self.eval_tokens,
            "eval_tok_per_s": _rate(self.eval_tokens, self.eval_ms),
            "time_to_first_token_ms": self.first_token_ms,
            "queue_ms": self.queue_ms,
            "cached_tokens": self.cached_tokens,
            "draft_tokens": self.draft_tokens,
            "accepted_tokens": self.accepted_tokens,
        }


def _rate(n: int, ms: float) -> float:
    return 1000.0 * n / ms if ms > 0 else 0.0


@dataclass(eq=False)
class Usage:
    """Token counts as OpenAI's usage object names them (as_dict: in this order)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int = field(init=False)
    cached_tokens: int  # prompt tokens served from the prefix cache

    def __post_init__(self) -> None:
        self.total_tokens = self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TokenLogprob:
    """One generated token's log-probability under the model (log-softmax of its logits, before
    temperature and penalties), with the top alternatives, best first."""

    token: int
    text: str
    logprob: float
    top: list[tuple[int, str, float]]  # (token id, text, logprob)

    def __init__(self, token: int, text: str, logprob: float, top: list[tuple[int, str, float]]) -> None:
        self.token = token
        self.text = text
        self.logprob = logprob
        self.top = top

    def __repr__(self) -> str:
        return f"TokenLogprob(token={self.token}, text={self.text!r}, logprob={self.logprob:.4f})"


@dataclass(eq=False)
class Generation:
    text: str
    tokens: list[int]  # generated token ids
    prompt_tokens: list[int]  # the prompt's token ids
    finish_reason: str  # "stop" (eos or a stop string) or "length" (max_tokens or the context)
    timings: Timings
    usage: Usage = field(init=False)  # counted from the tokens and timings
    logprobs: list[TokenLogprob] | None = None  # one per generated token, when asked for
    truncated: bool = False  # the context ended the generation before max_tokens

    def __post_init__(self) -> None:
        self.usage = Usage(len(self.prompt_tokens), len(self.tokens), self.timings.cached_tokens)

    def __repr__(self) -> str:
        return (
            f"Generation(finish_reason={self.finish_reason!r}, tokens={len(self.tokens)}, text={self.text!r})"
        )
