"""Best-versus-worst pairing: the registry through which a judge picks the best and the worst
of K samples of one prompt.

Training never imports judging (an import-linter contract), so the judging app registers its
implementation here from its AppConfig.ready(); without the judging app installed nothing is
registered and best_worst sampling is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labeling.models import Judge, Prompt

BEST_WORST_DEFAULT_K = 4
BEST_WORST_K_RANGE = (3, 8)
SAMPLES_PER_PROMPT_HELP = (
    "K samples of the checkpoint per prompt (3-8, same generation settings). Best against "
    "worst: the judge judges every pair of them in both orders and the one with the most wins "
    "is paired against the one with the fewest; all K are stored, K(K-1) judge calls per "
    "prompt. Ranking task: the K samples, identical ones once, are one task to rank."
)
JUDGE_HELP = "The judge that picks the best and the worst of the K samples of each prompt."


@dataclass(frozen=True)
class Candidates:
    """K responses to one prompt, to rank."""

    prompt: Prompt
    texts: list[str]


@dataclass
class Selection:
    """The judge's pick among one prompt's candidates.

    best/worst: indexes into the candidates, None when the judge could not separate them
    (best and worst tied on wins) or failed (error set). wins: each candidate's wins in the
    round robin (ties count half). calls/tokens: what the judge spent on this prompt.
    """

    best: int | None
    worst: int | None
    wins: list[float] = field(default_factory=list)
    calls: int = 0
    tokens: int = 0
    error: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


BestWorstSelector = Callable[[Judge, list[Candidates]], list[Selection]]

_selector: BestWorstSelector | None = None


def register_best_worst(selector: BestWorstSelector) -> None:
    global _selector
    _selector = selector


def best_worst_selector() -> BestWorstSelector | None:
    return _selector
