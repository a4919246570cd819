"""Domain operations on labeling data: leasing work, casting and undoing votes, membership."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import (
    Count,
    F,
    Func,
    Model,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling.models import (
    DECISIVE_CHOICES,
    Choice,
    Comparison,
    FlagKind,
    FlagReason,
    ItemFlag,
    Membership,
    Project,
    QueueOrder,
    Role,
    Side,
    Strength,
    Vote,
    VoteSource,
)

logger = logging.getLogger(__name__)


class VoteRejected(Exception):
    """The vote cannot be recorded; the message is shown to the annotator."""


def left_side_for(user_id: int, comparison_id: int) -> str:
    """Which completion an annotator sees on the left, fixed per (annotator, comparison).

    Keyed with SECRET_KEY so annotators cannot predict it; stable so a reload shows the same
    layout, and recorded on the vote so position bias can be measured.
    """
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"{user_id}:{comparison_id}".encode(), hashlib.sha256
    ).digest()
    return Side.A if digest[0] % 2 == 0 else Side.B


def free_for(user: User, now: object) -> Q:
    """Rows with lease columns (comparisons, ranking tasks) this user may lease now: unleased,
    lease expired, or already theirs."""
    return Q(leased_to__isnull=True) | Q(lease_expires_at__lte=now) | Q(leased_to=user)


# Clears the lease columns of a comparison or a ranking task.
RELEASED: dict[str, Any] = {"leased_to": None, "leased_at": None, "lease_expires_at": None}

Leasable = TypeVar("Leasable", bound=Model)


def claim_next(
    user: User,
    project: Project,
    open_rows: QuerySet[Leasable],
    servable: Q,
    ordering: Sequence[Any],
    now: datetime,
    related: Sequence[str] = (),
) -> Leasable | None:
    """Lease the first of `open_rows` (in `ordering`) that is free for `user`, or None.

    Shared by comparisons and ranking tasks (labeling.ranking_services). The claim is one
    UPDATE of the first qualifying row, picked by a subquery in that order, then one SELECT
    reads it back (with `related`). Races: on PostgreSQL the subquery reads its row FOR UPDATE
    SKIP LOCKED, so concurrent annotators never wait on each other's rows; on every database
    the UPDATE repeats `servable` and the lease conditions on the row itself, so of two
    annotators racing for one row exactly one wins and the other, updating nothing, tries
    again.
    """
    model = open_rows.model
    expires = lease_expiry(now)
    while True:
        with transaction.atomic():
            candidate = open_rows.filter(free_for(user, now)).order_by(*ordering).values("id")[:1]
            if connection.features.has_select_for_update_skip_locked:
                candidate = candidate.select_for_update(skip_locked=True)
            claimed = (
                model._default_manager.filter(servable, id__in=candidate)
                .filter(free_for(user, now))
                .update(leased_to=user, leased_at=now, lease_expires_at=expires)
            )
        if claimed:
            leased = (
                model._default_manager.select_related(*related)
                .filter(project=project, leased_to=user, lease_expires_at=expires)
                .first()
            )
            if leased is not None:
                return leased
            # Taken over in between (only possible once the lease expired): lease again.
            continue
        if not open_rows.filter(free_for(user, now)).exists():
            return None


def lease_expiry(now: datetime) -> datetime:
    """When a lease taken now runs out (PREFLAB_LEASE_SECONDS)."""
    return now + timedelta(seconds=settings.PREFLAB_LEASE_SECONDS)


def time_taken_ms(
    leased_to_id: int | None, leased_at: datetime | None, user: User, now: datetime
) -> int | None:
    """Milliseconds from the annotator's lease to their answer; None when the lease was not
    theirs (it expired and was taken, or they answered without one)."""
    started = leased_at if leased_to_id == user.pk else None
    return int((now - started).total_seconds() * 1000) if started else None


def undo_cutoff() -> datetime:
    """Answers created after this moment may still be undone (PREFLAB_UNDO_SECONDS)."""
    return timezone.now() - timedelta(seconds=settings.PREFLAB_UNDO_SECONDS)


# Which open comparison comes next under each queue order, after the judges' doubts
# (judge_priority, written by judging jobs: higher first). Newest round and fewest votes are
# each the order of one partial index on open comparisons, so the lease subquery reads one
# index entry instead of sorting every open row. Random sorts the project's open rows (of the
# highest judge priority present) on each lease; the README says so.
QUEUE_ORDERING: dict[str, tuple[Any, ...]] = {
    QueueOrder.NEWEST_ROUND: (
        F("judge_priority").desc(),
        F("round_id").desc(),
        F("vote_count").desc(),
        "id",
    ),
    QueueOrder.FEWEST_VOTES: (F("judge_priority").desc(), "vote_count", "id"),
    QueueOrder.RANDOM: (F("judge_priority").desc(), "?"),
}

# Draws whether the next item is a gold item. A module-level generator so a test can seed it;
# drawn per lease (not per page load: a reload returns the held comparison unchanged).
gold_draws = random.Random()


def _unanswered_by(user: User, queryset: QuerySet[Comparison]) -> QuerySet[Comparison]:
    """Leave out comparisons the annotator voted on, skipped or flagged."""
    return queryset.exclude(votes__annotator=user).exclude(flags__user=user)


def _open_for(user: User, project: Project, *, gold: bool = False) -> QuerySet[Comparison]:
    """What may be served to this annotator: open regular comparisons, and gold items too
    when `gold` (a gold item's vote count never moves, see cast_vote, so it stays servable to
    every annotator once)."""
    servable = _servable(project, gold=gold)
    return _unanswered_by(user, Comparison.objects.filter(servable, project=project))


def _servable(project: Project, *, gold: bool) -> Q:
    """The row conditions of a servable comparison (repeated on the row by the claim)."""
    regular = Q(vote_count__lt=F("votes_target"), is_gold=False)
    if not project.judged_to_humans:
        # Judges agreed consistently: humans are not asked (Project.judged_to_humans off).
        regular &= Q(judge_decided=False)
    return regular | Q(is_gold=True) if gold else regular


def should_serve_gold(project: Project) -> bool:
    """One draw: is the next item an annotator gets a gold item (probability gold_rate)?"""
    return project.gold_rate > 0 and gold_draws.random() < project.gold_rate


def lease_next_comparison(
    user: User, project: Project, *, may_hold: bool = True
) -> Comparison | None:
    """Reserve the annotator's next comparison, or return None when nothing is left for them.

    A comparison qualifies when it still needs votes, this annotator has not voted on,
    skipped or flagged it, and no one else holds a live lease on it. An annotator who already
    holds a live lease gets the same comparison back (a reload must not skip work). An
    annotator holds at most one live lease per project; a caller that knows they hold none
    (cast_vote just released it) passes may_hold=False and saves the query that looks for it.

    Which one comes next follows the project's queue_order (QUEUE_ORDERING). With probability
    project.gold_rate the draw asks for a gold item: gold items the annotator has not answered
    then come first, served like any other comparison (blind: nothing on the page tells them
    apart). Gold items are never served outside such a draw.

    The claim (claim_next) is one conditional UPDATE of the first qualifying row, picked by a
    subquery in that order, then one SELECT reads it back with what the page shows.
    """
    related = ("prompt", "round", "completion_a", "completion_b")
    now = timezone.now()
    if may_hold:
        held = (
            _open_for(user, project, gold=True)
            .filter(leased_to=user, lease_expires_at__gt=now)
            .select_related(*related)
            .first()
        )
        if held is not None:
            return held
    gold = should_serve_gold(project)
    ordering = QUEUE_ORDERING.get(project.queue_order, QUEUE_ORDERING[QueueOrder.NEWEST_ROUND])
    if gold:
        ordering = (F("is_gold").desc(), *ordering)
    servable = _servable(project, gold=gold)
    return claim_next(
        user, project, _open_for(user, project, gold=gold), servable, ordering, now, related
    )


@dataclass(frozen=True)
class VoteInput:
    choice: str
    strength: str = ""
    rationale: str = ""
    # The annotation page's idempotency key for this submit; a retry sends the same one.
    client_key: str = ""


def cast_vote(user: User, project: Project, comparison_id: int, vote: VoteInput) -> Vote:
    """Record one annotator's vote on a comparison they hold, and release the lease.

    The vote counter moves with a conditional UPDATE inside the same transaction as the insert,
    so a comparison can never collect more votes than it needs, and the (comparison, annotator)
    unique constraint refuses a second vote from the same person.
    """
    if vote.choice not in Choice.values:
        raise VoteRejected(f"Unknown choice {vote.choice!r}.")
    decisive = vote.choice in DECISIVE_CHOICES
    if decisive and vote.strength not in Strength.values:
        raise VoteRejected("A decisive vote needs a strength: slight, clear or strong.")
    now = timezone.now()
    try:
        with transaction.atomic():
            comparison = (
                Comparison.objects.select_for_update()
                .filter(project=project, id=comparison_id)
                .first()
            )
            if comparison is None:
                raise VoteRejected("This comparison does not exist in this project.")
            held_by_someone_else = (
                comparison.leased_to_id not in (None, user.pk)
                and comparison.lease_expires_at is not None
                and comparison.lease_expires_at > now
            )
            if held_by_someone_else:
                raise VoteRejected(
                    "Your reservation of this comparison expired and another annotator took it."
                )
            release = RELEASED
            if comparison.is_gold:
                # A gold item's votes measure annotators, never the data set: they do not
                # count toward vote_count, so every annotator can answer it once and the
                # never_over_voted constraint still holds.
                Comparison.objects.filter(id=comparison.id, leased_to=user).update(**release)
                counted = 1
            else:
                counted = Comparison.objects.filter(
                    id=comparison.id, vote_count__lt=F("votes_target")
                ).update(vote_count=F("vote_count") + 1, **release)
            if not counted:
                raise VoteRejected("This comparison already has all the votes it needs.")
            chosen_id = rejected_id = None
            if decisive:
                a_id, b_id = comparison.completion_a_id, comparison.completion_b_id
                chosen_id, rejected_id = (a_id, b_id) if vote.choice == Choice.A else (b_id, a_id)
            taken_ms = time_taken_ms(comparison.leased_to_id, comparison.leased_at, user, now)
            # A second vote by the same annotator fails on the unique constraint here, and the
            # whole transaction, counter included, rolls back.
            created = Vote.objects.create(
                comparison=comparison,
                annotator=user,
                choice=vote.choice,
                strength=vote.strength if decisive else "",
                rationale=vote.rationale.strip(),
                chosen_id=chosen_id,
                rejected_id=rejected_id,
                left_side=left_side_for(user.pk, comparison.id),
                time_taken_ms=taken_ms,
                client_key=vote.client_key,
            )
    except IntegrityError:
        raise VoteRejected("You have already voted on this comparison.") from None
    logger.debug("vote %s by user %s on comparison %s", created.pk, user.pk, comparison.id)
    return created


def set_aside_comparison(
    user: User, project: Project, comparison_id: int, kind: str, reason: str, note: str = ""
) -> ItemFlag:
    """An annotator skips a comparison (never served to them again) or flags it for review.

    Either way it leaves their queue and their lease is released; a flag (kind "flag") also
    puts the comparison in the reviewers' queue (labeling.review) until a reviewer resolves it.
    """
    if kind not in FlagKind.values:
        raise VoteRejected(f"Unknown action {kind!r}; use skip or flag.")
    if reason not in FlagReason.values:
        raise VoteRejected(f"Unknown reason {reason!r}; use {', '.join(FlagReason.values)}.")
    try:
        with transaction.atomic():
            comparison = Comparison.objects.filter(project=project, id=comparison_id).first()
            if comparison is None:
                raise VoteRejected("This comparison does not exist in this project.")
            flag = ItemFlag.objects.create(
                comparison=comparison, user=user, kind=kind, reason=reason, note=note.strip()
            )
            release_lease(user, comparison)
    except IntegrityError:
        raise VoteRejected("You already skipped or flagged this comparison.") from None
    logger.info("user %s set comparison %s aside: %s (%s)", user.pk, comparison_id, kind, reason)
    return flag


def stored_vote(user: User, project: Project, client_key: str) -> Vote | None:
    """The vote an earlier submit with this client key stored, if any.

    A submit whose answer was lost (a timeout, a dropped connection, a 5xx after the commit)
    is retried with the same key; cast_vote then refuses it (the comparison is no longer the
    annotator's, or already voted), and this tells the caller the vote is in fact saved. Only
    looked up on that refusal, so a first submit costs no extra query."""
    if not client_key:
        return None
    return Vote.objects.filter(
        annotator=user, comparison__project=project, client_key=client_key
    ).first()


def get_undoable_vote(user: User, project: Project) -> Vote | None:
    """The annotator's latest vote in this project if it is still inside the undo window."""
    return (
        Vote.objects.filter(
            annotator=user, comparison__project=project, created_at__gt=undo_cutoff()
        )
        .order_by("-created_at", "-id")
        .first()
    )


def undo_last_vote(user: User, project: Project) -> Comparison:
    """Delete the annotator's latest vote (inside the undo window) and hand its comparison back.

    The comparison is leased to the annotator again unless someone else took it meanwhile.
    """
    now = timezone.now()
    with transaction.atomic():
        vote = get_undoable_vote(user, project)
        if vote is None:
            raise VoteRejected("There is no recent vote to undo.")
        comparison = Comparison.objects.select_for_update().get(id=vote.comparison_id)
        vote.delete()
        # The undone comparison becomes the annotator's one lease in this project.
        Comparison.objects.filter(project=project, leased_to=user).exclude(id=comparison.id).update(
            **RELEASED
        )
        if not comparison.is_gold:  # gold votes never counted (see cast_vote)
            Comparison.objects.filter(id=comparison.id).update(vote_count=F("vote_count") - 1)
        Comparison.objects.filter(id=comparison.id).filter(free_for(user, now)).update(
            leased_to=user,
            leased_at=now,
            lease_expires_at=lease_expiry(now),
        )
    comparison.refresh_from_db()
    logger.info("user %s undid vote on comparison %s", user.pk, comparison.id)
    return comparison


def release_lease(user: User, comparison: Comparison) -> None:
    Comparison.objects.filter(id=comparison.id, leased_to=user).update(**RELEASED)


def get_membership(user: User, project_id: int) -> Membership | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.select_related("project")
        .filter(user=user, project_id=project_id)
        .first()
    )


