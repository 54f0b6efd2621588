"""The checkpoint's tokenizer (tokenizer.json through `tokenizers`) and streaming detokenization
that never emits a broken UTF-8 character.

The tokenizers library is a boundary like a file: every call into it (load, encode, decode,
stream) is wrapped, and what it throws becomes a TokenizerError, including pyo3's PanicException
(a BaseException: a Rust panic, e.g. a catastrophic Split regex), which is recognised by its
name so that KeyboardInterrupt and SystemExit still pass through.

Pipelines that expand text exponentially (a Sequence of Replace "a" -> "aa" normalizers doubles
the text at each step: 30 steps turn 10 characters into 10 GB and the library aborts on the
allocation) are refused at load: the worst-case growth of the normalizer and of the decoder is
bounded from their definitions, and above MAX_EXPANSION the tokenizer is not used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

from tokenizers import Tokenizer as HFTokenizer
from tokenizers.decoders import DecodeStream

from ..errors import PromptError, TokenizerError

REPLACEMENT = "\ufffd"
# Worst-case growth of a text through the normalizer (or of the decoder's output per token text):
# real pipelines stay below 4 (NFKD, a prepended "▁", byte-level mapping).
MAX_EXPANSION: Final = 64.0
_MAX_DEPTH: Final = 32
# Normalizer and decoder steps by their worst-case factor; Replace and Prepend are computed.
_FACTORS: Final[dict[str, float]] = {
    "NFC": 3.0, "NFD": 4.0, "NFKC": 18.0, "NFKD": 18.0, "Lowercase": 3.0, "Strip": 1.0,
    "StripAccents": 1.0, "BertNormalizer": 3.0, "Nmt": 1.0, "ByteLevel": 4.0, "Precompiled": 4.0,
    "Metaspace": 2.0, "Fuse": 1.0, "ByteFallback": 1.0, "WordPiece": 1.0, "BPEDecoder": 2.0,
    "CTC": 1.0,
}  # fmt: skip

T = TypeVar("T")


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def _caused(err: TokenizerError, cause: BaseException) -> TokenizerError:
    # Set by hand: compiled by mypyc, `raise err from cause` keeps only __context__.
    err.__cause__ = cause
    return err


def guarded(what: str, fn: Callable[[], T]) -> T:
    """fn() with whatever the tokenizers library throws turned into a TokenizerError whose
    __cause__ is the original."""
    try:
        return fn()
    except TokenizerError:
        raise
    except Exception as exc:  # tokenizers raises plain Exception (and ValueError, TypeError, ...)
        raise _caused(TokenizerError(f"the tokenizer failed to {what}: {str(exc)[:300]}"), exc) from exc
    except BaseException as exc:
        if _is_panic(exc):
            msg = f"the tokenizer crashed (a panic in tokenizers) trying to {what}"
            raise _caused(TokenizerError(msg), exc) from exc
        raise


def _expansion(node: object, depth: int = 0) -> float:
    """Worst-case length factor of one normalizer/decoder definition (its JSON form)."""
    if node is None:
        return 1.0
    if depth > _MAX_DEPTH or not isinstance(node, dict):
        return float("inf")
    kind = node.get("type")
    if kind == "Sequence":
        factor = 1.0
        for child in node.get("normalizers", node.get("decoders", [])) or []:
            factor *= _expansion(child, depth + 1)
        return factor
    if kind == "Replace":
        content = node.get("content", "")
        pattern = node.get("pattern", {})
        grow = len(content) if isinstance(content, str) else 0
        if isinstance(pattern, dict) and isinstance(pattern.get("String"), str) and pattern["String"]:
            return max(1.0, grow / len(pattern["String"]))
        return float(grow + 1)  # a regex may match a single character, or the empty string
    if kind == "Prepend":
        prepend = node.get("prepend", "")
        return 1.0 + (len(prepend) if isinstance(prepend, str) else 0)
    if kind == "Strip" and "content" in node:  # the decoder Strip removes characters
        return 1.0
    if isinstance(kind, str) and kind in _FACTORS:
        return _FACTORS[kind]
    return float("inf")  # an unknown step: cannot be bounded


def _state(component: Any) -> object:
    if component is None:
        return None
    try:
        return json.loads(component.__getstate__())
    except (ValueError, TypeError, AttributeError):
        return {"type": "unreadable"}


def check_expansion(tok: HFTokenizer) -> None:
    for part, component in (("normalizer", tok.normalizer), ("decoder", tok.decoder)):
        factor = _expansion(_state(component))
        if factor > MAX_EXPANSION:
            shown = "an unbounded factor" if factor == float("inf") else f"a factor of {factor:.3g}"
            raise TokenizerError(
                f"tokenizer.json: the {part} can grow a text by {shown} (more than {MAX_EXPANSION:g}); "
                "such a pipeline can exhaust memory on a short input and is refused"
            )


class Tokenizer:
    tok: HFTokenizer
    vocab_size: int

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, "tokenizer.json")
        if not os.path.isfile(path):
            raise TokenizerError(f"tokenizer.json is missing from {directory}")
        self.tok = guarded("read tokenizer.json", lambda: HFTokenizer.from_file(path))
        check_expansion(self.tok)
        self.vocab_size = guarded(
            "count its vocabulary", lambda: int(self.tok.get_vocab_size(with_added_tokens=True))
        )

    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        if not isinstance(text, str):
            raise PromptError(f"the text to encode must be a string, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PromptError(
                f"the prompt is not valid Unicode: a lone surrogate {text[exc.start]!r} at index {exc.start}"
            ) from None
        enc = guarded("encode the text", lambda: self.tok.encode(text, add_special_tokens=add_special_tokens))
        return [int(i) for i in enc.ids]

    def decode(self, ids: list[int]) -> str:
        return str(guarded("decode token ids", lambda: self.tok.decode(ids, skip_special_tokens=False)))

    def token_id(self, text: str) -> int | None:
        i = guarded("look up a token", lambda: self.tok.token_to_id(text))
        return None if i is None else int(i)


class StreamDecoder:
    """Turns generated ids into text pieces, holding back bytes of an unfinished character.

    tokenizers' DecodeStream does the incremental work (one decode of a short window per token);
    flush() gives what is still held back at the end, decoded with its context (a lone half of
    a character comes out as U+FFFD), so the pieces and the flush together are the decode of
    all ids, whatever the caller does with them."""

    tok: Tokenizer
    stream: DecodeStream
    ids: list[int]
    prefix: int  # where the context of the held-back ids starts (the last emitted piece's ids)
    read: int  # ids up to here are emitted

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.stream = DecodeStream(skip_special_tokens=False)
        self.ids = []
        self.prefix = 0
        self.read = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        piece = guarded("decode a token", lambda: self.stream.step(self.tok.tok, token))
        if piece is None:
            return ""
        self.prefix = self.read
        self.read = len(self.ids)
        return str(piece)

    def flush(self) -> str:
        """What is still held back at the end (possibly with a replacement character)."""
        if self.read == len(self.ids):
            return ""
        before = self.tok.decode(self.ids[self.prefix : self.read])
        after = self.tok.decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        self.stream = DecodeStream(skip_special_tokens=False)
        return after[len(before) :] if after.startswith(before) else after
