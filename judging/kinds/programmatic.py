"""Programmatic judges: a Python callable installed with the deployment, named by dotted path.

Only staff configure one (it runs code on a worker), and only modules listed in
PREFLAB_JUDGE_CALLABLE_MODULES (prefixes) may be named.

The callable's signature::

    def check(prompt: str, response_a: str, response_b: str) -> str | float | None
    def check(prompt: str, response_a: str, response_b: str, metadata: dict) -> ...

`response_a` is the response shown first in this order. Return "A" (the first is better),
"B", "tie", a float in [-1, 1] (positive: the first is better; its size is the margin; 0 is a
tie), or None when the check cannot decide (recorded as unparseable, never guessed). Anything
else is unparseable; an exception is an error. `metadata` is the prompt's metadata (e.g. the
reference answer of a verifiable task), passed when the callable has that parameter.
"""

from __future__ import annotations

import importlib
import inspect
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from judging.kinds import (
    FIRST,
    SECOND,
    TIE,
    TIME_LIMIT,
    JudgeConfigError,
    Pair,
    Verdict,
    reject_unknown,
    text,
)

_ANSWERS = {"A": FIRST, "B": SECOND, "tie": TIE}


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(config, {"callable"})
    path = text(config, "callable")
    resolve(path)
    return {"callable": path}


def resolve(path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute.isidentifier():
        raise JudgeConfigError(f"config.callable {path!r} is not a dotted path module.function.")
    allowed = settings.PREFLAB_JUDGE_CALLABLE_MODULES
    if not any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in allowed):
        raise JudgeConfigError(
            f"config.callable {path!r} is outside the modules allowed by "
            f"PREFLAB_JUDGE_CALLABLE_MODULES ({', '.join(allowed) or 'none'})."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JudgeConfigError(f"config.callable: cannot import {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise JudgeConfigError(f"config.callable: {module_name} has no callable {attribute!r}.")
    return function  # type: ignore[no-any-return]


def interpret(answer: Any) -> tuple[str | None, float | None]:
    """(winner, score) from a callable's return value; (None, None) when it names no side."""
    if isinstance(answer, str):
        return _ANSWERS.get(answer), None
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        score = float(answer)
        if not math.isfinite(score) or not -1.0 <= score <= 1.0:
            return None, None
        return (FIRST if score > 0 else SECOND if score < 0 else TIE), score
    return None, None


class ProgrammaticJudge:
    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.wants_metadata = "metadata" in inspect.signature(function).parameters

    def judge(self, pairs: list[Pair], deadline: float) -> list[Verdict]:
        verdicts = []
        for pair in pairs:
            if time.monotonic() > deadline:
                verdicts.append(Verdict(None, {}, error=TIME_LIMIT))
                continue
            try:
                if self.wants_metadata:
                    answer = self.function(pair.prompt, pair.first, pair.second, pair.metadata)
                else:
                    answer = self.function(pair.prompt, pair.first, pair.second)
            except Exception as exc:  # the callable is not ours to trust
                verdicts.append(Verdict(None, {}, error=f"{type(exc).__name__}: {exc}", calls=1))
                continue
            winner, score = interpret(answer)
            raw = {"answer": answer if isinstance(answer, (str, int, float)) else repr(answer)}
            verdicts.append(Verdict(winner, raw, score=score, calls=1))
        return verdicts

    def close(self) -> None:
        return None


def build(judge: Any) -> ProgrammaticJudge:
    return ProgrammaticJudge(resolve(clean_config(judge.config)["callable"]))
