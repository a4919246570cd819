"""Ranking imports: prompts with K responses become ranking tasks, existing rankings become tasks
with one imported ranking; a bad file writes nothing and names every bad row by line and field,
through the service, the web form and the command line."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling.importers import ImportFailed, ImportKind, OnDuplicate, import_file
from labeling.models import Project, PromptSplit, Ranking, RankingTask, Role, VoteSource
from labeling.services import add_member
from tests.conftest import make_user

FOUR = ["Paris.", "Lyon.", "It is Paris, on the Seine.", "Marseille."]


@pytest.fixture
def project(db: None) -> Project:
    return Project.objects.create(name="Ranked imports", overlap=3)


def jsonl(*rows: Any) -> bytes:
    return "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows).encode()


def csv_file(header: list[str], *rows: list[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell if isinstance(cell, str) else json.dumps(cell) for cell in row])
    return out.getvalue().encode()


def counts() -> dict[str, int]:
    """Rows of every model of the app, so a refused file is seen to write nothing anywhere."""
    return {m.__name__: m.objects.count() for m in apps.get_app_config("labeling").get_models()}


def items(task: RankingTask) -> list[tuple[int, str, str]]:
    return [(i.position, i.completion.text, i.completion.model_name) for i in task.items.all()]


def refused(project: Project, data: bytes, name: str, kind: str) -> list[str]:
    before = counts()
    with pytest.raises(ImportFailed) as failed:
        import_file(project, data, name, kind)
    assert counts() == before
    return failed.value.errors


@pytest.mark.django_db
def test_rankings_jsonl_creates_a_round_of_tasks_with_items_in_file_order(project):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    data = jsonl(
        {
            "prompt": "Capital of France?",
            "responses": FOUR,
            "model_names": ["m1", "m2", "m3", "m4"],
            "split": "eval",
            "metadata": {"topic": "geo"},
        },
        "",
        {"messages": chat, "responses": [[{"role": "assistant", "content": t}] for t in "xyz"]},
    )
    result = import_file(project, data, "rank.jsonl", ImportKind.RANKINGS)
    assert (result.prompts, result.ranking_tasks, result.rankings) == (2, 2, 0)
    assert result.comparisons == result.votes == 0
    assert result.summary() == "Imported 2 prompts, 2 ranking tasks in round 1."
    first, second = RankingTask.objects.order_by("id")
    assert (first.size, first.votes_target, first.vote_count) == (4, 3, 0)
    assert first.round.number == 1 and first.round.source == "import:rank.jsonl"
    assert items(first) == [(i, t, f"m{i + 1}") for i, t in enumerate(FOUR)]
    assert first.prompt.split == PromptSplit.EVAL
    assert first.prompt.metadata["topic"] == "geo" and first.prompt.metadata["import_line"] == 1
    assert second.prompt.messages == chat and second.prompt.metadata["import_line"] == 3
    assert items(second) == [(0, "x", ""), (1, "y", ""), (2, "z", "")]
    assert not Ranking.objects.exists()


@pytest.mark.django_db
def test_rankings_csv_reads_the_responses_cell_as_a_json_list(project):
    data = csv_file(
        ["prompt", "responses", "model_names"],
        ["Q, with a comma", FOUR, ["a", "b", "c", "d"]],
        ["Second", ["one", 'two, "quoted"', "three"], ""],
    )
    result = import_file(project, data, "rank.csv", ImportKind.RANKINGS)
    assert result.ranking_tasks == 2
    first, second = RankingTask.objects.order_by("id")
    assert first.prompt.text == "Q, with a comma"
    assert [text for _, text, _ in items(first)] == FOUR
    assert items(second) == [(0, "one", ""), (1, 'two, "quoted"', ""), (2, "three", "")]


@pytest.mark.django_db
def test_ranked_jsonl_stores_one_imported_ranking_per_task_in_canonical_form(project):
    data = jsonl(
        {"prompt": "Capital of France?", "responses": FOUR, "ranking": [2, [3, 0], 1]},
        {"prompt": "Count", "responses": ["1", "2", "3"], "ranking": [[1], [2], [0]]},
    )
    result = import_file(project, data, "ranked.jsonl", ImportKind.RANKED)
    assert (result.ranking_tasks, result.rankings) == (2, 2)
    assert (
        result.summary() == "Imported 2 prompts, 2 ranking tasks in round 1, 2 imported rankings."
    )
    first, second = RankingTask.objects.order_by("id")
    # An imported ranking completes its task, as an imported preference its comparison.
    assert (first.votes_target, first.vote_count) == (1, 1)
    ranking = first.rankings.get()
    assert ranking.ranking == [2, [0, 3], 1]  # tie members in index order
    assert ranking.annotator is None and ranking.source == VoteSource.IMPORTED
    assert ranking.imported_from == "import:ranked.jsonl"
    assert ranking.display_order == []  # nobody was shown it
    assert second.rankings.get().ranking == [1, 2, 0]


@pytest.mark.django_db
def test_ranked_csv_reads_ranking_and_responses_cells(project):
    data = csv_file(
        ["prompt", "responses", "ranking", "split"],
        ["Q1", FOUR, [[0, 2], 1, 3], "train"],
        ["Q2", ["a", "b", "c"], [2, 1, 0], ""],
    )
    result = import_file(project, data, "ranked.csv", ImportKind.RANKED)
    assert result.rankings == 2
    assert [r.ranking for r in Ranking.objects.order_by("id")] == [[[0, 2], 1, 3], [2, 1, 0]]


@pytest.mark.django_db
def test_a_second_ranking_import_opens_the_next_round(project):
    import_file(project, jsonl({"prompt": "Q", "responses": FOUR}), "a.jsonl", "rankings")
    result = import_file(project, jsonl({"prompt": "Q", "responses": FOUR}), "b.jsonl", "rankings")
    assert result.round_number == 2
    assert sorted(RankingTask.objects.values_list("round__number", flat=True)) == [1, 2]


GOOD = {"prompt": "Q", "responses": FOUR, "ranking": [0, 1, 2, 3]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"responses": ["a", "b"], "ranking": [0, 1]},
            "field 'responses' holds 2 responses; a ranking task needs 3 to 8",
        ),
        (
            {"responses": [str(i) for i in range(9)], "ranking": list(range(9))},
            "field 'responses' holds 9 responses; a ranking task needs 3 to 8",
        ),
        (
            {"responses": ["Paris.", "Lyon.", " Paris. ", "Nice."]},
            "responses[0] and responses[2] are identical; a ranking needs distinct responses",
        ),
        (
            {"ranking": [0, 1, 1, 3]},
            "'ranking' is not a permutation of 0..3: index 1 appears twice",
        ),
        ({"ranking": [0, [1, 3]]}, "'ranking' is not a permutation of 0..3: index 2 is missing"),
        (
            {"ranking": [0, 1, 2, 4]},
            "'ranking' is not a permutation of 0..3: index 4 is out of range",
        ),
        ({"ranking": [[0, 1, 2, 3]]}, "'ranking' ties all responses, so it orders nothing"),
        ({"ranking": "0 1 2 3"}, "'ranking' must be a non-empty list of response indices, got str"),
        (
            {"ranking": {"best": 0}},
            "'ranking' must be a non-empty list of response indices, got dict",
        ),
        ({"ranking": None}, "missing field 'ranking'"),
        ({"responses": "Paris."}, "field 'responses' must be a list of 3 to 8 responses, not str"),
        ({"responses": ["a", "b", 3, "d"]}, "responses[2] must be a non-empty string, not int"),
        ({"responses": ["a", "  ", "c", "d"]}, "responses[1] is empty"),
        (
            {"model_names": ["m1", "m2"]},
            "field 'model_names' must be a list of 4 strings, one per response, got 2 names",
        ),
        (
            {"responses": [[{"role": "assistant", "content": "a"}], "b", "c", "d"]},
            "responses[0] is a list of messages but responses[1] is not; give every response "
            "the same shape",
        ),
        (
            {"responses": [[{"role": "assistant", "content": t}] for t in "abcd"]},
            "the responses are chat messages but the prompt is plain text; give the prompt as "
            "messages too, or the responses as strings",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "Q"}],
                "responses": [
                    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": t}]
                    for t in "abcd"
                ],
            },
            "responses[0] must be a list of exactly one assistant message, the response (the "
            "conversation before it belongs in the prompt)",
        ),
        (
            {"prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
            "a chat prompt ('prompt') must end with a user message",
        ),
    ],
)
@pytest.mark.django_db
def test_a_bad_ranked_row_is_named_by_line_and_nothing_is_written(project, changes, message):
    import_file(project, jsonl(GOOD), "earlier.jsonl", ImportKind.RANKED)  # something to keep
    bad = {**GOOD, **changes}
    data = jsonl(GOOD | {"prompt": "Other"}, "", json.dumps(bad))
    assert refused(project, data, "bad.jsonl", ImportKind.RANKED) == [f"line 3: {message}"]


@pytest.mark.django_db
def test_every_bad_row_of_a_rankings_file_is_reported(project):
    data = jsonl(
        {"prompt": "Q1", "responses": ["a", "b"]},
        {"prompt": "Q2", "responses": FOUR},
        {"prompt": "Q3", "responses": ["a", "b", "a"]},
        {"prompt": "Q4", "response_a": "x", "response_b": "y"},
        {"prompt": "Q5", "responses": FOUR, "ranking": [0, 1, 2, 3]},
    )
    assert refused(project, data, "bad.jsonl", ImportKind.RANKINGS) == [
        "line 1: field 'responses' holds 2 responses; a ranking task needs 3 to 8",
        "line 3: responses[0] and responses[2] are identical; a ranking needs distinct responses",
        "line 4: missing field 'responses': this file looks like pairs (response_a/response_b): "
        "choose the Pairs kind",
        "line 5: field 'ranking' is read only by the Ranked kind (existing rankings): choose it, "
        "or leave the field out to create tasks to rank",
    ]


@pytest.mark.django_db
def test_bad_csv_cells_are_named_by_line_and_column(project):
    data = csv_file(
        ["prompt", "responses", "ranking"],
        ["Q1", FOUR, [0, 1, 2, 3]],
        ["Q2", "[not json", [0, 1, 2]],
        ["Q3", ["a", "b", "c"], "[0, 0, 1]"],
        ["Q4", ["a", "b", "c"], "2"],
    )
    assert refused(project, data, "bad.csv", ImportKind.RANKED) == [
        "line 3: column 'responses' must hold a JSON list: not valid JSON (Expecting value at "
        "column 2)",
        "line 4: 'ranking' is not a permutation of 0..2: index 0 appears twice",
        "line 5: 'ranking' must be a non-empty list of response indices, got int",
    ]


@pytest.mark.django_db
def test_duplicate_rows_are_refused_or_skipped_as_asked(project):
    row = {"prompt": "Q", "responses": FOUR, "ranking": [3, 2, 1, 0]}
    other_ranking = {**row, "ranking": [0, 1, 2, 3]}  # a second annotator's ranking: no repeat
    data = jsonl(row, other_ranking, row)
    assert refused(project, data, "dups.jsonl", ImportKind.RANKED) == [
        "line 3: duplicates line 1 exactly (choose to skip duplicates to import the file "
        "without them)"
    ]
    result = import_file(project, data, "dups.jsonl", ImportKind.RANKED, OnDuplicate.SKIP)
    assert (result.rankings, result.skipped_duplicates) == (2, [3])


@pytest.fixture
def admin_client(client, project, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    admin = make_user("ranking_importer")
    add_member(project, admin, Role.ADMIN)
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_the_web_form_imports_ranking_tasks_and_says_how_many(admin_client, project):
    url = reverse("labeling:import", args=[project.id])
    form = admin_client.get(reverse("labeling:project_detail", args=[project.id]))
    assert 'value="rankings"' in form.content.decode()
    assert 'value="ranked"' in form.content.decode()
    file = SimpleUploadedFile("r.jsonl", jsonl({"prompt": "Q", "responses": FOUR}))
    response = admin_client.post(url, {"kind": "rankings", "file": file})
    assert response.status_code == 303
    page = admin_client.get(response["Location"])
    assert "Imported 1 prompts, 1 ranking tasks in round 1." in page.content.decode()
    assert RankingTask.objects.get().votes_target == 3


@pytest.mark.django_db
def test_the_web_form_lists_bad_ranked_rows_and_writes_nothing(admin_client, project):
    before = counts()
    data = jsonl(GOOD, {**GOOD, "ranking": [0, 1, 2, 2]})
    response = admin_client.post(
        reverse("labeling:import", args=[project.id]),
        {"kind": "ranked", "file": SimpleUploadedFile("r.jsonl", data)},
    )
    assert response.status_code == 400
    assert (
        "line 2: &#x27;ranking&#x27; is not a permutation of 0..3: index 2 appears twice"
        in response.content.decode()
    )
    assert counts() == before


@pytest.mark.django_db
def test_the_command_line_imports_rankings_or_names_the_bad_line(project, tmp_path, capsys):
    path = tmp_path / "ranked.jsonl"
    path.write_bytes(jsonl(GOOD, {**GOOD, "prompt": "Q2", "ranking": [[0, 1, 2, 3]]}))
    before = counts()
    with pytest.raises(CommandError, match="line 2: 'ranking' ties all responses"):
        call_command("import_data", project.name, str(path), "--kind", "ranked")
    assert counts() == before
    path.write_bytes(jsonl(GOOD, {**GOOD, "prompt": "Q2", "ranking": [[0, 1], [2, 3]]}))
    call_command("import_data", project.name, str(path), "--kind", "ranked")
    assert "2 ranking tasks in round 1, 2 imported rankings" in capsys.readouterr().out
    assert Ranking.objects.count() == 2
