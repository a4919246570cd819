"""The review workflow: what reviewers look at and what they decide.

The review queue holds three kinds of items:
- split comparisons: regular (non-gold) comparisons whose decisive votes disagree (at least
  one vote for A and one for B) and that no reviewer has adjudicated yet;
- gold failures: human votes on a gold item whose choice differs from its gold_choice;
- open flags: items an annotator flagged (ItemFlag kind "flag") that no reviewer resolved.

Decisions are rows: an Adjudication per comparison (one; editing it updates the row), a
resolved ItemFlag, an AnnotatorExclusion (lifted, never deleted). Snapshots read them
(labeling/snapshots.py): `Adjudication` wins over the votes; `excluded_annotator_ids` names
the annotators whose votes stay out of future snapshots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from labeling.models import (
    Adjudication,
    AnnotatorExclusion,
    Choice,
    Comparison,
    FlagKind,
    ItemFlag,
    Membership,
    Project,
    Vote,
    VoteSource,
)

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 50  # items shown per section of the review queue; the browser pages the rest
GOLD_ANSWERS = (Choice.A, Choice.B, Choice.TIE)


class ReviewRefused(ValueError):
    """The decision cannot be recorded; the message says why."""


def with_vote_counts(comparisons: QuerySet[Comparison]) -> QuerySet[Any]:
    # QuerySet[Any]: the stubs do not follow annotations through a helper's return type.
    """Annotate each comparison with its votes for A, for B, and all its votes."""
    return comparisons.annotate(
        votes_a=Count("votes", filter=Q(votes__choice=Choice.A), distinct=True),
        votes_b=Count("votes", filter=Q(votes__choice=Choice.B), distinct=True),
        votes_all=Count("votes", distinct=True),
    )


def split_comparisons(project: Project, *, pending_only: bool = True) -> QuerySet[Any]:
    """Regular comparisons whose decisive votes disagree; unadjudicated ones when pending_only."""
    split = with_vote_counts(Comparison.objects.filter(project=project, is_gold=False)).filter(
        votes_a__gt=0, votes_b__gt=0
    )
    if pending_only:
        split = split.filter(adjudication__isnull=True)
    return split.select_related("prompt", "round").order_by("id")


def gold_failures(project: Project) -> QuerySet[Vote]:
    """Human votes on gold items that contradict the item's gold answer."""
    return (
        Vote.objects.filter(
            comparison__project=project,
            comparison__is_gold=True,
            source=VoteSource.HUMAN,
        )
        .exclude(comparison__gold_choice="")
        .exclude(choice=F("comparison__gold_choice"))
        .select_related("annotator", "comparison__prompt", "comparison__round")
        .order_by("-created_at", "-id")
    )


def open_flags(project: Project) -> QuerySet[ItemFlag]:
    """Items annotators flagged for review that no reviewer has resolved yet."""
    return (
        ItemFlag.objects.filter(
            comparison__project=project, kind=FlagKind.FLAG, resolved_at__isnull=True
        )
        .select_related("user", "comparison__prompt", "comparison__round")
        .order_by("created_at", "id")
    )


@dataclass(frozen=True)
class ReviewQueue:
    split: list[Comparison]
    split_total: int
    gold_failures: list[Vote]
    gold_failures_total: int
    flags: list[ItemFlag]
    flags_total: int


def _votes_shown() -> Prefetch:
    """Every vote of a listed comparison with its author, read in one query per section."""
    return Prefetch(
        "votes", queryset=Vote.objects.select_related("annotator", "judge").order_by("id")
    )


def get_review_queue(project: Project, limit: int = QUEUE_LIMIT) -> ReviewQueue:
    """The first `limit` items of each section, each with every vote of its comparison."""
    split = split_comparisons(project)
    failures = gold_failures(project)
    flags = open_flags(project)
    return ReviewQueue(
        split=list(split.prefetch_related(_votes_shown())[:limit]),
        split_total=split.count(),
        gold_failures=list(
            failures.prefetch_related(
                Prefetch("comparison__votes", queryset=_votes_shown().queryset)
            )[:limit]
        ),
        gold_failures_total=failures.count(),
        flags=list(
            flags.prefetch_related(Prefetch("comparison__votes", queryset=_votes_shown().queryset))[
                :limit
            ]
        ),
        flags_total=flags.count(),
    )


def get_comparison_votes(comparison: Comparison) -> QuerySet[Vote]:
    """Every vote of a comparison, with who cast it (reviewers' eyes only)."""
    return comparison.votes.select_related("annotator", "judge").order_by("created_at", "id")


def get_review_comparison(project: Project, comparison_id: int) -> Comparison | None:
    return (
        Comparison.objects.filter(project=project, id=comparison_id)
        .select_related("prompt", "round", "completion_a", "completion_b")
        .first()
    )


