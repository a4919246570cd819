from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings

from labeling.models import Choice, Comparison, Role, Side, Vote
from labeling.services import (
    VoteInput,
    VoteRejected,
    cast_vote,
    lease_next_comparison,
    left_side_for,
    undo_last_vote,
)
from tests.conftest import make_user


@pytest.mark.django_db
def test_decisive_vote_stores_the_preference_triple(project, annotator):
    comparison = lease_next_comparison(annotator, project)
    vote = cast_vote(annotator, project, comparison.id, VoteInput("B", "strong", " why "))
    assert vote.chosen == comparison.completion_b
    assert vote.rejected == comparison.completion_a
    assert vote.comparison.prompt == comparison.prompt
    assert vote.strength == "strong"
    assert vote.rationale == "why"
    assert vote.left_side == left_side_for(annotator.pk, comparison.id)
    assert vote.time_taken_ms is not None


@pytest.mark.django_db
def test_tie_and_both_bad_store_no_triple(project, annotator):
    for choice in (Choice.TIE, Choice.BOTH_BAD):
        comparison = lease_next_comparison(annotator, project)
        vote = cast_vote(annotator, project, comparison.id, VoteInput(choice, "strong"))
        assert vote.chosen is None and vote.rejected is None and vote.strength == ""


@pytest.mark.django_db
def test_decisive_vote_without_strength_is_refused(project, annotator):
    comparison = lease_next_comparison(annotator, project)
    with pytest.raises(VoteRejected, match="strength"):
        cast_vote(annotator, project, comparison.id, VoteInput("A", ""))
    assert not Vote.objects.exists()


@pytest.mark.django_db
def test_second_vote_by_the_same_annotator_is_refused(make_project):
    user = make_user("twice")
    project = make_project(pairs=1, overlap=3, members={user: Role.ANNOTATOR})
    comparison = lease_next_comparison(user, project)
    cast_vote(user, project, comparison.id, VoteInput("A", "clear"))
    with pytest.raises(VoteRejected, match="already voted"):
        cast_vote(user, project, comparison.id, VoteInput("B", "clear"))
    assert Comparison.objects.get().vote_count == 1


@pytest.mark.django_db
def test_database_refuses_two_votes_of_one_annotator(project, annotator):
    comparison = lease_next_comparison(annotator, project)
    cast_vote(annotator, project, comparison.id, VoteInput("tie"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(comparison=comparison, annotator=annotator, choice="tie", left_side="A")


@pytest.mark.django_db
def test_database_refuses_an_over_voted_comparison(project):
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.filter(project=project).update(vote_count=5)


@pytest.mark.django_db
def test_full_comparison_refuses_more_votes(make_project):
    first, second = make_user("first"), make_user("second")
    project = make_project(pairs=1, overlap=1, members={first: Role.ANNOTATOR})
    comparison = lease_next_comparison(first, project)
    cast_vote(first, project, comparison.id, VoteInput("A", "clear"))
    with pytest.raises(VoteRejected, match="all the votes"):
        cast_vote(second, project, comparison.id, VoteInput("A", "clear"))


@pytest.mark.django_db
def test_vote_on_a_comparison_someone_else_holds_is_refused(make_project):
    holder, other = make_user("holder"), make_user("other")
    project = make_project(pairs=1, overlap=2)
    comparison = lease_next_comparison(holder, project)
    with pytest.raises(VoteRejected, match="another annotator"):
        cast_vote(other, project, comparison.id, VoteInput("A", "clear"))


@pytest.mark.django_db
def test_left_side_is_stable_and_varies_across_comparisons():
    sides = {left_side_for(7, comparison_id) for comparison_id in range(40)}
    assert sides == {Side.A, Side.B}
    assert left_side_for(7, 3) == left_side_for(7, 3)


@pytest.mark.django_db
def test_undo_removes_the_vote_and_hands_the_comparison_back(project, annotator):
    comparison = lease_next_comparison(annotator, project)
    cast_vote(annotator, project, comparison.id, VoteInput("A", "clear"))
    returned = undo_last_vote(annotator, project)
    assert returned == comparison
    assert returned.vote_count == 0
    assert not Vote.objects.exists()
    assert lease_next_comparison(annotator, project) == comparison


@pytest.mark.django_db
def test_undo_is_refused_after_the_window(project, annotator):
    comparison = lease_next_comparison(annotator, project)
    vote = cast_vote(annotator, project, comparison.id, VoteInput("A", "clear"))
    Vote.objects.filter(id=vote.id).update(created_at=vote.created_at - timedelta(minutes=5))
    with override_settings(PREFLAB_UNDO_SECONDS=60), pytest.raises(VoteRejected):
        undo_last_vote(annotator, project)
    assert Vote.objects.count() == 1
