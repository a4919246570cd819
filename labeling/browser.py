"""The data browser: search and filter a project's comparisons (reviewers and admins).

Filters combine (AND). Agreement is the share of a comparison's decisive votes that went to
the side with more of them (1.0 when all agree; comparisons without decisive votes have none
and are left out by an agreement filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Greatest

from labeling.models import Adjudication, Comparison, FlagKind, ItemFlag, Project, Vote
from labeling.review import with_vote_counts


class Status:
    OPEN = "open"
    COMPLETE = "complete"
    SPLIT = "split"
    ADJUDICATED = "adjudicated"
    GOLD = "gold"
    FLAGGED = "flagged"
    CHOICES = [
        (OPEN, "Open (needs votes)"),
        (COMPLETE, "Complete"),
        (SPLIT, "Split (decisive votes disagree)"),
        (ADJUDICATED, "Adjudicated"),
        (GOLD, "Gold item"),
        (FLAGGED, "Flagged, not resolved"),
    ]


@dataclass(frozen=True)
class BrowserFilters:
    text: str = ""
    round: int | None = None
    status: str = ""
    min_agreement: float | None = None
    max_agreement: float | None = None
    annotator: str = ""
    model: str = ""
    flag_reason: str = ""


def _annotated(project: Project) -> QuerySet[Any]:
    comparisons = with_vote_counts(Comparison.objects.filter(project=project))
    decisive = F("votes_a") + F("votes_b")
    open_flag = ItemFlag.objects.filter(
        comparison_id=OuterRef("id"), kind=FlagKind.FLAG, resolved_at__isnull=True
    )
    return comparisons.annotate(
        adjudicated=Exists(Adjudication.objects.filter(comparison_id=OuterRef("id"))),
        open_flags=Exists(open_flag),
        agreement=Case(
            When(Q(votes_a__gt=0) | Q(votes_b__gt=0), then=ExpressionWrapper(
                Cast(Greatest("votes_a", "votes_b"), FloatField()) / decisive,
                output_field=FloatField(),
            )),
            default=Value(None),
            output_field=FloatField(),
        ),
    )  # fmt: skip


def search_comparisons(project: Project, filters: BrowserFilters) -> QuerySet[Any]:
    """The project's comparisons matching every given filter, newest first."""
    found = _annotated(project)
    if filters.text:
        text = filters.text
        # A chat prompt's turns are searched as the JSON text of its messages (on SQLite that
        # text escapes non-ASCII characters, so only ASCII words of chat turns are found there).
        found = found.alias(chat_text=Cast("prompt__messages", TextField())).filter(
            Q(prompt__text__icontains=text)
            | Q(chat_text__icontains=text)
            | Q(completion_a__text__icontains=text)
            | Q(completion_b__text__icontains=text)
        )
    if filters.round is not None:
        found = found.filter(round__number=filters.round)
    if filters.status == Status.OPEN:
        found = found.filter(is_gold=False, vote_count__lt=F("votes_target"))
    elif filters.status == Status.COMPLETE:
        found = found.filter(is_gold=False, vote_count__gte=F("votes_target"))
    elif filters.status == Status.SPLIT:
        found = found.filter(votes_a__gt=0, votes_b__gt=0)
    elif filters.status == Status.ADJUDICATED:
        found = found.filter(adjudicated=True)
    elif filters.status == Status.GOLD:
        found = found.filter(is_gold=True)
    elif filters.status == Status.FLAGGED:
        found = found.filter(open_flags=True)
    if filters.min_agreement is not None:
        found = found.filter(agreement__gte=filters.min_agreement - 1e-9)
    if filters.max_agreement is not None:
        found = found.filter(agreement__lte=filters.max_agreement + 1e-9)
    if filters.annotator:
        found = found.filter(
            Exists(
                Vote.objects.filter(
                    comparison_id=OuterRef("id"), annotator__username=filters.annotator
                )
            )
        )
    if filters.model:
        found = found.filter(
            Q(completion_a__model_name__icontains=filters.model)
            | Q(completion_b__model_name__icontains=filters.model)
        )
    if filters.flag_reason:
        found = found.filter(
            Exists(
                ItemFlag.objects.filter(
                    comparison_id=OuterRef("id"), kind=FlagKind.FLAG, reason=filters.flag_reason
                )
            )
        )
    return found.select_related("prompt", "round", "completion_a", "completion_b").order_by("-id")
