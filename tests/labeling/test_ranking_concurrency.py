"""Many annotators rank at once against the real PostgreSQL: no ranking task over-collected, no
shared lease, nobody ranks a task twice (as tests/labeling/test_concurrent_annotators.py does
for pairs)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Count, F

from labeling.models import Ranking, RankingTask
from labeling.ranking_services import (
    RankingRejected,
    lease_next_ranking_task,
    skip_ranking_task,
    submit_ranking,
)
from tests.conftest import make_user, require_postgres
from tests.labeling.test_ranking_services import make_ranking_tasks, ranking_project

ANNOTATORS = 20
TASKS = 30
OVERLAP = 3


def _still_open_for(user: Any, project: Any) -> bool:
    return (
        RankingTask.objects.filter(project=project, vote_count__lt=F("votes_target"))
        .exclude(rankings__annotator=user)
        .exclude(skips__user=user)
        .exists()
    )


@pytest.mark.django_db(transaction=True)
def test_many_annotators_ranking_at_once_never_over_collect_or_share_a_lease():
    require_postgres()
    users = [make_user(f"rank_racer{i}") for i in range(ANNOTATORS)]
    project = ranking_project("Ranking race", users, overlap=OVERLAP)
    make_ranking_tasks(project, TASKS, k=4)
    start = threading.Barrier(ANNOTATORS)
    held_now: dict[int, int] = {}
    held_lock = threading.Lock()
    shared_leases: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    rejected: Counter[str] = Counter()
    retries_recognised = Counter[str]()

    def rank(user: Any, index: int) -> None:
        try:
            start.wait()
            submits = 0
            while True:
                task = lease_next_ranking_task(user, project)
                if task is None:
                    # Work others hold right now may come back; stop only when none is left.
                    if not _still_open_for(user, project):
                        break
                    time.sleep(0.005)
                    continue
                with held_lock:
                    if task.pk in held_now:
                        shared_leases.append((task.pk, held_now[task.pk], user.pk))
                    held_now[task.pk] = user.pk
                # Hold the lease a moment so a broken lock would let a rival grab it.
                time.sleep(0.002)
                with held_lock:
                    held_now.pop(task.pk, None)
                submits += 1
                # One annotator in five skips every fourth task it is served.
                if index % 5 == 0 and submits % 4 == 0:
                    skip_ranking_task(user, project, task.pk, "cannot_judge")
                    continue
                key = f"race-{user.pk}-{task.pk}"
                ranking = [submits % 4, [(submits + 1) % 4, (submits + 2) % 4], (submits + 3) % 4]
                try:
                    submit_ranking(user, project, task.pk, ranking, key)
                    # Every third submit is sent twice, as a retry after a lost answer.
                    if submits % 3 == 0:
                        again = submit_ranking(user, project, task.pk, ranking, key)
                        retries_recognised["repeated" if again.repeated else "stored"] += 1
                except RankingRejected as exc:
                    rejected[str(exc)] += 1
        except BaseException as exc:  # surfaced to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=rank, args=(u, i)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "an annotator never finished"
    assert not errors, errors
    assert not shared_leases
    assert not rejected, rejected
    assert set(retries_recognised) == {"repeated"}
    per_task = dict(Ranking.objects.values_list("task").annotate(n=Count("id")))
    assert all(n <= OVERLAP for n in per_task.values()), per_task
    assert Ranking.objects.count() == TASKS * OVERLAP
    for task in RankingTask.objects.filter(project=project):
        assert task.vote_count == per_task[task.pk] == OVERLAP
    duplicated = Ranking.objects.values("task", "annotator").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in duplicated)
    # Nobody ranked a task they skipped.
    assert not Ranking.objects.filter(task__skips__user=F("annotator")).exists()
    assert connection.vendor == "postgresql"