def add_member(project: Project, user: User, role: str) -> Membership:
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; use one of {', '.join(Role.values)}.")
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
    return membership


@dataclass(frozen=True)
class AnnotatorProgress:
    voted: int
    remaining: int


def count_of(queryset: QuerySet[Any]) -> Coalesce:
    """COUNT(*) of a queryset as a scalar subquery, for reading several counts in one query."""
    counted = queryset.order_by().annotate(n=Func(F("id"), function="COUNT")).values("n")
    return Coalesce(Subquery(counted[:1]), 0)


@dataclass(frozen=True)
class WorkbenchStatus:
    progress: AnnotatorProgress
    # The vote "Undo" would delete, if any is still inside the undo window.
    undoable_vote_id: int | None


def get_workbench_status(user: User, project: Project) -> WorkbenchStatus:
    """The annotator's progress and undoable vote, read in one query.

    "Left" is the project's open comparisons minus the open ones this annotator already
    voted on: index-friendly counts instead of a NOT IN over every open comparison.
    """
    mine = Vote.objects.filter(annotator=user, comparison__project=project)
    undoable = mine.filter(created_at__gt=undo_cutoff()).order_by("-created_at", "-id").values("id")
    # Work left counts what the lease query may serve (gold items are not work, and
    # judge-decided comparisons are not when the project keeps them from humans).
    still_open: dict[str, Any] = {
        "comparison__vote_count__lt": F("comparison__votes_target"),
        "comparison__is_gold": False,
    }
    servable: dict[str, Any] = {"vote_count__lt": F("votes_target"), "is_gold": False}
    if not project.judged_to_humans:
        still_open["comparison__judge_decided"] = False
        servable["judge_decided"] = False
    row = (
        Project.objects.filter(pk=project.pk)
        .annotate(
            open_comparisons=count_of(Comparison.objects.filter(project=project, **servable)),
            voted=count_of(mine),
            voted_open=count_of(mine.filter(**still_open)),
            # Skipped or flagged open items the annotator did not vote on: not theirs to do.
            set_aside=count_of(
                ItemFlag.objects.filter(user=user, comparison__project=project)
                .filter(**still_open)
                .exclude(comparison__votes__annotator=user)
            ),
            undoable=Subquery(undoable[:1]),
        )
        .values("open_comparisons", "voted", "voted_open", "set_aside", "undoable")
        .get()
    )
    remaining = row["open_comparisons"] - row["voted_open"] - row["set_aside"]
    return WorkbenchStatus(
        progress=AnnotatorProgress(voted=row["voted"], remaining=remaining),
        undoable_vote_id=row["undoable"],
    )


