"""Programmatic judges for the tests (PREFLAB_JUDGE_CALLABLE_MODULES includes tests.judging)."""

from __future__ import annotations


def shorter_is_better(prompt: str, response_a: str, response_b: str) -> str:
    """The fixture pairs' right answer ("It is 2i.") is the shorter response."""
    if len(response_a) == len(response_b):
        return "tie"
    return "A" if len(response_a) < len(response_b) else "B"


def first_is_better_on_odd_questions(prompt: str, response_a: str, response_b: str) -> str:
    """Position-biased (always the first shown) on odd questions: inconsistent there."""
    number = int(prompt.split(":")[0].split()[-1])
    if number % 2:
        return "A"
    return shorter_is_better(prompt, response_a, response_b)


def score_by_length(prompt: str, response_a: str, response_b: str) -> float:
    """A score in [-1, 1]: the relative length difference, shorter preferred."""
    return (len(response_b) - len(response_a)) / max(len(response_a), len(response_b))


def cannot_decide(prompt: str, response_a: str, response_b: str) -> None:
    return None


def explodes(prompt: str, response_a: str, response_b: str) -> str:
    raise RuntimeError("the check crashed")


def longer_is_better(prompt: str, response_a: str, response_b: str) -> str:
    if len(response_a) == len(response_b):
        return "tie"
    return "A" if len(response_a) > len(response_b) else "B"
