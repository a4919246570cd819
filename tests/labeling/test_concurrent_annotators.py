"""Many annotators at once against the real PostgreSQL: no over-voting, no shared lease."""

import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections
from django.db.models import Count, F

from labeling.models import Comparison, Role, Vote
from labeling.services import VoteInput, VoteRejected, cast_vote, lease_next_comparison
from tests.conftest import make_user, require_postgres

ANNOTATORS = 24


def _still_open_for(user, project) -> bool:
    return (
        Comparison.objects.filter(project=project, vote_count__lt=F("votes_target"))
        .exclude(votes__annotator=user)
        .exists()
    )


PAIRS = 40
OVERLAP = 3


@pytest.mark.django_db(transaction=True)
def test_many_annotators_at_once_never_over_vote_or_share_a_lease(make_project):
    require_postgres()
    users = [make_user(f"racer{i}") for i in range(ANNOTATORS)]
    project = make_project(
        "Race", pairs=PAIRS, overlap=OVERLAP, members={u: Role.ANNOTATOR for u in users}
    )
    start = threading.Barrier(ANNOTATORS)
    held_now: dict[int, int] = {}
    held_lock = threading.Lock()
    shared_leases: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    rejected = Counter()

    def annotate(user) -> None:
        try:
            start.wait()
            while True:
                comparison = lease_next_comparison(user, project)
                if comparison is None:
                    # Work others hold right now may come back; stop only when none is left.
                    if not _still_open_for(user, project):
                        break
                    time.sleep(0.005)
                    continue
                with held_lock:
                    if comparison.id in held_now:
                        shared_leases.append((comparison.id, held_now[comparison.id], user.id))
                    held_now[comparison.id] = user.id
                # Hold the lease a moment so a broken lock would let a rival grab it.
                time.sleep(0.002)
                with held_lock:
                    held_now.pop(comparison.id, None)
                try:
                    cast_vote(user, project, comparison.id, VoteInput("A", "clear"))
                except VoteRejected as exc:
                    rejected[str(exc)] += 1
        except BaseException as exc:  # surfaced to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not shared_leases
    assert not rejected, rejected
    per_comparison = Vote.objects.values("comparison").annotate(n=Count("id"))
    assert all(row["n"] <= OVERLAP for row in per_comparison)
    assert Vote.objects.count() == PAIRS * OVERLAP
    assert all(c.vote_count == OVERLAP for c in Comparison.objects.filter(project=project))
    duplicated = Vote.objects.values("comparison", "annotator").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in duplicated)
    assert connection.vendor == "postgresql"
