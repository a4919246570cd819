"""Ranking tasks and rankings written to the database for the agreement and API tests.

Tasks are made with labeling.rankings.create_ranking_tasks; rankings are Ranking rows created
as the submit path stores them (display order from display_order_for unless given), so the
quality job and the API read them like any others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labeling.models import (
    Completion,
    Project,
    Prompt,
    Ranking,
    RankingTask,
    Round,
    VoteSource,
)
from labeling.rankings import TaskSpec, create_ranking_tasks, display_order_for


def make_ranking_tasks(
    project: Project,
    count: int,
    k: int = 4,
    *,
    round_number: int = 1,
    votes_target: int = 3,
    chat: bool = False,
) -> list[RankingTask]:
    """``count`` tasks of ``k`` responses each in round ``round_number`` (made if absent);
    response ``i`` of task ``t`` reads "Answer i to question t." and is written by model-i."""
    round_, _ = Round.objects.get_or_create(project=project, number=round_number)
    specs = []
    for index in range(count):
        text = f"Round {round_number} question {index}?"
        prompt = Prompt.objects.create(
            project=project,
            text="" if chat else text,
            messages=[{"role": "user", "content": text}] if chat else None,
        )
        completions = [
            Completion.objects.create(
                prompt=prompt, text=f"Answer {i} to question {index}.", model_name=f"model-{i}"
            )
            for i in range(k)
        ]
        specs.append(TaskSpec(prompt, completions, votes_target))
    return create_ranking_tasks(round_, specs)


def add_ranking(
    task: RankingTask,
    user: Any,
    ranking: Sequence[Any],
    display_order: Sequence[int] | None = None,
    *,
    source: str = VoteSource.HUMAN,
    imported_from: str = "",
) -> Ranking:
    """Store one ranking of ``task`` (best first over canonical positions) and count it."""
    if display_order is None and user is not None:
        display_order = display_order_for(user.pk, task.pk, task.size)
    row = Ranking.objects.create(
        task=task,
        annotator=user,
        ranking=list(ranking),
        display_order=list(display_order or []),
        source=source,
        imported_from=imported_from,
        time_taken_ms=12_000 if user is not None else None,
    )
    RankingTask.objects.filter(id=task.pk).update(vote_count=task.rankings.count())
    return row
