"""Request bodies of the OpenAI routes, validated by pydantic v2.

Bodies are parsed with `model_validate_json(..., strict=True)`: malformed JSON, a missing field
and a wrong-typed one ("max_tokens": "5", "stream": 1) are all one ValidationError whose `loc`
names the field, which becomes the OpenAI error's `param`. Fields OpenAI clients send that
change nothing here (user, metadata, ...) are ignored; options that would change the output but
are not implemented (n > 1, presence/frequency penalties) are refused rather than ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "StreamOptions",
    "ValidationError",
    "error_param",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(_Body):
    """Options both routes share: OpenAI's, then llama-server's extensions."""

    model: str
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0)] | None = None
    ignore_eos: bool = False

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v: float) -> float:
        if v != 0.0:
            raise ValueError("is not supported (use repeat_penalty)")
        return v

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    def limit(self) -> int | None:
        """max_completion_tokens (the current name) wins over max_tokens (the deprecated one)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    # One prompt: text, a list of token ids, or a one-element list of either.
    prompt: str | list[int] | Annotated[list[str], Field(min_length=1, max_length=1)]
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: Literal[False] = False

    def limit(self) -> int | None:
        return self.max_tokens

    def prompt_value(self) -> str | list[int]:
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], str):
            return str(p[0])
        return p  # type: ignore[return-value]


def error_param(exc: ValidationError) -> tuple[str, str | None]:
    """(message, param) of the first error: param is the field path, e.g. messages[0].content."""
    err = exc.errors(include_url=False)[0]
    if err["type"] == "json_invalid":
        return f"the body is not valid JSON: {err['msg']}", None
    path = ""
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = str(part)
        elif not part.startswith(("str", "list[", "int", "function-")):  # union branch names
            path += f".{part}"
    if err["type"] == "missing":
        return f"missing required field: {path}", path or None
    return f"{path}: {err['msg']}" if path else str(err["msg"]), path or None
