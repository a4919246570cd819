"""Uploads go through the same importer as the web UI: all or nothing, errors per line."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Prompt, Ranking
from tests.api.conftest import World, bearer


def upload(client, world: World, kind: str, name: str, data: bytes):
    return client.post(
        f"/api/v1/projects/{world.home.project.id}/imports",
        {"kind": kind, "file": SimpleUploadedFile(name, data)},
        **bearer(world.token(["upload"])),
    )


@pytest.mark.django_db
def test_prompts_upload_is_imported(world: World, client) -> None:
    before = Prompt.objects.filter(project=world.home.project).count()
    response = upload(client, world, "prompts", "p.jsonl", b'{"prompt": "a"}\n{"prompt": "b"}\n')
    assert response.status_code == 201
    assert response.json() == {
        "kind": "prompts",
        "prompts": 2,
        "comparisons": 0,
        "votes": 0,
        "round": None,
        "skipped_duplicates": [],
        "ranking_tasks": 0,
        "rankings": 0,
    }
    assert Prompt.objects.filter(project=world.home.project).count() == before + 2


@pytest.mark.django_db
def test_duplicates_are_refused_or_skipped_as_the_client_asks(world: World, client) -> None:
    before = Prompt.objects.count()
    data = b'{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "a"}\n'
    refused = upload(client, world, "prompts", "p.jsonl", data)
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["errors"][0].startswith(
        "line 3: duplicates line 1 exactly"
    )
    assert Prompt.objects.count() == before
    skipped = client.post(
        f"/api/v1/projects/{world.home.project.id}/imports",
        {"kind": "prompts", "on_duplicate": "skip", "file": SimpleUploadedFile("p.jsonl", data)},
        **bearer(world.token(["upload"])),
    )
    assert skipped.status_code == 201
    assert (skipped.json()["prompts"], skipped.json()["skipped_duplicates"]) == (2, [3])


@pytest.mark.django_db
def test_deep_nesting_and_nan_get_422_with_lines(world: World, client) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    data = b'{"prompt": "a", "metadata": {"x": NaN}}\n' + deep + b"\n"
    response = upload(client, world, "prompts", "p.jsonl", data)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"] == [
        "line 1: the number NaN is not finite; NaN and infinities are not allowed",
        "line 2: values are nested more than 32 levels deep",
    ]


@pytest.mark.django_db
def test_csv_pairs_open_a_round(world: World, client) -> None:
    data = b"prompt,response_a,response_b\nQ1,yes,no\nQ2,up,down\n"
    response = upload(client, world, "pairs", "pairs.csv", data)
    assert response.status_code == 201
    assert response.json()["comparisons"] == 2
    assert response.json()["round"] == 3


@pytest.mark.django_db
def test_one_bad_row_imports_nothing_and_lists_lines(world: World, client) -> None:
    before = Prompt.objects.count()
    data = (
        b'{"prompt": "ok", "response_a": "x", "response_b": "y"}\n'
        b"not json\n"
        b'{"prompt": "same", "response_a": "z", "response_b": "z"}\n'
    )
    response = upload(client, world, "pairs", "pairs.jsonl", data)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "import_failed"
    assert error["details"]["total_errors"] == 2
    assert error["details"]["errors"][0].startswith("line 2: not valid JSON")
    assert error["details"]["errors"][1] == "line 3: the two responses are identical"
    assert Prompt.objects.count() == before


@pytest.mark.django_db
def test_file_over_the_limit_gets_413(world: World, client, settings) -> None:
    settings.PREFLAB_IMPORT_MAX_BYTES = 10
    response = upload(client, world, "prompts", "p.jsonl", b'{"prompt": "longer than ten"}')
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


@pytest.mark.django_db
def test_missing_file_or_unknown_kind_gets_422(world: World, client) -> None:
    url = f"/api/v1/projects/{world.home.project.id}/imports"
    response = client.post(url, {"kind": "recipes"}, **bearer(world.token(["upload"])))
    assert response.status_code == 422
    locs = {tuple(detail["loc"]) for detail in response.json()["error"]["details"]}
    assert ("form", "kind") in locs
    assert ("file", "file") in locs


@pytest.mark.django_db
def test_ranked_upload_creates_tasks_with_imported_rankings(world: World, client) -> None:
    row = b'{"prompt": "Q", "responses": ["a", "b", "c"], "ranking": [2, [1, 0]]}\n'
    response = upload(client, world, "ranked", "ranked.jsonl", row)
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["ranking_tasks"], body["rankings"]) == ("ranked", 1, 1)
    assert Ranking.objects.get(task__project=world.home.project).ranking == [2, [0, 1]]
    bad = upload(client, world, "rankings", "r.jsonl", b'{"prompt": "Q", "responses": ["a"]}')
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["errors"] == [
        "line 1: field 'responses' holds 1 response; a ranking task needs 3 to 8"
    ]