def adjudicate(reviewer: User, comparison: Comparison, choice: str, note: str = "") -> Adjudication:
    """Record (or change) a reviewer's decision on a comparison; it wins over the votes in
    exports. The row keeps the latest reviewer and both times (created, updated)."""
    if choice not in Choice.values:
        raise ReviewRefused(f"Unknown choice {choice!r}; use {', '.join(Choice.values)}.")
    with transaction.atomic():
        adjudication, created = Adjudication.objects.update_or_create(
            comparison=comparison,
            defaults={"reviewer": reviewer, "choice": choice, "note": note.strip()},
        )
    logger.info(
        "reviewer %s %s comparison %s: %s",
        reviewer.pk,
        "adjudicated" if created else "changed the adjudication of",
        comparison.pk,
        choice,
    )
    return adjudication


def mark_gold(comparison: Comparison, choice: str) -> Comparison:
    """Make a comparison a gold item with a known answer (A, B or tie).

    From then on it is served blind to annotators who have not answered it (at the project's
    gold_rate), its votes no longer count toward vote_count, and it is never exported."""
    if choice not in GOLD_ANSWERS:
        raise ReviewRefused("A gold answer is A, B or tie.")
    with transaction.atomic():
        Comparison.objects.filter(id=comparison.pk).update(is_gold=True, gold_choice=choice)
    comparison.refresh_from_db()
    return comparison


def unmark_gold(comparison: Comparison) -> Comparison:
    """Turn a gold item back into a regular comparison; its vote count is recounted from its
    human votes (gold votes did not count), capped at its target."""
    with transaction.atomic():
        locked = Comparison.objects.select_for_update().get(id=comparison.pk)
        humans = locked.votes.filter(source=VoteSource.HUMAN).count()
        Comparison.objects.filter(id=locked.pk).update(
            is_gold=False, gold_choice="", vote_count=min(humans, locked.votes_target)
        )
    comparison.refresh_from_db()
    return comparison


def resolve_flag(reviewer: User, flag: ItemFlag, resolution: str) -> ItemFlag:
    """Close a flag with what the reviewer did about it."""
    if not resolution.strip():
        raise ReviewRefused("Say what was done about the flag.")
    with transaction.atomic():
        updated = ItemFlag.objects.filter(id=flag.pk, resolved_at__isnull=True).update(
            resolved_by=reviewer, resolved_at=timezone.now(), resolution=resolution.strip()
        )
    if not updated:
        raise ReviewRefused("This flag was already resolved.")
    flag.refresh_from_db()
    return flag


def exclude_annotator(
    reviewer: User, project: Project, annotator: User, reason: str
) -> AnnotatorExclusion:
    """Keep an annotator's votes out of the project's future snapshots (reversible)."""
    if not reason.strip():
        raise ReviewRefused("Give the reason for excluding the annotator.")
    try:
        with transaction.atomic():
            exclusion = AnnotatorExclusion.objects.create(
                project=project, annotator=annotator, reason=reason.strip(), created_by=reviewer
            )
    except IntegrityError:
        raise ReviewRefused(f"{annotator.username} is already excluded.") from None
    logger.info("reviewer %s excluded user %s in project %s", reviewer.pk, annotator.pk, project.pk)
    return exclusion


def lift_exclusion(
    reviewer: User, exclusion: AnnotatorExclusion, reason: str
) -> AnnotatorExclusion:
    """End an exclusion; the row stays as history with who lifted it, when and why."""
    if not reason.strip():
        raise ReviewRefused("Give the reason for lifting the exclusion.")
    with transaction.atomic():
        updated = AnnotatorExclusion.objects.filter(id=exclusion.pk, lifted_at__isnull=True).update(
            lifted_by=reviewer, lifted_at=timezone.now(), lift_reason=reason.strip()
        )
    if not updated:
        raise ReviewRefused("This exclusion was already lifted.")
    exclusion.refresh_from_db()
    return exclusion


def active_exclusions(project: Project) -> QuerySet[AnnotatorExclusion]:
    return AnnotatorExclusion.objects.filter(project=project, lifted_at__isnull=True)


def excluded_annotator_ids(project: Project) -> set[int]:
    """The annotators whose votes future snapshots of this project leave out."""
    return set(active_exclusions(project).values_list("annotator_id", flat=True))


def list_exclusions(project: Project) -> QuerySet[AnnotatorExclusion]:
    return AnnotatorExclusion.objects.filter(project=project).select_related(
        "annotator", "created_by", "lifted_by"
    )


def project_annotators(project: Project) -> QuerySet[User]:
    """Users who voted in the project or are its members: who may be excluded."""
    members = Membership.objects.filter(project=project).values("user_id")
    voters = Vote.objects.filter(comparison__project=project, annotator__isnull=False).values(
        "annotator_id"
    )
    return User.objects.filter(Q(id__in=members) | Q(id__in=voters)).order_by("username")


def status_of(comparison: Any) -> list[str]:
    """The browser's status words for one comparison annotated by labeling.browser."""
    words = []
    if comparison.is_gold:
        words.append("gold")
    elif comparison.vote_count >= comparison.votes_target:
        words.append("complete")
    else:
        words.append("open")
    if getattr(comparison, "votes_a", 0) and getattr(comparison, "votes_b", 0):
        words.append("split")
    if getattr(comparison, "adjudicated", False):
        words.append("adjudicated")
    if getattr(comparison, "open_flags", 0):
        words.append("flagged")
    return words