def get_annotator_progress(user: User, project: Project) -> AnnotatorProgress:
    """Votes cast and comparisons left for one annotator."""
    return get_workbench_status(user, project).progress


@dataclass(frozen=True)
class ProjectStats:
    prompts: int
    comparisons: int
    comparisons_done: int
    votes: int
    decisive_votes: int
    votes_needed: int
    per_annotator: list[dict[str, Any]]

    @property
    def percent_done(self) -> int:
        return round(100 * self.comparisons_done / self.comparisons) if self.comparisons else 0


def get_project_stats(project: Project) -> ProjectStats:
    # Gold items measure annotators; they are not work to be done.
    work = Comparison.objects.filter(project=project, is_gold=False)
    comparison_totals = work.aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(vote_count__gte=F("votes_target"))),
    )
    # People's votes (annotators, imports); AI judges' votes are counted on the judges page.
    votes = Vote.objects.filter(comparison__project=project).exclude(source=VoteSource.JUDGE)
    needed = work.aggregate(needed=Sum(F("votes_target") - F("vote_count")))["needed"] or 0
    per_annotator: list[dict[str, Any]] = [
        dict(row)
        for row in votes.filter(annotator__isnull=False)
        .values("annotator__username")
        .annotate(
            votes=Count("id"),
            decisive=Count("id", filter=Q(choice__in=DECISIVE_CHOICES)),
            ties=Count("id", filter=Q(choice=Choice.TIE)),
            both_bad=Count("id", filter=Q(choice=Choice.BOTH_BAD)),
        )
        .order_by("-votes", "annotator__username")
    ]
    return ProjectStats(
        prompts=project.prompts.count(),
        comparisons=comparison_totals["total"],
        comparisons_done=comparison_totals["done"],
        votes=votes.count(),
        decisive_votes=votes.filter(choice__in=DECISIVE_CHOICES).count(),
        votes_needed=needed,
        per_annotator=per_annotator,
    )
