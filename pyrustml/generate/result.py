"""What a generation returns: its text and tokens, why it ended, OpenAI-shaped usage counts,
optional log-probabilities, and its wall-clock timings."""

from __future__ import annotations


class Timings:
    """Wall-clock figures of one generation, in milliseconds."""

    prompt_ms: float
    prompt_tokens: int
    eval_ms: float
    eval_tokens: int
    first_token_ms: float
    queue_ms: float  # from the call until the engine took the sequence into a step
    cached_tokens: int  # prompt tokens whose KV cache was kept from an earlier sequence
    step_ms: list[float]  # time between consecutive tokens after the first
    draft_tokens: int  # prompt-lookup tokens proposed and verified (lookup > 0)
    accepted_tokens: int  # of them, those the model's greedy choice confirmed

    def __init__(self) -> None:
        self.cached_tokens = 0
        self.prompt_ms = 0.0
        self.prompt_tokens = 0
        self.eval_ms = 0.0
        self.eval_tokens = 0
        self.first_token_ms = 0.0
        self.queue_ms = 0.0
        self.step_ms = []
        self.draft_tokens = 0
        self.accepted_tokens = 0

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


class Usage:
    """Token counts as OpenAI's usage object names them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache

    def __init__(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = prompt_tokens + completion_tokens
        self.cached_tokens = cached_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
        }


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


class Generation:
    text: str
    tokens: list[int]  # generated token ids
    prompt_tokens: list[int]  # the prompt's token ids
    finish_reason: str  # "stop" (eos or a stop string) or "length" (max_tokens or the context)
    timings: Timings
    usage: Usage
    logprobs: list[TokenLogprob] | None  # one per generated token, when asked for
    truncated: bool  # the context ended the generation before max_tokens

    def __init__(
        self,
        text: str,
        tokens: list[int],
        prompt_tokens: list[int],
        finish_reason: str,
        timings: Timings,
        logprobs: list[TokenLogprob] | None = None,
        truncated: bool = False,
    ) -> None:
        self.text = text
        self.tokens = tokens
        self.prompt_tokens = prompt_tokens
        self.finish_reason = finish_reason
        self.timings = timings
        self.usage = Usage(len(prompt_tokens), len(tokens), timings.cached_tokens)
        self.logprobs = logprobs
        self.truncated = truncated

    def __repr__(self) -> str:
        return (
            f"Generation(finish_reason={self.finish_reason!r}, tokens={len(self.tokens)}, text={self.text!r})"
        )
