"""Ranking tasks are leased, submitted, undone and skipped with the guarantees pairs have."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Max
from django.utils import timezone

from labeling.models import (
    Completion,
    FlagReason,
    Project,
    Prompt,
    QueueOrder,
    Ranking,
    RankingSkip,
    RankingTask,
    Role,
    Round,
)
from labeling.ranking_services import (
    RankingRejected,
    get_ranking_status,
    lease_next_ranking_task,
    list_items_in_display_order,
    skip_ranking_task,
    submit_ranking,
    undo_last_ranking,
)
from labeling.rankings import TaskSpec, create_ranking_tasks, display_order_for
from labeling.services import add_member
from tests.conftest import make_user


def make_ranking_tasks(
    project: Project, count: int, *, k: int = 4, overlap: int | None = None, prefix: str = "Rank"
) -> list[RankingTask]:
    """`count` ranking tasks of K responses in a new round, through create_ranking_tasks."""
    latest = project.rounds.aggregate(latest=Max("number"))["latest"] or 0
    round_ = Round.objects.create(project=project, number=latest + 1, source="test rankings")
    specs = []
    for index in range(count):
        prompt = Prompt.objects.create(project=project, text=f"{prefix} {index}: which is best?")
        completions = [
            Completion.objects.create(
                prompt=prompt, text=f"Answer {letter} to {prefix} {index}.", model_name=letter
            )
            for letter in "ABCDEFGH"[:k]
        ]
        specs.append(TaskSpec(prompt, completions, votes_target=overlap or project.overlap))
    return create_ranking_tasks(round_, specs)


def ranking_project(name: str, users: list[Any], *, overlap: int = 1) -> Project:
    project = Project.objects.create(name=name, overlap=overlap)
    for user in users:
        add_member(project, user, Role.ANNOTATOR)
    return project


@pytest.fixture
def two(db: None) -> tuple[Any, Any]:
    return make_user("ranker_ann"), make_user("ranker_bo")


def test_a_lease_reserves_a_task_and_a_reload_gets_the_same_one_back(two):
    ann, _ = two
    project = ranking_project("Lease", [ann])
    make_ranking_tasks(project, 3)
    first = lease_next_ranking_task(ann, project)
    assert first is not None and first.leased_to_id == ann.pk
    assert first.lease_expires_at > timezone.now()
    again = lease_next_ranking_task(ann, project)
    assert again is not None and again.pk == first.pk
    assert RankingTask.objects.filter(leased_to=ann).count() == 1


def test_two_annotators_never_hold_the_same_task(two):
    ann, bo = two
    project = ranking_project("Two holders", [ann, bo], overlap=2)
    make_ranking_tasks(project, 1)
    assert lease_next_ranking_task(ann, project) is not None
    # The one task is held by ann: bo gets nothing until it is released or ranked.
    assert lease_next_ranking_task(bo, project) is None


def test_an_expired_lease_is_free_for_others(two):
    ann, bo = two
    project = ranking_project("Expired", [ann, bo])
    (task,) = make_ranking_tasks(project, 1)
    lease_next_ranking_task(ann, project)
    RankingTask.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    taken = lease_next_ranking_task(bo, project)
    assert taken is not None and taken.pk == task.pk and taken.leased_to_id == bo.pk
    with pytest.raises(RankingRejected, match="another annotator took it"):
        submit_ranking(ann, project, task.pk, [0, 1, 2, 3])


def test_overlap_collects_distinct_annotators_and_never_more(two):
    ann, bo = two
    cy = make_user("ranker_cy")
    project = ranking_project("Overlap", [ann, bo, cy], overlap=2)
    (task,) = make_ranking_tasks(project, 1)
    for user in (ann, bo):
        leased = lease_next_ranking_task(user, project)
        assert leased is not None and leased.pk == task.pk
        submit_ranking(user, project, task.pk, [3, 2, 1, 0])
    task.refresh_from_db()
    assert task.vote_count == 2 and task.is_complete and task.leased_to is None
    assert lease_next_ranking_task(cy, project) is None
    with pytest.raises(RankingRejected, match="already has all the rankings it needs"):
        submit_ranking(cy, project, task.pk, [0, 1, 2, 3])
    task.refresh_from_db()
    assert task.vote_count == 2 and task.rankings.count() == 2


def test_a_ranked_task_is_never_served_to_the_same_annotator_again(two):
    ann, _ = two
    project = ranking_project("Never twice", [ann], overlap=3)
    tasks = make_ranking_tasks(project, 2)
    served = []
    while (task := lease_next_ranking_task(ann, project)) is not None:
        served.append(task.pk)
        submit_ranking(ann, project, task.pk, [0, [1, 2], 3])
    assert sorted(served) == sorted(t.pk for t in tasks)
    with pytest.raises(RankingRejected, match="already ranked this task"):
        submit_ranking(ann, project, tasks[0].pk, [0, 1, 2, 3])
    assert Ranking.objects.filter(annotator=ann).count() == 2
    assert set(RankingTask.objects.values_list("vote_count", flat=True)) == {1}


def test_submit_stores_the_canonical_ranking_display_order_and_time(two):
    ann, _ = two
    project = ranking_project("Stored", [ann])
    make_ranking_tasks(project, 1, k=5)
    task = lease_next_ranking_task(ann, project)
    assert task is not None
    RankingTask.objects.filter(pk=task.pk).update(leased_at=timezone.now() - timedelta(seconds=3))
    # A tie group's members are stored in ascending order, whatever order they came in.
    result = submit_ranking(ann, project, task.pk, [4, [3, 0], 1, 2], "key-first-submit")
    stored = Ranking.objects.get(pk=result.ranking.pk)
    assert not result.repeated
    assert stored.ranking == [4, [0, 3], 1, 2]
    assert stored.display_order == display_order_for(ann.pk, task.pk, 5)
    assert sorted(stored.display_order) == [0, 1, 2, 3, 4]
    assert stored.time_taken_ms is not None and stored.time_taken_ms >= 3000
    assert stored.client_key == "key-first-submit" and stored.source == "human"
    task.refresh_from_db()
    assert task.vote_count == 1 and task.leased_to is None


def test_the_display_order_is_stable_per_annotator_and_differs_between_them(two):
    ann, bo = two
    project = ranking_project("Display order", [ann, bo])
    tasks = make_ranking_tasks(project, 6)
    for task in tasks:
        order = [item.position for item in list_items_in_display_order(ann, task)]
        assert order == display_order_for(ann.pk, task.pk, 4)
        assert order == [item.position for item in list_items_in_display_order(ann, task)]
    # A keyed shuffle: over six tasks two annotators see at least one task differently.
    assert any(
        display_order_for(ann.pk, t.pk, 4) != display_order_for(bo.pk, t.pk, 4) for t in tasks
    )


@pytest.mark.parametrize(
    "ranking, words",
    [
        ([0, 1, 2], "index 3 is missing"),
        ([0, 1, 2, 4], "index 4 is out of range"),
        ([0, 1, 1, 3], "index 1 appears twice"),
        ([[0, 1, 2, 3]], "ties all responses"),
        ([0, [1, [2, 3]]], "more than one level deep"),
        ([0, [], 1, 2, 3], "empty tie group"),
        ("0,1,2,3", "must be a non-empty list"),
        ([0, 1, "2", 3], "must be integers"),
        ([0, 1, True, 3], "must be integers"),
    ],
)
def test_an_invalid_ranking_is_refused_with_what_is_wrong(two, ranking, words):
    ann, _ = two
    project = ranking_project("Invalid", [ann])
    make_ranking_tasks(project, 1)
    task = lease_next_ranking_task(ann, project)
    assert task is not None
    with pytest.raises(RankingRejected) as refused:
        submit_ranking(ann, project, task.pk, ranking, "key-invalid")
    assert words in str(refused.value)
    assert f"task {task.pk}" in str(refused.value)
    task.refresh_from_db()
    assert task.vote_count == 0 and task.leased_to_id == ann.pk
    assert not Ranking.objects.exists()


def test_a_task_of_another_project_is_refused(two):
    ann, _ = two
    project = ranking_project("Mine", [ann])
    other = ranking_project("Theirs", [])
    (theirs,) = make_ranking_tasks(other, 1)
    with pytest.raises(RankingRejected, match="does not exist in this project"):
        submit_ranking(ann, project, theirs.pk, [0, 1, 2, 3])
    with pytest.raises(RankingRejected, match="does not exist in this project"):
        skip_ranking_task(ann, project, theirs.pk, FlagReason.OTHER)


def test_a_retried_submit_with_the_same_key_is_recognised_as_stored(two):
    ann, _ = two
    project = ranking_project("Retry", [ann], overlap=2)
    make_ranking_tasks(project, 2)
    task = lease_next_ranking_task(ann, project)
    assert task is not None
    first = submit_ranking(ann, project, task.pk, [1, 0, 2, 3], "retry-key-1234")
    # The answer was lost; the page sends the same submit again.
    again = submit_ranking(ann, project, task.pk, [1, 0, 2, 3], "retry-key-1234")
    assert again.repeated and again.ranking.pk == first.ranking.pk
    task.refresh_from_db()
    assert task.vote_count == 1 and task.rankings.count() == 1
    # The same key on another task is not a retry: refused, nothing stored.
    following = lease_next_ranking_task(ann, project)
    assert following is not None and following.pk != task.pk
    with pytest.raises(RankingRejected, match=f"already used for ranking task {task.pk}"):
        submit_ranking(ann, project, following.pk, [0, 1, 2, 3], "retry-key-1234")
    following.refresh_from_db()
    assert following.vote_count == 0


def test_undo_deletes_the_last_ranking_and_hands_the_task_back(two):
    ann, _ = two
    project = ranking_project("Undo", [ann])
    tasks = make_ranking_tasks(project, 3)
    first = lease_next_ranking_task(ann, project)
    assert first is not None
    submit_ranking(ann, project, first.pk, [0, 1, 2, 3])
    second = lease_next_ranking_task(ann, project)
    assert second is not None and second.pk != first.pk
    assert get_ranking_status(ann, project).undoable_ranking_id is not None

    back = undo_last_ranking(ann, project)
    assert back.pk == first.pk and back.vote_count == 0 and back.leased_to_id == ann.pk
    assert not Ranking.objects.exists()
    # The undone task is the annotator's one ranking lease now; the other went back.
    assert list(RankingTask.objects.filter(leased_to=ann).values_list("pk", flat=True)) == [
        first.pk
    ]
    again = lease_next_ranking_task(ann, project)
    assert again is not None and again.pk == first.pk
    with pytest.raises(RankingRejected, match="no recent ranking to undo"):
        undo_last_ranking(ann, project)
    assert len(tasks) == 3


def test_undo_is_refused_after_the_window(two, settings):
    ann, _ = two
    settings.PREFLAB_UNDO_SECONDS = 60
    project = ranking_project("Undo window", [ann])
    make_ranking_tasks(project, 1)
    task = lease_next_ranking_task(ann, project)
    assert task is not None
    ranking = submit_ranking(ann, project, task.pk, [3, 1, 2, 0]).ranking
    Ranking.objects.filter(pk=ranking.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert get_ranking_status(ann, project).undoable_ranking_id is None
    with pytest.raises(RankingRejected, match="no recent ranking to undo"):
        undo_last_ranking(ann, project)
    assert Ranking.objects.filter(pk=ranking.pk).exists()


def test_undo_gives_no_lease_when_someone_else_took_the_task(two):
    ann, bo = two
    project = ranking_project("Undo taken", [ann, bo], overlap=2)
    (task,) = make_ranking_tasks(project, 1)
    lease_next_ranking_task(ann, project)
    submit_ranking(ann, project, task.pk, [0, 1, 2, 3])
    assert lease_next_ranking_task(bo, project) is not None
    back = undo_last_ranking(ann, project)
    assert back.vote_count == 0 and back.leased_to_id == bo.pk


def test_a_skipped_task_is_released_and_never_served_to_that_annotator(two):
    ann, bo = two
    project = ranking_project("Skip", [ann, bo])
    (task,) = make_ranking_tasks(project, 1)
    assert lease_next_ranking_task(ann, project) is not None
    with pytest.raises(RankingRejected, match="Unknown reason 'boring'"):
        skip_ranking_task(ann, project, task.pk, "boring")
    skip = skip_ranking_task(ann, project, task.pk, FlagReason.UNREADABLE, "  garbled  ")
    assert skip.note == "garbled" and skip.reason == FlagReason.UNREADABLE
    task.refresh_from_db()
    assert task.leased_to is None and task.vote_count == 0
    assert lease_next_ranking_task(ann, project) is None
    with pytest.raises(RankingRejected, match="already skipped"):
        skip_ranking_task(ann, project, task.pk, FlagReason.OTHER)
    assert RankingSkip.objects.count() == 1
    # Others still get it.
    leased = lease_next_ranking_task(bo, project)
    assert leased is not None and leased.pk == task.pk


def test_the_status_counts_tasks_rankings_and_what_is_left(two):
    ann, bo = two
    project = ranking_project("Status", [ann, bo])
    tasks = make_ranking_tasks(project, 4)
    assert get_ranking_status(ann, project).remaining == 4
    task = lease_next_ranking_task(ann, project)
    assert task is not None
    submit_ranking(ann, project, task.pk, [0, 1, 2, 3])
    skipped = lease_next_ranking_task(ann, project)
    assert skipped is not None
    skip_ranking_task(ann, project, skipped.pk, FlagReason.CANNOT_JUDGE)
    status = get_ranking_status(ann, project)
    assert (status.tasks, status.ranked, status.remaining) == (4, 1, 2)
    assert status.undoable_ranking_id == Ranking.objects.get().pk
    # bo skipped nothing: only the task ann finished (overlap 1) is gone for bo.
    assert get_ranking_status(bo, project).remaining == 3
    assert len(tasks) == 4


@pytest.mark.parametrize("order", [QueueOrder.NEWEST_ROUND, QueueOrder.FEWEST_VOTES])
def test_the_queue_order_picks_the_next_task(two, order):
    ann, bo = two
    project = ranking_project(f"Order {order}", [ann, bo], overlap=2)
    project.queue_order = order
    project.save()
    older = make_ranking_tasks(project, 2, prefix="Old")
    newer = make_ranking_tasks(project, 2, prefix="New")
    # bo ranks the second older task once: it has the most rankings.
    lease = lease_next_ranking_task(bo, project)
    assert lease is not None
    RankingTask.objects.filter(pk=lease.pk).update(leased_to=None, lease_expires_at=None)
    submit_ranking(bo, project, older[1].pk, [0, 1, 2, 3])
    first = lease_next_ranking_task(ann, project)
    assert first is not None
    if order == QueueOrder.NEWEST_ROUND:
        assert first.round_id == newer[0].round_id
    else:
        assert first.pk == older[0].pk  # no rankings yet, lowest id


def test_random_order_serves_every_task_once(two):
    ann, _ = two
    project = ranking_project("Random", [ann])
    project.queue_order = QueueOrder.RANDOM
    project.save()
    tasks = make_ranking_tasks(project, 4, k=3)
    served = []
    while (task := lease_next_ranking_task(ann, project)) is not None:
        served.append(task.pk)
        submit_ranking(ann, project, task.pk, [2, 1, 0])
    assert sorted(served) == sorted(t.pk for t in tasks)
