"""Prompt-lookup drafts for speculative greedy decoding (no draft model).

Text that quotes or edits its context (code edits, summaries, extraction) repeats spans of it.
The index maps every n-gram of the context (n = 1 .. max_ngram) to where its first occurrence
ended; a draft is what followed that occurrence of the context's current suffix, longest n
first. The first occurrence has the longest continuation: in a loop of period p the latest one
is followed by only p tokens. The model then verifies the draft in one batched pass (pyrustml.model).
"""

from __future__ import annotations

MAX_NGRAM = 3


class PromptLookup:
    tokens: list[int]
    max_ngram: int
    _ends: dict[tuple[int, ...], int]  # n-gram -> end of its first occurrence

    def __init__(self, tokens: list[int], max_ngram: int = MAX_NGRAM) -> None:
        self.tokens = []
        self.max_ngram = max_ngram
        self._ends = {}
        for t in tokens:
            self.push(t)

    def push(self, token: int) -> None:
        """Append a token; the n-grams that ended just before it become findable."""
        h = self.tokens
        end = len(h)  # the previous suffix ends here and is now followed by `token`
        for n in range(1, self.max_ngram + 1):
            if end - n < 0:
                break
            self._ends.setdefault(tuple(h[end - n : end]), end)
        h.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the first occurrence of the longest suffix (of at
        most max_ngram tokens) seen before; [] when there is none."""
        h = self.tokens
        if limit <= 0:
            return []
        for n in range(min(self.max_ngram, len(h)), 0, -1):
            end = self._ends.get(tuple(h[len(h) - n :]))
            if end is not None:
                return h[end : end + limit]
        return []
