"""Judge kinds behind one interface.

A kind turns a Judge row's config into an object that judges a batch of *ordered* pairs: each
pair shows one response first and the other second, and the verdict names a position (first,
second, tie) or none (unparseable). judging.services asks every comparison in both orders and
maps the positions back to A and B; a kind never sees which order it is asked in.

Kinds: programmatic (judging/kinds/programmatic.py), llm (llm.py), reward_model
(reward_model.py). Each module defines ``clean_config(config) -> dict`` (raises ValueError
naming the bad key) and ``build(judge) -> Kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

FIRST = "first"
SECOND = "second"
TIE = "tie"
# The error of a verdict not asked because the job's total-time limit had passed.
TIME_LIMIT = "the job's time limit was reached"


@dataclass(frozen=True)
class Pair:
    """One order of one comparison, as the judge sees it."""

    prompt: str
    first: str
    second: str
    guidelines: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    """A judge's answer to one ordered pair.

    winner: FIRST, SECOND, TIE, or None when the answer named neither side (unparseable) or
    the call failed (error set). score: how much the first response is preferred, for kinds
    that score (reward model: reward(first) - reward(second); a programmatic score); None for
    text answers. raw: the judge's own output, JSON-serialisable, stored as-is.
    """

    winner: str | None
    raw: dict[str, Any]
    score: float | None = None
    error: str = ""
    calls: int = 0
    tokens: int = 0


class Kind(Protocol):
    def judge(self, pairs: list[Pair], deadline: float) -> list[Verdict]:
        """One verdict per pair, in order. `deadline` is a time.monotonic() value after which
        no new call may start (the job's total-time limit)."""
        ...

    def close(self) -> None: ...


class JudgeConfigError(ValueError):
    """A judge's configuration is invalid; the message names the key."""


def kind_module(kind: str) -> Any:
    from judging.kinds import llm, programmatic, reward_model

    modules = {"programmatic": programmatic, "llm": llm, "reward_model": reward_model}
    try:
        return modules[kind]
    except KeyError:
        raise JudgeConfigError(
            f"Unknown judge kind {kind!r}; use one of {', '.join(modules)}."
        ) from None


def clean_config(kind: str, config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise JudgeConfigError("config must be a JSON object.")
    cleaned: dict[str, Any] = kind_module(kind).clean_config(config)
    return cleaned


def build(judge: Any) -> Kind:
    kind: Kind = kind_module(judge.kind).build(judge)
    return kind


def _require(config: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """config[key] checked against a type; `default` when absent (None: required)."""
    if key not in config or config[key] is None or config[key] == "":
        if default is None:
            raise JudgeConfigError(f"config.{key} is required.")
        return default
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise JudgeConfigError(f"config.{key} must be a {kind.__name__}, not {value!r}.")
    return value


def number_in(
    config: dict[str, Any], key: str, kind: type, default: Any, low: float, high: float
) -> Any:
    value = _require(config, key, kind, default)
    if not low <= value <= high:
        raise JudgeConfigError(f"config.{key} must be between {low} and {high}, not {value}.")
    return value


def text(config: dict[str, Any], key: str, default: str | None = None) -> str:
    value: str = _require(config, key, str, default)
    return value


def reject_unknown(config: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(config) - known)
    if unknown:
        raise JudgeConfigError(
            f"Unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
