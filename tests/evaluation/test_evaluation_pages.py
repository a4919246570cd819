"""Evaluation pages and API: who sees what, forms that refuse bad input, blind comparisons."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.urls import reverse

from api.tokens import create_token
from evaluation.models import Evaluation, PromotionDecision
from labeling.importers import ImportKind, import_file
from labeling.models import Project, Prompt, PromptSplit, Role
from labeling.services import add_member, lease_next_comparison
from labeling.snapshots import build_snapshot, request_snapshot
from tests.conftest import make_user
from tests.evaluation.support import child_checkpoint, evaluated
from training.services import register_base_model

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world(project, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    cache.clear()
    snapshot = build_snapshot(request_snapshot(project, "every_vote").pk)
    base = register_base_model(project, "/models/base", "base")
    child = child_checkpoint(project, base, snapshot, "child")
    evaluation = evaluated(project, child, base, prompts=30, win_share=0.85)
    return project, base, child, evaluation


def page_urls(project, child, evaluation):
    return [
        reverse("evaluation:project", args=[project.pk]),
        reverse("evaluation:checkpoint", args=[project.pk, child.pk]),
        reverse("evaluation:evaluation", args=[project.pk, evaluation.pk]),
        reverse("evaluation:lineage", args=[project.pk]),
    ]


def test_outsiders_get_404_and_annotators_403(client, world, outsider, annotator):
    project, _, child, evaluation = world
    for user, expected in ((outsider, 404), (annotator, 403)):
        client.force_login(user)
        for url in page_urls(project, child, evaluation):
            assert client.get(url).status_code == expected, (user, url)


def test_reviewer_reads_results_leaderboard_and_lineage_but_cannot_act(client, world, reviewer):
    project, _base, child, evaluation = world
    client.force_login(reviewer)
    page = client.get(reverse("evaluation:evaluation", args=[project.pk, evaluation.pk]))
    text = page.content.decode()
    assert "Win-rate" in text and "Length-controlled" in text and "Apply the gate" not in text
    board = client.get(reverse("evaluation:project", args=[project.pk])).content.decode()
    assert 'data-testid="leaderboard"' in board and "Hold them out" not in board
    tree = client.get(reverse("evaluation:lineage", args=[project.pk])).content.decode()
    assert tree.index(">base<") < tree.index(">child<")
    assert reverse("training:run", args=[project.pk, child.run_id]) in tree
    gate = reverse("evaluation:evaluation_gate", args=[project.pk, evaluation.pk])
    assert client.post(gate).status_code == 403


def test_evaluation_page_fragment_for_htmx(client, world, reviewer):
    project, _, _, evaluation = world
    client.force_login(reviewer)
    fragment = client.get(
        reverse("evaluation:evaluation", args=[project.pk, evaluation.pk]), **HX
    ).content.decode()
    assert "<html" not in fragment and 'id="evaluation-live"' in fragment


def test_admin_applies_the_gate_and_records_an_override(client, world, project_admin):
    project, base, child, evaluation = world
    client.force_login(project_admin)
    gate = reverse("evaluation:evaluation_gate", args=[project.pk, evaluation.pk])
    assert client.post(gate).status_code == 303
    child.refresh_from_db()
    assert child.promoted
    override = reverse("evaluation:checkpoint_override", args=[project.pk, base.pk])
    refused = client.post(override, {"action": "promote", "note": ""})
    assert refused.status_code == 400 and "This field is required" in refused.content.decode()
    assert client.post(override, {"action": "promote", "note": "baseline"}).status_code == 303
    decision = PromotionDecision.objects.get(checkpoint=base)
    assert decision.decided_by == project_admin and decision.note == "baseline"
    page = client.get(reverse("evaluation:checkpoint", args=[project.pk, base.pk]))
    assert "baseline" in page.content.decode()


def test_gate_rule_form_validates_and_saves(client, world, project_admin):
    project, *_ = world
    client.force_login(project_admin)
    url = reverse("evaluation:gate_rule", args=[project.pk])
    bad = client.post(url, {"min_ci_low": "1.5", "min_votes": "0"})
    assert bad.status_code == 400 and "less than or equal to 1" in bad.content.decode()
    project.refresh_from_db()
    assert project.gate_rule == {}
    good = client.post(url, {"min_ci_low": "0.55", "min_lc_win_rate": "", "min_votes": "10"})
    assert good.status_code == 303
    project.refresh_from_db()
    assert project.gate_rule == {
        "min_ci_low": 0.55, "min_lc_win_rate": None, "min_win_rate": None, "min_votes": 10,
    }  # fmt: skip


def test_hold_out_form(client, world, project_admin):
    project, *_ = world
    client.force_login(project_admin)
    url = reverse("evaluation:hold_out", args=[project.pk])
    assert client.post(url, {"percent": "150", "seed": "0"}).status_code == 400
    rows = "\n".join(json.dumps({"prompt": f"new {i}"}) for i in range(10)).encode()
    import_file(project, rows, "new.jsonl", ImportKind.PROMPTS)
    assert client.post(url, {"percent": "30", "seed": "1"}).status_code == 303
    new = Prompt.objects.filter(project=project, text__startswith="new")
    assert all("split_chosen" in prompt.metadata for prompt in new)
    assert 0 < new.filter(split=PromptSplit.EVAL).count() < 10


def test_start_evaluation_form_refuses_without_opponents_and_queues_with_them(
    client, world, project_admin
):
    project, base, child, _ = world
    client.force_login(project_admin)
    url = reverse("evaluation:evaluation_create", args=[project.pk, child.pk])
    form = {"temperature": "1.0", "top_p": "1.0", "max_new_tokens": "16", "seed": "0",
            "min_votes": "10"}  # fmt: skip
    assert client.post(url, form).status_code == 400
    assert client.post(url, {**form, "opponents": [child.pk]}).status_code == 400  # itself
    response = client.post(url, {**form, "opponents": [base.pk]})
    assert response.status_code == 303
    queued = Evaluation.objects.filter(checkpoint=child).latest("id")
    assert queued.status == "queued" and list(queued.opponents.all()) == [base]
    page = client.get(reverse("evaluation:checkpoint", args=[project.pk, child.pk]))
    assert page.status_code == 200 and "Start the evaluation" in page.content.decode()


def test_annotators_see_evaluation_pairs_blind(client, world, annotator):
    project, base, child, evaluation = world
    fresh = make_user("fresh-eye")
    add_member(project, fresh, Role.ANNOTATOR)
    evaluated(project, child, base, prompts=3, win_share=1.0, seed=9)
    # an unvoted evaluation comparison, served through the normal queue
    from labeling.models import Comparison, Completion

    comparison = Comparison.objects.filter(round__purpose="evaluation", vote_count=0).first()
    if comparison is None:  # every fixture comparison is voted: add one open pair
        prompt = Prompt.objects.create(project=project, text="open", split=PromptSplit.EVAL)
        a = Completion.objects.create(prompt=prompt, text="x", model_name="child", checkpoint=child)
        b = Completion.objects.create(prompt=prompt, text="y", model_name="base", checkpoint=base)
        Comparison.objects.create(
            project=project, round=evaluation.round, prompt=prompt, completion_a=a,
            completion_b=b, votes_target=1,
        )  # fmt: skip
    served = lease_next_comparison(fresh, project)
    assert served is not None and served.round.purpose == "evaluation"
    client.force_login(fresh)
    page = client.get(reverse("labeling:annotate", args=[project.pk])).content.decode()
    assert served.completion_a.text in page
    assert "child" not in page.replace("children", "") and ">base<" not in page


def test_evaluation_api(client, world, project_admin, outsider):
    project, base, child, evaluation = world
    read = create_token(project_admin, "r", ["read"], [project]).secret
    train = create_token(project_admin, "t", ["read", "train"], [project]).secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {read}"}
    listing = client.get(f"/api/v1/projects/{project.pk}/evaluations", **auth)
    assert listing.status_code == 200 and listing.json()["items"][0]["id"] == evaluation.pk
    one = client.get(f"/api/v1/projects/{project.pk}/evaluations/{evaluation.pk}", **auth).json()
    assert one["results"]["opponents"][0]["win_rate"]["ci_low"] > 0.5
    board = client.get(f"/api/v1/projects/{project.pk}/leaderboard", **auth).json()
    assert board["rows"][0]["name"] == "child"
    tree = client.get(f"/api/v1/projects/{project.pk}/lineage", **auth).json()
    assert tree["roots"][0]["children"][0]["checkpoint"] == child.pk
    body = json.dumps({"checkpoint_id": child.pk, "generation": {"max_new_tokens": 8}})
    post = f"/api/v1/projects/{project.pk}/evaluations"
    refused = client.post(post, body, content_type="application/json", **auth)
    assert refused.status_code == 403 and "train" in refused.json()["error"]["message"]
    started = client.post(
        post, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {train}"
    )
    assert started.status_code == 202, started.json()
    assert started.json()["evaluation"]["opponent_ids"] == [base.pk]
    bad = json.dumps({"checkpoint_id": child.pk, "generation": {"temperature": 99}})
    answer = client.post(
        post, bad, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {train}"
    )
    assert answer.status_code == 422 and answer.json()["error"]["details"]["key"] == "temperature"
    elsewhere = Project.objects.create(name="Elsewhere")
    add_member(elsewhere, outsider, Role.ADMIN)
    stranger = create_token(outsider, "o", ["read"], [elsewhere]).secret
    hidden = client.get(
        f"/api/v1/projects/{project.pk}/leaderboard", HTTP_AUTHORIZATION=f"Bearer {stranger}"
    )
    assert hidden.status_code == 404
