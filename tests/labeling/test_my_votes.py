"""An annotator sees their own recent votes, as they saw them, and nobody else's; the workbench
names the round."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Comparison, Role
from labeling.services import VoteInput, add_member, cast_vote, lease_next_comparison, left_side_for
from tests.conftest import make_user

HX = {"HTTP_HX_REQUEST": "true"}


def vote_left(user, project, rationale: str = "") -> Comparison:
    comparison = lease_next_comparison(user, project)
    assert comparison is not None
    left = left_side_for(user.pk, comparison.id)
    cast_vote(user, project, comparison.id, VoteInput(left, "strong", rationale))
    return comparison


@pytest.mark.django_db
def test_my_votes_lists_mine_as_i_saw_them_and_never_anyone_elses(
    client, project, annotator, reviewer
):
    add_member(project, reviewer, Role.ANNOTATOR)
    vote_left(annotator, project, rationale="mine, clearly")
    vote_left(reviewer, project, rationale="someone else's reason")
    client.force_login(annotator)
    page = client.get(reverse("labeling:my_votes")).content.decode()
    assert "mine, clearly" in page
    assert "Left is better (strongly)" in page
    assert "someone else&#x27;s reason" not in page and "someone else's reason" not in page


@pytest.mark.django_db
def test_my_votes_leaves_out_projects_i_have_left(client, project, annotator):
    vote_left(annotator, project, rationale="before I left")
    project.memberships.filter(user=annotator).delete()
    client.force_login(annotator)
    page = client.get(reverse("labeling:my_votes")).content.decode()
    assert "before I left" not in page
    assert "You have not voted yet." in page


@pytest.mark.django_db
def test_my_votes_needs_login(client):
    response = client.get(reverse("labeling:my_votes"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_workbench_names_the_round_and_announces_the_comparison(client, project, annotator):
    client.force_login(annotator)
    fragment = client.get(reverse("labeling:annotate", args=[project.id]), **HX).content.decode()
    assert 'data-testid="round">Round 1<' in fragment
    assert "New comparison, round 1:" in fragment


@pytest.mark.django_db
def test_account_menu_links_recent_votes_and_tokens(client, annotator):
    client.force_login(make_user("menu_mo"))
    page = client.get(reverse("labeling:project_list")).content.decode()
    assert "<summary>Account</summary>" in page
    assert reverse("labeling:my_votes") in page and reverse("api_tokens:list") in page


@pytest.mark.django_db
def test_import_form_defaults_to_pairs_and_hints_at_the_kind(client, project, project_admin):
    client.force_login(project_admin)
    page = client.get(reverse("labeling:project_detail", args=[project.id])).content.decode()
    assert '<option value="pairs" selected>' in page
    pairs = b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n'
    upload = SimpleUploadedFile("pairs.jsonl", pairs)
    response = client.post(
        reverse("labeling:import", args=[project.id]), {"kind": "preferences", "file": upload}
    )
    assert response.status_code == 400
    assert "looks like pairs (response_a/response_b): choose the Pairs kind" in (
        response.content.decode()
    )
