"""Ranking work: leasing ranking tasks, submitting, undoing and skipping rankings.

The same guarantees as pairs (labeling.services), through the same helpers: one live lease per
annotator and project, claimed with one conditional UPDATE (claim_next); a task never collects
more rankings than its votes_target (a conditional counter UPDATE in the submit's
transaction); one ranking per annotator and task; a retried submit (same client_key) is
recognised as stored; an undo window; skips with a reason. docs/rankings.md describes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Subquery
from django.utils import timezone

from labeling.models import (
    FlagReason,
    Project,
    QueueOrder,
    Ranking,
    RankingItem,
    RankingSkip,
    RankingTask,
)
from labeling.rankings import display_order_for
from labeling.services import (
    RELEASED,
    VoteRejected,
    claim_next,
    count_of,
    free_for,
    lease_expiry,
    time_taken_ms,
    undo_cutoff,
)
from training.engine.rankings import RankingError, canonical_ranking

logger = logging.getLogger(__name__)


class RankingRejected(VoteRejected):
    """The ranking (or skip, or undo) cannot be recorded; the message is shown to the annotator.

    A VoteRejected, so code that turns refused votes into answers handles it too.
    """


# Which open task comes next under each queue order, as QUEUE_ORDERING for comparisons (ranking
# tasks have no judges' priority). Newest round and fewest votes are the orders of the two
# partial indexes on open ranking tasks.
RANKING_QUEUE_ORDERING: dict[str, tuple[Any, ...]] = {
    QueueOrder.NEWEST_ROUND: (F("round_id").desc(), F("vote_count").desc(), "id"),
    QueueOrder.FEWEST_VOTES: ("vote_count", "id"),
    QueueOrder.RANDOM: ("?",),
}

# A task that still needs rankings (repeated on the row by the claim).
_SERVABLE = Q(vote_count__lt=F("votes_target"))
_RELATED = ("prompt", "round")


def _open_tasks_for(user: User, project: Project) -> QuerySet[RankingTask]:
    """Tasks of the project that still need rankings and this annotator neither ranked nor
    skipped."""
    return (
        RankingTask.objects.filter(_SERVABLE, project=project)
        .exclude(rankings__annotator=user)
        .exclude(skips__user=user)
    )


def lease_next_ranking_task(
    user: User, project: Project, *, may_hold: bool = True
) -> RankingTask | None:
    """Reserve the annotator's next ranking task, or return None when nothing is left for them.

    A task qualifies when it still needs rankings, this annotator has neither ranked nor
    skipped it, and no one else holds a live lease on it. A live lease the annotator already
    holds comes back unchanged (a reload must not skip work); may_hold=False (the caller just
    released it) saves the query that looks for it. The order is the project's queue_order
    (RANKING_QUEUE_ORDERING); the claim is labeling.services.claim_next, as for comparisons.
    Ranking leases are separate from comparison leases: one of each per project at most.
    """
    now = timezone.now()
    if may_hold:
        held = (
            _open_tasks_for(user, project)
            .filter(leased_to=user, lease_expires_at__gt=now)
            .select_related(*_RELATED)
            .first()
        )
        if held is not None:
            return held
    ordering = RANKING_QUEUE_ORDERING.get(
        project.queue_order, RANKING_QUEUE_ORDERING[QueueOrder.NEWEST_ROUND]
    )
    return claim_next(
        user, project, _open_tasks_for(user, project), _SERVABLE, ordering, now, _RELATED
    )


def list_items_in_display_order(user: User, task: RankingTask) -> list[RankingItem]:
    """The task's items top to bottom as this annotator is shown them (display_order_for)."""
    items = {item.position: item for item in task.items.select_related("completion")}
    if len(items) != task.size:
        raise RankingRejected(
            f"Ranking task {task.pk} has {len(items)} responses but should have {task.size}."
        )
    return [items[p] for p in display_order_for(user.pk, task.pk, task.size)]


@dataclass(frozen=True)
class SubmittedRanking:
    ranking: Ranking
    # True when this submit repeated one already stored (same client_key): a retry whose first
    # answer was lost. The caller reports success without storing anything.
    repeated: bool = False


