"""Ranking tasks and rankings of K responses, read through the API (docs/api.md, "Rankings").

- ``GET projects/{id}/ranking-tasks``: the tasks, their K responses in canonical order and how
  many rankings they have (scope read);
- ``GET projects/{id}/rankings``: every ranking as JSON pages (scope export);
- ``GET projects/{id}/rankings/stream``: the same rows as JSON lines, cursor in the headers, as
  the preferences stream does (scope export).

Rankings are best first over the task's canonical positions, a nested list a tie group
(training.engine.rankings), written in canonical form (each tie group's members ascending).
Annotators appear as the pseudonyms the raw-votes snapshots use (labeling.snapshots.pseudonym).
Lists are keyset pages by id, oldest first. Ranking snapshots go through the snapshot endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

from django.db.models import F, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from api.auth import api_auth, project_membership, require_scope
from api.common import REVIEWER
from api.errors import error_responses
from api.models import Scope
from api.pagination import json_lines_openapi, json_lines_response, keyset_page
from labeling.models import Project, Ranking, RankingItem, RankingTask
from labeling.snapshots import pseudonym
from training.engine.rankings import RankingError, canonical_ranking

router = Router(auth=api_auth, tags=["rankings"])

Text = str | list[dict[str, str]]


class RankingTaskOut(Schema):
    id: int
    round: int
    size: int = Field(description="K: how many responses are ranked.")
    prompt: Text
    responses: list[Text] = Field(
        description="The K responses in canonical order: rankings index into this list."
    )
    models: list[str] = Field(description="The model that wrote each response ('' if unknown).")
    vote_count: int = Field(description="Rankings the task has (its overlap slots taken).")
    votes_target: int = Field(description="Rankings the task needs.")
    created_at: datetime


class RankingTaskPage(Schema):
    items: list[RankingTaskOut]
    next_cursor: str | None


class RankingOut(Schema):
    ranking_id: int
    task_id: int
    round: int
    prompt: Text
    responses: list[Text]
    models: list[str]
    ranking: list[int | list[int]] = Field(
        description="Best first over the responses' indices; a nested list is a tie group."
    )
    display_order: list[int] = Field(
        description="The indices top to bottom as the annotator was shown them; empty for "
        "imported rankings."
    )
    source: str = Field(description="human, judge or imported.")
    annotator: str | None = Field(
        description="A stable pseudonym of the annotator within the project; null if imported."
    )
    imported_from: str
    time_taken_ms: int | None
    created_at: datetime


class RankingPage(Schema):
    items: list[RankingOut]
    next_cursor: str | None


def _is_chat(project: Project) -> bool:
    # The snapshots' layout rule: when any ranked prompt of the project is a chat, every row is
    # conversational, so one schema fits all rows.
    return RankingTask.objects.filter(project=project, prompt__messages__isnull=False).exists()


def _items_of(task_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """Each task's (text, model name) in canonical order, in one query."""
    items: dict[int, list[tuple[str, str]]] = {}
    rows = (
        RankingItem.objects.filter(task_id__in=task_ids)
        .order_by("task_id", "position")
        .values_list("task_id", "completion__text", "completion__model_name")
    )
    for task_id, text, model in rows:
        items.setdefault(task_id, []).append((text, model))
    return items


def _layout(
    text: str, messages: Any, responses: list[tuple[str, str]], chat: bool
) -> tuple[Any, list[Any]]:
    prompt: Any = messages if messages is not None else text
    texts: list[Any] = [response for response, _ in responses]
    if chat:
        if messages is None:
            prompt = [{"role": "user", "content": prompt}]
        texts = [[{"role": "assistant", "content": response}] for response in texts]
    return prompt, texts


def _canonical(ranking: Any, size: int, ranking_id: int) -> list[int | list[int]]:
    try:
        return canonical_ranking(ranking, size)
    except RankingError as exc:
        # Stored rankings are validated on the way in: one that is not is a defect to log
        # (the API answers 500 internal_error), not a row to pass on.
        raise ValueError(f"Ranking {ranking_id} is malformed: {exc}") from None


