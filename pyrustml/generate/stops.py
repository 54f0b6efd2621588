"""Stop strings: where generated text must end, and how much of it may be shown before a stop
string could still complete."""

from __future__ import annotations


def stop_index(text: str, stops: list[str]) -> int:
    """Index of the earliest stop string in text, or -1."""
    cut = -1
    for s in stops:
        i = text.find(s)
        if i >= 0 and (cut < 0 or i < cut):
            cut = i
    return cut


def stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of a stop string: the text
    that must be held back because the next token may complete a stop."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