def submit_ranking(
    user: User, project: Project, task_id: int, ranking: Any, client_key: str = ""
) -> SubmittedRanking:
    """Record one annotator's ranking of a task they hold, and release the lease.

    `ranking` is best first over the task's canonical positions, a nested list a tie group
    (training.engine.rankings.parse_ranking); it is refused with a message saying what is
    wrong. The stored Ranking carries the canonical form, the display order this annotator
    saw, and the time from lease to submit. The counter moves with a conditional UPDATE inside
    the insert's transaction, so a task never collects more rankings than it needs, and the
    (task, annotator) constraint refuses a second ranking by the same person.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            task = (
                RankingTask.objects.select_for_update().filter(project=project, id=task_id).first()
            )
            if task is None:
                raise RankingRejected("This ranking task does not exist in this project.")
            try:
                canonical = canonical_ranking(ranking, task.size)
            except RankingError as exc:
                raise RankingRejected(f"Ranking of task {task.pk} refused: {exc}.") from None
            held_by_someone_else = (
                task.leased_to_id not in (None, user.pk)
                and task.lease_expires_at is not None
                and task.lease_expires_at > now
            )
            if held_by_someone_else:
                raise RankingRejected(
                    "Your reservation of this ranking task expired and another annotator took it."
                )
            counted = RankingTask.objects.filter(
                id=task.pk, vote_count__lt=F("votes_target")
            ).update(vote_count=F("vote_count") + 1, **RELEASED)
            if not counted:
                raise RankingRejected("This ranking task already has all the rankings it needs.")
            # A second ranking by the same annotator (or a reused client key) fails on a
            # unique constraint here, and the whole transaction, counter included, rolls back.
            created = Ranking.objects.create(
                task=task,
                annotator=user,
                ranking=canonical,
                display_order=display_order_for(user.pk, task.pk, task.size),
                time_taken_ms=time_taken_ms(task.leased_to_id, task.leased_at, user, now),
                client_key=client_key,
            )
    except (RankingRejected, IntegrityError) as exc:
        stored = stored_ranking(user, project, client_key)
        if stored is not None and stored.task_id == task_id:
            return SubmittedRanking(stored, repeated=True)
        if stored is not None:
            raise RankingRejected(
                f"This submit's key was already used for ranking task {stored.task_id}; "
                "reload the page and rank again."
            ) from None
        if isinstance(exc, RankingRejected):
            raise
        raise RankingRejected("You have already ranked this task.") from None
    logger.debug("ranking %s by user %s on task %s", created.pk, user.pk, task_id)
    return SubmittedRanking(created)


def stored_ranking(user: User, project: Project, client_key: str) -> Ranking | None:
    """The ranking an earlier submit with this client key stored, if any (see stored_vote).

    Only looked up when a submit is refused, so a first submit costs no extra query."""
    if not client_key:
        return None
    return Ranking.objects.filter(
        annotator=user, task__project=project, client_key=client_key
    ).first()


def get_undoable_ranking(user: User, project: Project) -> Ranking | None:
    """The annotator's latest ranking in this project if it is still inside the undo window."""
    return (
        Ranking.objects.filter(annotator=user, task__project=project, created_at__gt=undo_cutoff())
        .order_by("-created_at", "-id")
        .first()
    )


def undo_last_ranking(user: User, project: Project) -> RankingTask:
    """Delete the annotator's latest ranking (inside PREFLAB_UNDO_SECONDS) and hand the task
    back: it is leased to the annotator again, as their one ranking lease in the project,
    unless someone else took it meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        undone = get_undoable_ranking(user, project)
        if undone is None:
            raise RankingRejected("There is no recent ranking to undo.")
        task = RankingTask.objects.select_for_update().get(id=undone.task_id)
        undone.delete()
        RankingTask.objects.filter(project=project, leased_to=user).exclude(id=task.pk).update(
            **RELEASED
        )
        RankingTask.objects.filter(id=task.pk).update(vote_count=F("vote_count") - 1)
        RankingTask.objects.filter(id=task.pk).filter(free_for(user, now)).update(
            leased_to=user, leased_at=now, lease_expires_at=lease_expiry(now)
        )
    task.refresh_from_db()
    logger.info("user %s undid ranking on task %s", user.pk, task.pk)
    return task


def skip_ranking_task(
    user: User, project: Project, task_id: int, reason: str, note: str = ""
) -> RankingSkip:
    """An annotator sets a ranking task aside with a reason: it is never served to them again,
    and their lease on it is released."""
    if reason not in FlagReason.values:
        raise RankingRejected(f"Unknown reason {reason!r}; use {', '.join(FlagReason.values)}.")
    try:
        with transaction.atomic():
            task = RankingTask.objects.filter(project=project, id=task_id).first()
            if task is None:
                raise RankingRejected("This ranking task does not exist in this project.")
            skip = RankingSkip.objects.create(
                task=task, user=user, reason=reason, note=note.strip()
            )
            release_ranking_lease(user, task)
    except IntegrityError:
        raise RankingRejected("You already skipped this ranking task.") from None
    logger.info("user %s skipped ranking task %s (%s)", user.pk, task_id, reason)
    return skip


def release_ranking_lease(user: User, task: RankingTask) -> None:
    RankingTask.objects.filter(id=task.pk, leased_to=user).update(**RELEASED)


@dataclass(frozen=True)
class RankingStatus:
    tasks: int  # the project's ranking tasks, done or not
    tasks_done: int  # those with all the rankings they need
    ranked: int  # this annotator's rankings in the project
    remaining: int  # open tasks this annotator may still be served
    # The ranking "Undo" would delete, if any is still inside the undo window.
    undoable_ranking_id: int | None


def get_ranking_status(user: User, project: Project) -> RankingStatus:
    """The annotator's ranking figures, read in one query (as get_workbench_status).

    "Remaining" is the project's open tasks minus the open ones this annotator ranked or
    skipped: index-friendly counts instead of a NOT IN over every open task.
    """
    mine = Ranking.objects.filter(annotator=user, task__project=project)
    undoable = mine.filter(created_at__gt=undo_cutoff()).order_by("-created_at", "-id")
    still_open: dict[str, Any] = {"task__vote_count__lt": F("task__votes_target")}
    tasks = RankingTask.objects.filter(project=project)
    row = (
        Project.objects.filter(pk=project.pk)
        .annotate(
            tasks=count_of(tasks),
            tasks_done=count_of(tasks.filter(vote_count__gte=F("votes_target"))),
            open_tasks=count_of(tasks.filter(_SERVABLE)),
            ranked=count_of(mine),
            ranked_open=count_of(mine.filter(**still_open)),
            skipped_open=count_of(
                RankingSkip.objects.filter(user=user, task__project=project)
                .filter(**still_open)
                .exclude(task__rankings__annotator=user)
            ),
            undoable=Subquery(undoable.values("id")[:1]),
        )
        .values(
            "tasks", "tasks_done", "open_tasks", "ranked", "ranked_open", "skipped_open", "undoable"
        )
        .get()
    )
    return RankingStatus(
        tasks=row["tasks"],
        tasks_done=row["tasks_done"],
        ranked=row["ranked"],
        remaining=row["open_tasks"] - row["ranked_open"] - row["skipped_open"],
        undoable_ranking_id=row["undoable"],
    )