@router.get(
    "/projects/{project_id}/ranking-tasks",
    response={200: RankingTaskPage, **error_responses()},
    url_name="ranking_tasks",
)
def list_ranking_tasks(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    round: int | None = Query(None, ge=1),
    complete: bool | None = Query(
        None, description="true: only tasks with all their rankings; false: only open ones."
    ),
) -> dict[str, Any]:
    """The project's ranking tasks with their K responses in canonical order, by id.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    tasks = RankingTask.objects.filter(project=project).select_related("round", "prompt")
    if round is not None:
        tasks = tasks.filter(round__number=round)
    if complete is True:
        tasks = tasks.filter(vote_count__gte=F("votes_target"))
    elif complete is False:
        tasks = tasks.filter(vote_count__lt=F("votes_target"))
    rows, next_cursor = keyset_page(tasks, cursor, limit, descending=False)
    items = _items_of([task.pk for task in rows])
    chat = _is_chat(project)
    out = []
    for task in rows:
        responses = items.get(task.pk, [])
        prompt, texts = _layout(task.prompt.text, task.prompt.messages, responses, chat)
        out.append(
            {
                "id": task.pk,
                "round": task.round.number,
                "size": task.size,
                "prompt": prompt,
                "responses": texts,
                "models": [model for _, model in responses],
                "vote_count": task.vote_count,
                "votes_target": task.votes_target,
                "created_at": task.created_at,
            }
        )
    return {"items": out, "next_cursor": next_cursor}


def filter_rankings(
    project: Project,
    round: int | None = None,
    source: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    annotator: str | None = None,
    task: int | None = None,
) -> QuerySet[Ranking]:
    """The project's rankings under the list's filters (``annotator`` is a pseudonym)."""
    rankings = Ranking.objects.filter(task__project=project)
    if round is not None:
        rankings = rankings.filter(task__round__number=round)
    if source is not None:
        rankings = rankings.filter(source=source)
    if created_after is not None:
        rankings = rankings.filter(created_at__gt=created_after)
    if created_before is not None:
        rankings = rankings.filter(created_at__lt=created_before)
    if task is not None:
        rankings = rankings.filter(task_id=task)
    if annotator is not None:
        # Pseudonyms are HMACs, not stored: match them over the project's rankers.
        ids = (
            Ranking.objects.filter(task__project=project, annotator__isnull=False)
            .values_list("annotator_id", flat=True)
            .distinct()
        )
        matching = [i for i in ids if pseudonym(project.pk, i) == annotator]
        rankings = rankings.filter(annotator_id__in=matching)
    return rankings


_RANKING_FIELDS = (
    "id",
    "task_id",
    "task__round__number",
    "task__size",
    "task__prompt__text",
    "task__prompt__messages",
    "ranking",
    "display_order",
    "source",
    "annotator_id",
    "imported_from",
    "time_taken_ms",
    "created_at",
)


def _ranking_rows(
    project: Project, rankings: QuerySet[Ranking], chat: bool, chunk: int = 500
) -> Iterator[dict[str, Any]]:
    """Rows in id order, a chunk of rankings (and their tasks' items) at a time."""
    after: int | None = None
    while True:
        page = rankings.order_by("id")
        if after is not None:
            page = page.filter(id__gt=after)
        batch = list(page.values(*_RANKING_FIELDS)[:chunk])
        if not batch:
            return
        items = _items_of(sorted({row["task_id"] for row in batch}))
        for row in batch:
            responses = items.get(row["task_id"], [])
            prompt, texts = _layout(
                row["task__prompt__text"], row["task__prompt__messages"], responses, chat
            )
            annotator = row["annotator_id"]
            yield {
                "ranking_id": row["id"],
                "task_id": row["task_id"],
                "round": row["task__round__number"],
                "prompt": prompt,
                "responses": texts,
                "models": [model for _, model in responses],
                "ranking": _canonical(row["ranking"], row["task__size"], row["id"]),
                "display_order": list(row["display_order"] or []),
                "source": row["source"],
                "annotator": pseudonym(project.pk, annotator) if annotator is not None else None,
                "imported_from": row["imported_from"],
                "time_taken_ms": row["time_taken_ms"],
                "created_at": row["created_at"],
            }
        if len(batch) < chunk:
            return
        after = batch[-1]["id"]


@router.get(
    "/projects/{project_id}/rankings",
    response={200: RankingPage, **error_responses()},
    url_name="rankings",
)
def list_rankings(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    round: int | None = Query(None, ge=1),
    source: Literal["human", "judge", "imported"] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    annotator: str | None = Query(None, description="An annotator's pseudonym, as rows give it."),
    task: int | None = Query(None, ge=1, description="Only this ranking task's rankings."),
) -> dict[str, Any]:
    """Every ranking of the project, by id: the task's prompt and responses, the ranking (best
    first, nested lists are ties), the order the annotator saw, source and a pseudonym.

    Scope: export; role: reviewer or admin."""
    require_scope(request, Scope.EXPORT)
    project = project_membership(request, project_id, REVIEWER).project
    rankings = filter_rankings(
        project, round, source, created_after, created_before, annotator, task
    )
    ids, next_cursor = _keyset_ids(rankings, cursor, limit)
    page = rankings.filter(id__gte=ids[0], id__lte=ids[-1]) if ids else rankings.none()
    return {
        "items": list(_ranking_rows(project, page, _is_chat(project))),
        "next_cursor": next_cursor,
    }


def _keyset_ids(
    rankings: QuerySet[Ranking], cursor: str | None, limit: int
) -> tuple[list[int], str | None]:
    """The ids of one page (keyset by id) and the next page's cursor, or None at the end."""
    page, next_cursor = keyset_page(rankings.only("id"), cursor, limit, descending=False)
    return [ranking.pk for ranking in page], next_cursor


_STREAM_RESPONSES = json_lines_openapi(RankingOut)


def _lines(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()


@router.get(
    "/projects/{project_id}/rankings/stream",
    response=error_responses(),
    openapi_extra=_STREAM_RESPONSES,
    url_name="rankings_stream",
)
def stream_rankings(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(1000, ge=1, le=10_000),
    round: int | None = Query(None, ge=1),
    source: Literal["human", "judge", "imported"] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    annotator: str | None = Query(None, description="An annotator's pseudonym, as rows give it."),
    task: int | None = Query(None, ge=1, description="Only this ranking task's rankings."),
) -> StreamingHttpResponse:
    """The rankings of `GET projects/{id}/rankings`, streamed as JSON lines in id order, with
    the next page's cursor in the X-Next-Cursor and Link headers.

    Scope: export; role: reviewer or admin."""
    require_scope(request, Scope.EXPORT)
    project = project_membership(request, project_id, REVIEWER).project
    rankings = filter_rankings(
        project, round, source, created_after, created_before, annotator, task
    )
    ids, next_cursor = _keyset_ids(rankings, cursor, limit)
    # The page is bounded by its first and last id, not by an IN list of up to 10,000 ids.
    page = rankings.filter(id__gte=ids[0], id__lte=ids[-1]) if ids else rankings.none()
    rows = _ranking_rows(project, page, _is_chat(project))
    return json_lines_response(request, _lines(rows), next_cursor)
