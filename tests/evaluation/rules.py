"""The known rule the loop tests vote by: the response with more lowercase ASCII letters wins.

The tiny model starts from random weights and writes random bytes, about one in ten of them a
lowercase letter, so two of its responses almost always differ in that count, and DPO can
learn to write more of them. Usable as a programmatic judge callable (judging) and by the
simulated annotators of the human-only path.
"""

from __future__ import annotations


def lowercase_letters(text: str) -> int:
    return sum("a" <= ch <= "z" for ch in text)


def prefer_more_lowercase(prompt: str, response_a: str, response_b: str) -> str:
    """ "A", "B" or "tie" by the count of lowercase ASCII letters."""
    a, b = lowercase_letters(response_a), lowercase_letters(response_b)
    return "A" if a > b else "B" if b > a else "tie"
