from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Comparison, Role
from labeling.services import VoteInput, cast_vote, lease_next_comparison
from tests.conftest import make_user


@pytest.mark.django_db
def test_next_comparison_is_leased_to_the_annotator(project, annotator):
    comparison = lease_next_comparison(annotator, project)
    assert comparison is not None
    comparison.refresh_from_db()
    assert comparison.leased_to == annotator
    assert comparison.lease_expires_at > timezone.now() + timedelta(minutes=9)


@pytest.mark.django_db
def test_reload_returns_the_same_held_comparison(project, annotator):
    first = lease_next_comparison(annotator, project)
    again = lease_next_comparison(annotator, project)
    assert first == again


@pytest.mark.django_db
def test_two_annotators_never_hold_the_same_comparison(make_project):
    users = [make_user(f"u{i}") for i in range(5)]
    project = make_project(pairs=5, members={u: Role.ANNOTATOR for u in users})
    leased = [lease_next_comparison(user, project) for user in users]
    assert len({c.id for c in leased}) == 5
    sixth = make_user("u6")
    assert lease_next_comparison(sixth, project) is None


@pytest.mark.django_db
def test_expired_lease_returns_the_comparison_to_the_pool(make_project):
    first, second = make_user("first"), make_user("second")
    project = make_project(pairs=1, members={first: Role.ANNOTATOR, second: Role.ANNOTATOR})
    held = lease_next_comparison(first, project)
    assert lease_next_comparison(second, project) is None
    Comparison.objects.filter(id=held.id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert lease_next_comparison(second, project) == held


@pytest.mark.django_db
def test_annotator_never_gets_a_comparison_they_voted_on(make_project):
    voter = make_user("voter")
    project = make_project(pairs=2, overlap=3, members={voter: Role.ANNOTATOR})
    seen = set()
    while (comparison := lease_next_comparison(voter, project)) is not None:
        assert comparison.id not in seen
        seen.add(comparison.id)
        cast_vote(voter, project, comparison.id, VoteInput("tie"))
    assert len(seen) == 2


@pytest.mark.django_db
def test_complete_comparisons_leave_the_pool(make_project):
    users = [make_user(f"a{i}") for i in range(3)]
    project = make_project(pairs=1, overlap=2, members={u: Role.ANNOTATOR for u in users})
    for user in users[:2]:
        comparison = lease_next_comparison(user, project)
        cast_vote(user, project, comparison.id, VoteInput("A", "clear"))
    assert lease_next_comparison(users[2], project) is None
    assert Comparison.objects.get().vote_count == 2


@pytest.mark.django_db
def test_comparisons_of_other_projects_are_never_leased(make_project):
    user = make_user("solo")
    mine = make_project("Mine", pairs=1, members={user: Role.ANNOTATOR})
    make_project("Theirs", pairs=3)
    comparison = lease_next_comparison(user, mine)
    assert comparison.project == mine
    cast_vote(user, mine, comparison.id, VoteInput("tie"))
    assert lease_next_comparison(user, mine) is None
