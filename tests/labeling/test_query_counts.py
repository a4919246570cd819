"""How many queries the annotation loop costs: a vote submit that answers with the next
comparison, and a get-next. Each query is a database round trip and, mostly, Python ORM work
on the web server; the annotate load benchmark (bench/annotate_load.py) is CPU-bound on them,
so a change that adds one fails here rather than only slowing the benchmark down."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.models import Comparison, Vote
from labeling.services import (
    VoteInput,
    cast_vote,
    lease_next_comparison,
    left_side_for,
    undo_last_vote,
)

HX = {"HTTP_HX_REQUEST": "true"}

# Session, user, membership + project, the held lease (none on a first visit; a reload stops
# here), the claim and its read-back, progress + undo (one query).
GET_NEXT_QUERIES = 7
# Session, user, membership + project, the vote (lock, count, insert), the next lease (claim,
# read back: the vote released the held one, so no look for it), progress + undo.
SUBMIT_QUERIES = 9


_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _statements(context: CaptureQueriesContext) -> list[str]:
    """The queries, less transaction control (SQLite's BEGIN IMMEDIATE is a statement of its
    own, PostgreSQL's BEGIN is not), so both databases pin the same budget."""
    sql = (query["sql"] for query in context.captured_queries)
    return [s for s in sql if not s.upper().startswith(_TRANSACTION_CONTROL)]


def _sql(context: CaptureQueriesContext) -> str:
    return "\n".join(_statements(context))


@pytest.mark.django_db(transaction=True)
def test_get_next_and_vote_submit_stay_within_their_query_budgets(client, project, annotator):
    client.force_login(annotator)
    annotate = reverse("labeling:annotate", args=[project.id])
    with CaptureQueriesContext(connection) as get_next:
        page = client.get(annotate, **HX)
    assert page.status_code == 200
    assert len(_statements(get_next)) <= GET_NEXT_QUERIES, _sql(get_next)
    held = Comparison.objects.get(leased_to=annotator)

    # A reload hands back the same comparison, at the same price.
    with CaptureQueriesContext(connection) as reload:
        client.get(annotate, **HX)
    assert len(_statements(reload)) <= GET_NEXT_QUERIES, _sql(reload)
    assert Comparison.objects.get(leased_to=annotator).id == held.id

    with CaptureQueriesContext(connection) as submit:
        answer = client.post(
            reverse("labeling:vote", args=[project.id]),
            {
                "comparison": held.id,
                "choice": left_side_for(annotator.pk, held.id),
                "strength": "clear",
                "client_key": "first-vote-key",
            },
            **HX,
        )
    assert answer.status_code == 200
    assert b"Vote saved." in answer.content and b"Undo last vote" in answer.content
    assert len(_statements(submit)) <= SUBMIT_QUERIES, _sql(submit)
    assert Vote.objects.filter(annotator=annotator, comparison=held).count() == 1
    following = Comparison.objects.get(leased_to=annotator)
    assert following.id != held.id
    assert f'value="{following.id}"'.encode() in answer.content


@pytest.mark.django_db
def test_undo_leaves_the_annotator_one_lease_so_a_vote_needs_no_look_for_a_held_one(
    project, annotator
):
    """Submit skips the held-lease query because an annotator holds one lease at most: undo,
    which leases the undone comparison back, must release the one they were shown meanwhile."""
    first = lease_next_comparison(annotator, project)
    cast_vote(annotator, project, first.id, VoteInput("tie"))
    shown = lease_next_comparison(annotator, project, may_hold=False)
    assert shown is not None and shown.id != first.id
    undo_last_vote(annotator, project)
    assert list(Comparison.objects.filter(leased_to=annotator).values_list("id", flat=True)) == [
        first.id
    ]
    cast_vote(annotator, project, first.id, VoteInput("tie"))
    after = lease_next_comparison(annotator, project, may_hold=False)
    assert after is not None
    assert Comparison.objects.filter(leased_to=annotator).count() == 1
