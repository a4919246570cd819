"""The ranking page and its POSTs: page and htmx fragment, refusals, outsiders, no-script form."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from labeling.models import Completion, Ranking, RankingSkip, RankingTask, Role
from labeling.rankings import display_order_for
from tests.conftest import make_user
from tests.labeling.test_ranking_services import make_ranking_tasks, ranking_project

HX = {"HTTP_HX_REQUEST": "true"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranker():
    return make_user("view_ranker")


@pytest.fixture
def ranked_project(ranker):
    project = ranking_project("Rank views", [ranker])
    make_ranking_tasks(project, 2)
    return project


def test_get_gives_the_page_and_htmx_gives_the_fragment(client, ranker, ranked_project):
    client.force_login(ranker)
    url = reverse("labeling:rank", args=[ranked_project.id])
    page = client.get(url)
    assert page.status_code == 200 and b"<html" in page.content
    assert b'id="rankbench"' in page.content and b"Sortable.min.js" in page.content
    task = RankingTask.objects.get(leased_to=ranker)
    body = page.content.decode()
    shown = [int(chunk.split('"')[0]) for chunk in body.split('data-position="')[1:]]
    assert shown == display_order_for(ranker.pk, task.pk, 4)
    fragment = client.get(url, **HX)
    assert fragment.status_code == 200 and b"<html" not in fragment.content
    assert b'id="rankbench"' in fragment.content
    assert "HX-Request" in fragment["Vary"]


def test_model_output_is_rendered_through_the_sanitising_markdown(client, ranker):
    project = ranking_project("Hostile ranks", [ranker])
    (task,) = make_ranking_tasks(project, 1)
    Completion.objects.filter(id=task.items.get(position=0).completion_id).update(
        text="<script>alert(1)</script> **bold** <img src=x onerror=alert(2)>"
    )
    client.force_login(ranker)
    body = client.get(reverse("labeling:rank", args=[project.id])).content.decode()
    assert "<script>alert(1)" not in body and "<img" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<strong>bold</strong>" in body


def test_a_valid_submit_stores_it_and_answers_the_next_task(client, ranker, ranked_project):
    client.force_login(ranker)
    client.get(reverse("labeling:rank", args=[ranked_project.id]))
    task = RankingTask.objects.get(leased_to=ranker)
    answer = client.post(
        reverse("labeling:rank_submit", args=[ranked_project.id]),
        {"task": task.pk, "ranking": json.dumps([3, [2, 0], 1]), "client_key": "view-key-0001"},
        **HX,
    )
    assert answer.status_code == 200 and b"Ranking saved." in answer.content
    assert b"Undo last ranking" in answer.content
    stored = Ranking.objects.get(annotator=ranker)
    assert stored.ranking == [3, [0, 2], 1] and stored.task_id == task.pk
    following = RankingTask.objects.get(leased_to=ranker)
    assert following.pk != task.pk and f'data-task="{following.pk}"'.encode() in answer.content
    # The same submit again (its answer was lost): recognised as stored.
    again = client.post(
        reverse("labeling:rank_submit", args=[ranked_project.id]),
        {"task": task.pk, "ranking": json.dumps([3, [2, 0], 1]), "client_key": "view-key-0001"},
        **HX,
    )
    assert again.status_code == 200 and b"Your ranking was already saved." in again.content
    assert Ranking.objects.filter(annotator=ranker).count() == 1


def test_a_malformed_ranking_is_refused_in_the_fragment_and_the_task_stays(
    client, ranker, ranked_project
):
    client.force_login(ranker)
    client.get(reverse("labeling:rank", args=[ranked_project.id]))
    task = RankingTask.objects.get(leased_to=ranker)
    url = reverse("labeling:rank_submit", args=[ranked_project.id])
    refused = client.post(url, {"task": task.pk, "ranking": "[0, 1, 1, 3]"}, **HX)
    assert refused.status_code == 409 and b"<html" not in refused.content
    assert b"index 1 appears twice" in refused.content
    assert f'data-task="{task.pk}"'.encode() in refused.content
    invalid = client.post(url, {"task": task.pk, "ranking": "[0, 1"}, **HX)
    assert invalid.status_code == 400 and b"not valid JSON" in invalid.content
    assert f'data-task="{task.pk}"'.encode() in invalid.content
    assert not Ranking.objects.exists()


def test_without_the_script_the_place_menus_rank_and_the_answer_is_a_redirect(
    client, ranker, ranked_project
):
    client.force_login(ranker)
    client.get(reverse("labeling:rank", args=[ranked_project.id]))
    task = RankingTask.objects.get(leased_to=ranker)
    # Places by canonical position: 1 is best, equal numbers tie.
    answer = client.post(
        reverse("labeling:rank_submit", args=[ranked_project.id]),
        {"task": task.pk, "place-0": "2", "place-1": "1", "place-2": "3", "place-3": "2"},
    )
    assert answer.status_code == 303
    assert answer["Location"] == reverse("labeling:rank", args=[ranked_project.id])
    assert Ranking.objects.get(annotator=ranker).ranking == [1, [0, 3], 2]


def test_undo_and_skip_answer_in_the_fragment(client, ranker, ranked_project):
    client.force_login(ranker)
    client.get(reverse("labeling:rank", args=[ranked_project.id]))
    task = RankingTask.objects.get(leased_to=ranker)
    client.post(
        reverse("labeling:rank_submit", args=[ranked_project.id]),
        {"task": task.pk, "ranking": "[0, 1, 2, 3]"},
        **HX,
    )
    undone = client.post(reverse("labeling:rank_undo", args=[ranked_project.id]), **HX)
    assert undone.status_code == 200 and b"Ranking undone." in undone.content
    assert f'data-task="{task.pk}"'.encode() in undone.content
    assert not Ranking.objects.exists()
    nothing = client.post(reverse("labeling:rank_undo", args=[ranked_project.id]), **HX)
    assert nothing.status_code == 409 and b"no recent ranking to undo" in nothing.content
    skip_url = reverse("labeling:rank_skip", args=[ranked_project.id])
    bad = client.post(skip_url, {"task": task.pk, "reason": "bored"}, **HX)
    assert bad.status_code == 400 and b"<html" not in bad.content
    skipped = client.post(skip_url, {"task": task.pk, "reason": "harmful"}, **HX)
    assert skipped.status_code == 200 and b"you will not see it again" in skipped.content
    assert RankingSkip.objects.get().task_id == task.pk


@pytest.mark.parametrize(
    "name, method", [("rank", "get"), ("rank_submit", "post"), ("rank_skip", "post")]
)
def test_outsider_gets_404_for_the_ranking_views(client, ranked_project, name, method):
    client.force_login(make_user("rank_outsider"))
    answer = getattr(client, method)(reverse(f"labeling:{name}", args=[ranked_project.id]))
    assert answer.status_code == 404


def test_the_project_page_links_the_ranking_page_with_counts(client, ranker, ranked_project):
    client.force_login(ranker)
    page = client.get(reverse("labeling:project_detail", args=[ranked_project.id]))
    body = page.content.decode()
    assert reverse("labeling:rank", args=[ranked_project.id]) in body
    assert "Rank responses (2 left for you)" in body
    assert "Ranking tasks: 0 of 2 done" in body


def test_a_pairs_only_project_page_has_no_ranking_link(client, make_project):
    user = make_user("pairs_only")
    project = make_project("Pairs only", pairs=2, members={user: Role.ANNOTATOR})
    client.force_login(user)
    body = client.get(reverse("labeling:project_detail", args=[project.id])).content.decode()
    assert "/rank/" not in body and "Start labeling (2 left for you)" in body


def test_the_admin_shows_ranking_tasks_with_their_items_rankings_and_skips(
    admin_client, ranker, ranked_project
):
    first, second = RankingTask.objects.filter(project=ranked_project)
    Ranking.objects.create(task=first, annotator=ranker, ranking=[0, [1, 2], 3])
    RankingSkip.objects.create(task=second, user=ranker, reason="other")
    for model in ("rankingtask", "rankingitem", "ranking", "rankingskip"):
        listing = admin_client.get(reverse(f"admin:labeling_{model}_changelist"), {"q": "1"})
        assert listing.status_code == 200, model
    page = admin_client.get(reverse("admin:labeling_rankingtask_change", args=[first.pk]))
    assert page.status_code == 200
    assert page.content.count(b"Answer ") >= 4  # the four items, inline
    ranking = Ranking.objects.get()
    page = admin_client.get(reverse("admin:labeling_ranking_change", args=[ranking.pk]))
    assert page.status_code == 200 and b"[0, [1, 2], 3]" in page.content


def test_the_rounds_table_counts_ranking_tasks_and_comparisons(client, make_project):
    reviewer = make_user("rounds_reviewer")
    project = make_project("Rounds table", pairs=3, members={reviewer: Role.REVIEWER})
    make_ranking_tasks(project, 2)
    client.force_login(reviewer)
    body = client.get(reverse("labeling:project_detail", args=[project.id])).content.decode()
    assert "3 comparisons" in body and "2 ranking tasks" in body
