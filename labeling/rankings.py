"""Creating ranking tasks and the per-annotator display order of their responses.

The lease, submit and undo operations on ranking tasks are in labeling.ranking_services; the
ranking format itself (best first, nested lists for ties) is training.engine.rankings, shared
with the engine's listwise loader. docs/rankings.md describes the whole feature.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from labeling.models import (
    RANKING_K_RANGE,
    Completion,
    Prompt,
    RankingItem,
    RankingTask,
    Round,
)


class RankingTaskInvalid(ValueError):
    """The responses cannot form a ranking task; the message names what is wrong."""


@dataclass(frozen=True)
class TaskSpec:
    """One ranking task to create: a prompt and its K completions in canonical order."""

    prompt: Prompt
    completions: Sequence[Completion]
    votes_target: int


def check_responses(texts: Sequence[str]) -> None:
    """Refuse a list of responses that cannot be ranked: K outside 3-8, or two identical."""
    low, high = RANKING_K_RANGE
    if not low <= len(texts) <= high:
        raise RankingTaskInvalid(
            f"a ranking task needs {low} to {high} responses, got {len(texts)}"
        )
    seen: dict[str, int] = {}
    for index, text in enumerate(texts):
        if text in seen:
            raise RankingTaskInvalid(
                f"responses {seen[text]} and {index} are identical; a ranking needs distinct "
                "responses"
            )
        seen[text] = index


def create_ranking_tasks(round_: Round, specs: Sequence[TaskSpec]) -> list[RankingTask]:
    """Create the tasks and their items in one transaction (all or nothing).

    A completion's canonical position is its index in `spec.completions`; stored rankings
    index into that order.
    """
    for spec in specs:
        check_responses([c.text for c in spec.completions])
    with transaction.atomic():
        tasks = RankingTask.objects.bulk_create(
            [
                RankingTask(
                    project_id=round_.project_id,
                    round=round_,
                    prompt=spec.prompt,
                    size=len(spec.completions),
                    votes_target=spec.votes_target,
                )
                for spec in specs
            ]
        )
        RankingItem.objects.bulk_create(
            [
                RankingItem(task=task, completion=completion, position=position)
                for task, spec in zip(tasks, specs, strict=True)
                for position, completion in enumerate(spec.completions)
            ]
        )
    return tasks


def display_order_for(user_id: int, task_id: int, size: int) -> list[int]:
    """The canonical positions top to bottom as this annotator sees them: a shuffle keyed with
    SECRET_KEY (unpredictable to annotators), fixed per (annotator, task) so a reload shows the
    same order; stored on the ranking, as left_side is on a pair vote."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"ranking:{user_id}:{task_id}".encode(), hashlib.sha256
    ).digest()
    order = list(range(size))
    random.Random(digest).shuffle(order)
    return order
