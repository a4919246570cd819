"""The data browser: filters by text, round, status, agreement, annotator, model and flag."""

import pytest
from django.urls import reverse

from labeling.importers import ImportKind, import_file
from labeling.models import Comparison, FlagKind, FlagReason, Role
from labeling.services import VoteInput, cast_vote, set_aside_comparison
from tests.conftest import make_user, pairs_jsonl


@pytest.fixture
def browsed(make_project, reviewer, annotator):
    second = make_user("second_voter")
    project = make_project(
        "Browse",
        pairs=3,
        overlap=2,
        members={reviewer: Role.REVIEWER, annotator: Role.ANNOTATOR, second: Role.ANNOTATOR},
    )
    import_file(project, pairs_jsonl(2, "Zebra"), "round2.jsonl", ImportKind.PAIRS)
    first, agreed, flagged = Comparison.objects.filter(project=project).order_by("id")[:3]
    cast_vote(annotator, project, first.id, VoteInput("A", "clear"))
    cast_vote(second, project, first.id, VoteInput("B", "clear"))
    cast_vote(annotator, project, agreed.id, VoteInput("A", "clear"))
    cast_vote(second, project, agreed.id, VoteInput("A", "clear"))
    set_aside_comparison(annotator, project, flagged.id, FlagKind.FLAG, FlagReason.HARMFUL)
    return project, first, agreed, flagged


def ids(client, project, **params):
    page = client.get(reverse("labeling:browse", args=[project.id]), params)
    assert page.status_code == 200
    return {row["comparison"].id for row in page.context["rows"]}


def test_each_filter_narrows_the_comparisons(client, browsed, reviewer):
    project, split, agreed, flagged = browsed
    client.force_login(reviewer)
    assert len(ids(client, project)) == 5
    assert len(ids(client, project, q="zebra")) == 2
    assert len(ids(client, project, round=2)) == 2
    assert ids(client, project, status="split") == {split.id}
    assert ids(client, project, status="complete") == {split.id, agreed.id}
    assert ids(client, project, status="flagged") == {flagged.id}
    assert ids(client, project, min_agreement=1) == {agreed.id}
    assert ids(client, project, max_agreement=0.5) == {split.id}
    assert ids(client, project, annotator="second_voter") == {split.id, agreed.id}
    assert len(ids(client, project, model="good-model")) == 5
    assert ids(client, project, model="nobody") == set()
    assert ids(client, project, flag="harmful") == {flagged.id}
    assert ids(client, project, status="split", annotator="annotator_person") == {split.id}


def test_bad_filter_answers_400_and_pages_are_paginated(client, browsed, reviewer):
    project, *_ = browsed
    client.force_login(reviewer)
    bad = client.get(reverse("labeling:browse", args=[project.id]), {"min_agreement": "2"})
    assert bad.status_code == 400 and b"less than or equal to 1" in bad.content
    page = client.get(reverse("labeling:browse", args=[project.id]), {"page": 1})
    assert page.context["page"].paginator.per_page == 25


def test_annotators_never_see_the_browser(client, browsed, annotator, outsider):
    project, *_ = browsed
    client.force_login(annotator)
    assert client.get(reverse("labeling:browse", args=[project.id])).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("labeling:browse", args=[project.id])).status_code == 404


def test_text_search_reads_chat_prompts_too(client, browsed, reviewer):
    import json

    project, *_ = browsed
    chat = {
        "messages": [{"role": "user", "content": "Tell me about Kangaroos"}],
        "response_a": "They hop.",
        "response_b": "They swim.",
    }
    import_file(project, json.dumps(chat).encode(), "chat.jsonl", ImportKind.PAIRS)
    client.force_login(reviewer)
    [found] = ids(client, project, q="kangaroo")
    assert Comparison.objects.get(id=found).prompt.is_chat
