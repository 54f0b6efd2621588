"""The checkpoint's tokenizer (tokenizer.json through `tokenizers`) and streaming detokenization
that never emits a broken UTF-8 character."""

from __future__ import annotations

import os

from tokenizers import Tokenizer as HFTokenizer

from ..errors import ModelFormatError

REPLACEMENT = "\ufffd"


class Tokenizer:
    tok: HFTokenizer
    vocab_size: int

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, "tokenizer.json")
        if not os.path.isfile(path):
            raise ModelFormatError(f"tokenizer.json is missing from {directory}")
        try:
            self.tok = HFTokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelFormatError(f"cannot read tokenizer.json: {exc}") from None
        self.vocab_size = int(self.tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return [int(i) for i in self.tok.encode(text, add_special_tokens=add_special_tokens).ids]

    def decode(self, ids: list[int]) -> str:
        return str(self.tok.decode(ids, skip_special_tokens=False))

    def token_id(self, text: str) -> int | None:
        i = self.tok.token_to_id(text)
        return None if i is None else int(i)


class StreamDecoder:
    """Turns generated ids into text pieces, holding back bytes of an unfinished character.

    Decoding ids[prefix:] and comparing it with ids[prefix:read] keeps the context a
    byte-level BPE needs (leading spaces, merges across tokens) without re-decoding it all."""

    tok: Tokenizer
    ids: list[int]
    prefix: int
    read: int

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.ids = []
        self.prefix = 0
        self.read = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self.tok.decode(self.ids[self.prefix : self.read])
        after = self.tok.decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            piece = after[len(before) :]
            self.prefix = self.read
            self.read = len(self.ids)
            return piece
        return ""

    def flush(self) -> str:
        """What is still held back at the end (possibly with a replacement character)."""
        before = self.tok.decode(self.ids[self.prefix : self.read])
        after = self.tok.decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :]
