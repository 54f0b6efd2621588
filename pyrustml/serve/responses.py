"""OpenAI-shaped response bodies: completions, chat completions, their stream chunks, logprobs,
usage and the error object. Plain dicts, serialized once by the caller."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from ..model import Generation

Json = dict[str, Any]


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def sse(data: Json | str) -> bytes:
    """One server-sent event carrying a JSON document (or the literal [DONE])."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def usage(gen: Generation) -> Json:
    u = gen.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def _utf8(text: str) -> list[int]:
    return list(text.encode("utf-8", errors="replace"))


def chat_logprobs(entries: list[Any]) -> Json:
    """choices[].logprobs of a chat completion: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    content = []
    for e in entries:
        content.append(
            {
                "token": e.text,
                "logprob": e.logprob,
                "bytes": _utf8(e.text),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": _utf8(t)} for _, t, lp in e.top],
            }
        )
    return {"content": content}


def completion_logprobs(entries: list[Any], offset: int) -> Json:
    """choices[].logprobs of a legacy completion: parallel lists, text offsets from `offset`."""
    tokens: list[str] = []
    lps: list[float] = []
    tops: list[dict[str, float]] = []
    offsets: list[int] = []
    for e in entries:
        tokens.append(e.text)
        lps.append(e.logprob)
        tops.append({t: lp for _, t, lp in e.top})
        offsets.append(offset)
        offset += len(e.text)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


class Shape:
    """Builds the bodies of one request: the id and creation time are shared by every chunk."""

    def __init__(self, chat: bool, rid: str, created: int, model: str, logprobs: bool) -> None:
        self.chat = chat
        self.rid = rid
        self.created = created
        self.model = model
        self.logprobs = logprobs
        self.text_offset = 0  # characters of the tokens given logprobs so far (completions)

    def _head(self, obj: str) -> Json:
        return {"id": self.rid, "object": obj, "created": self.created, "model": self.model}

    def _lp(self, entries: list[Any]) -> Json | None:
        if not self.logprobs:
            return None
        if self.chat:
            return chat_logprobs(entries)
        out = completion_logprobs(entries, self.text_offset)
        self.text_offset += sum(len(e.text) for e in entries)
        return out

    def full(self, gen: Generation) -> Json:
        lp = self._lp(gen.logprobs or [])
        if self.chat:
            choice: Json = {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "logprobs": lp,
                "finish_reason": gen.finish_reason,
            }
            body = self._head("chat.completion")
        else:
            choice = {"index": 0, "text": gen.text, "logprobs": lp, "finish_reason": gen.finish_reason}
            body = self._head("text_completion")
        body["choices"] = [choice]
        body["usage"] = usage(gen)
        return body

    def chunk(self, piece: str | None, entries: list[Any], finish: str | None, role: bool = False) -> Json:
        """A stream chunk: a text piece (None: no content, e.g. the role or the finish chunk)."""
        lp = self._lp(entries) if entries or (self.logprobs and piece) else None
        if self.chat:
            delta: Json = {}
            if role:
                delta["role"] = "assistant"
                delta["content"] = ""
            if piece is not None:
                delta["content"] = piece
            choice: Json = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}
            body = self._head("chat.completion.chunk")
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": lp, "finish_reason": finish}
            body = self._head("text_completion")
        body["choices"] = [choice]
        return body

    def usage_chunk(self, gen: Generation) -> Json:
        body = self._head("chat.completion.chunk" if self.chat else "text_completion")
        body["choices"] = []
        body["usage"] = usage(gen)
        return body
