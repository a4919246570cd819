"""The preferences stream: decisive votes as (prompt, chosen, rejected) triples, NDJSON.

A page is found first as a short list of vote ids (so its next cursor can go in the headers,
which leave before the body), then its rows are streamed from a database iterator: memory
stays flat whatever the page size. Order is by vote id, which never changes, so a cursor
resumes exactly where the last page stopped even while new votes arrive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import (
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router

from api.auth import api_auth, project_membership, require_scope
from api.common import REVIEWER
from api.errors import error_responses
from api.models import Scope
from api.pagination import decode_cursor, encode_cursor, json_lines_openapi, json_lines_response
from api.schemas import PreferenceRow
from labeling.models import DECISIVE_CHOICES, Project, Vote

router = Router(auth=api_auth, tags=["preferences"])

_ROW_FIELDS = (
    "id",
    "created_at",
    "strength",
    "imported_from",
    "annotator__username",
    "comparison_id",
    "comparison__round__number",
    "comparison__prompt__text",
    "comparison__prompt__messages",
    "chosen__text",
    "chosen__model_name",
    "rejected__text",
    "rejected__model_name",
    "agreeing",
    "decisive",
    "source",
    "judge__name",
)


def _decisive_votes(project: Project) -> QuerySet[Vote]:
    return Vote.objects.filter(
        comparison__project=project, comparison__is_gold=False, choice__in=DECISIVE_CHOICES
    )


def _with_agreement(votes: QuerySet[Vote]) -> QuerySet[Vote]:
    """Annotate each vote with how many decisive votes of its comparison there are and how
    many of them chose the same completion (the snapshot's every-vote agreement)."""
    same_comparison = Vote.objects.filter(
        comparison_id=OuterRef("comparison_id"), choice__in=DECISIVE_CHOICES
    )
    decisive = same_comparison.values("comparison_id").annotate(n=Count("id")).values("n")
    agreeing = (
        same_comparison.filter(chosen_id=OuterRef("chosen_id"))
        .values("comparison_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return votes.annotate(
        decisive=Coalesce(Subquery(decisive, output_field=IntegerField()), Value(0)),
        agreeing=Coalesce(Subquery(agreeing, output_field=IntegerField()), Value(0)),
    )


def filter_preferences(
    project: Project,
    round: int | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    annotator: str | None = None,
    min_agreement: float | None = None,
    source: str | None = None,
) -> QuerySet[Vote]:
    votes = _with_agreement(_decisive_votes(project))
    if source is not None:  # human, judge or imported (api/judges.py, docs/judges.md)
        votes = votes.filter(source=source)
    if round is not None:
        votes = votes.filter(comparison__round__number=round)
    if created_after is not None:
        votes = votes.filter(created_at__gt=created_after)
    if created_before is not None:
        votes = votes.filter(created_at__lt=created_before)
    if annotator is not None:
        votes = votes.filter(annotator__username=annotator)
    if min_agreement is not None:
        share = ExpressionWrapper(
            F("agreeing") * 1.0 - F("decisive") * min_agreement, output_field=FloatField()
        )
        # agreeing / decisive >= min_agreement, written without a division
        votes = votes.alias(margin=share).filter(margin__gte=-1e-9)
    return votes


def _project_is_chat(project: Project) -> bool:
    return _decisive_votes(project).filter(comparison__prompt__messages__isnull=False).exists()


def _row(vote: dict[str, Any], chat: bool) -> dict[str, Any]:
    messages = vote["comparison__prompt__messages"]
    prompt: Any = messages if messages is not None else vote["comparison__prompt__text"]
    chosen: Any = vote["chosen__text"]
    rejected: Any = vote["rejected__text"]
    if chat:  # the snapshot's layout rule: one schema for every row of a project
        if messages is None:
            prompt = [{"role": "user", "content": prompt}]
        chosen = [{"role": "assistant", "content": chosen}]
        rejected = [{"role": "assistant", "content": rejected}]
    decisive = vote["decisive"] or 1
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "vote_id": vote["id"],
        "comparison_id": vote["comparison_id"],
        "round": vote["comparison__round__number"],
        "annotator": vote["annotator__username"],
        "imported_from": vote["imported_from"],
        "strength": vote["strength"] or None,
        "agreement": round(vote["agreeing"] / decisive, 6),
        "chosen_model": vote["chosen__model_name"],
        "rejected_model": vote["rejected__model_name"],
        "created_at": vote["created_at"].isoformat(),
        "source": vote["source"],
        "judge": vote["judge__name"],
    }


def _lines(votes: QuerySet[Vote], chat: bool) -> Iterator[bytes]:
    for vote in votes.values(*_ROW_FIELDS).iterator(chunk_size=1000):
        yield (json.dumps(_row(vote, chat), ensure_ascii=False) + "\n").encode()


_STREAM_RESPONSES = json_lines_openapi(PreferenceRow)


@router.get(
    "/projects/{project_id}/preferences",
    response=error_responses(),
    openapi_extra=_STREAM_RESPONSES,
    url_name="preferences",
)
def list_preferences(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(1000, ge=1, le=10_000),
    round: int | None = Query(None, ge=1),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    annotator: str | None = None,
    min_agreement: float | None = Query(None, ge=0.0, le=1.0),
    source: str | None = Query(None, pattern="^(human|judge|imported)$"),
) -> StreamingHttpResponse:
    """Decisive votes as preference triples, in vote-id order, streamed as JSON lines.

    Gold (quality-control) comparisons, ties and both-bad votes are left out. `agreement` is
    the share of the comparison's decisive votes that chose the same response. `source` says
    who voted (human, judge: an AI judge named by `judge`, imported); filter with `source=`.
    Scope: export; role: reviewer or admin."""
    require_scope(request, Scope.EXPORT)
    project = project_membership(request, project_id, REVIEWER).project
    after = decode_cursor(cursor)
    votes = filter_preferences(
        project, round, created_after, created_before, annotator, min_agreement, source
    )
    page = votes.order_by("id")
    if after is not None:
        page = page.filter(id__gt=after)
    ids = list(page.values_list("id", flat=True)[: limit + 1])
    next_cursor = None
    if len(ids) > limit:
        ids = ids[:limit]
        next_cursor = encode_cursor(ids[-1])
    rows = page.filter(id__lte=ids[-1]) if ids else page.none()
    return json_lines_response(request, _lines(rows, _project_is_chat(project)), next_cursor)
