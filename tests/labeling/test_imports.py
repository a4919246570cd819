import json

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from labeling.importers import ImportFailed, ImportKind, import_file
from labeling.models import Comparison, Completion, Project, Prompt, Vote


@pytest.fixture
def empty_project(db):
    return Project.objects.create(name="Imports", overlap=2)


def jsonl(*rows) -> bytes:
    return "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows).encode()


def nothing_written() -> bool:
    return not (
        Prompt.objects.exists() or Completion.objects.exists() or Comparison.objects.exists()
    )


@pytest.mark.django_db
def test_prompts_import_text_and_chat(empty_project):
    data = jsonl(
        {"prompt": "Plain question?", "source": "forum"},
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Hi?"},
            ]
        },
    )
    result = import_file(empty_project, data, "p.jsonl", ImportKind.PROMPTS)
    assert result.prompts == 2 and result.comparisons == 0
    chat = Prompt.objects.get(messages__isnull=False)
    assert chat.messages[1] == {"role": "user", "content": "Hi?"}
    assert Prompt.objects.get(text="Plain question?").source == "forum"


@pytest.mark.django_db
def test_pairs_import_creates_a_round_of_comparisons(empty_project):
    data = jsonl({"prompt": "Q", "response_a": "one", "response_b": "two", "model_a": "m1"})
    result = import_file(empty_project, data, "pairs.jsonl", ImportKind.PAIRS)
    comparison = Comparison.objects.get()
    assert result.round_number == 1
    assert comparison.votes_target == 2 and comparison.vote_count == 0
    assert comparison.completion_a.text == "one" and comparison.completion_a.model_name == "m1"
    assert comparison.completion_b.text == "two"


@pytest.mark.django_db
def test_pairs_import_from_csv(empty_project):
    data = b'prompt,response_a,response_b\n"Q, with comma","yes","no"\nSecond,a,b\n'
    result = import_file(empty_project, data, "pairs.csv", ImportKind.PAIRS)
    assert result.comparisons == 2
    assert Prompt.objects.filter(text="Q, with comma").exists()


@pytest.mark.django_db
def test_preferences_import_string_and_conversational(empty_project):
    data = jsonl(
        {"prompt": "Q1", "chosen": "good", "rejected": "bad"},
        {
            "prompt": [{"role": "user", "content": "Q2"}],
            "chosen": [{"role": "assistant", "content": "good2"}],
            "rejected": [{"role": "assistant", "content": "bad2"}],
        },
        {
            "chosen": [{"role": "user", "content": "Q3"}, {"role": "assistant", "content": "g3"}],
            "rejected": [{"role": "user", "content": "Q3"}, {"role": "assistant", "content": "b3"}],
        },
    )
    result = import_file(empty_project, data, "prefs.jsonl", ImportKind.PREFERENCES)
    assert result.votes == 3
    triples = {(v.chosen.text, v.rejected.text) for v in Vote.objects.all()}
    assert triples == {("good", "bad"), ("good2", "bad2"), ("g3", "b3")}
    implicit = Prompt.objects.get(messages__0__content="Q3")
    assert implicit.messages == [{"role": "user", "content": "Q3"}]
    assert all(c.is_complete for c in Comparison.objects.all())


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["{not json"], "line 1: not valid JSON"),
        ([{"prompt": "Q", "response_a": "x"}], "line 1: missing field 'response_b'"),
        (
            [{"prompt": "Q", "response_a": "x", "response_b": "   "}],
            "line 1: field 'response_b' is empty",
        ),
        (
            [{"prompt": "Q", "response_a": "same", "response_b": "same "}],
            "line 1: the two responses are identical",
        ),
        ([{"prompt": "", "response_a": "x", "response_b": "y"}], "line 1: field 'prompt' is empty"),
        ([{"prompt": 3, "response_a": "x", "response_b": "y"}], "must be a string"),
        ([[1, 2]], "expected a JSON object"),
        (
            [
                {
                    "messages": [{"role": "robot", "content": "hi"}],
                    "response_a": "x",
                    "response_b": "y",
                }
            ],
            "role 'robot'",
        ),
    ],
)
@pytest.mark.django_db
def test_bad_row_is_named_and_nothing_is_imported(empty_project, rows, expected):
    good = {"prompt": "fine", "response_a": "a", "response_b": "b"}
    with pytest.raises(ImportFailed) as failure:
        import_file(empty_project, jsonl(*rows, good), "pairs.jsonl", ImportKind.PAIRS)
    assert any(expected in error for error in failure.value.errors), failure.value.errors
    assert nothing_written()


@pytest.mark.django_db
def test_every_bad_line_is_reported(empty_project):
    rows = [{"prompt": "ok", "response_a": "a", "response_b": "b"}] + [{"prompt": "Q"}] * 3
    with pytest.raises(ImportFailed) as failure:
        import_file(empty_project, jsonl(*rows), "pairs.jsonl", ImportKind.PAIRS)
    assert [e.split(":")[0] for e in failure.value.errors] == ["line 2", "line 3", "line 4"]


@pytest.mark.django_db
def test_reported_errors_are_capped_but_counted(empty_project):
    rows = ["{bad"] * 120
    with pytest.raises(ImportFailed) as failure:
        import_file(empty_project, jsonl(*rows), "pairs.jsonl", ImportKind.PAIRS)
    assert len(failure.value.errors) == 50
    assert failure.value.total_errors == 120


@pytest.mark.django_db
def test_non_utf8_file_is_refused_with_its_line(empty_project):
    data = b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n'
    with pytest.raises(ImportFailed, match="line 2: the file is not valid UTF-8"):
        import_file(empty_project, data, "p.jsonl", ImportKind.PROMPTS)
    assert nothing_written()


@pytest.mark.django_db
@override_settings(PREFLAB_IMPORT_MAX_BYTES=100)
def test_oversize_file_is_refused_before_parsing(empty_project):
    with pytest.raises(ImportFailed, match="the limit is 100 bytes"):
        import_file(empty_project, b"x" * 101, "p.jsonl", ImportKind.PROMPTS)


@pytest.mark.django_db
def test_empty_file_and_unknown_extension_are_refused(empty_project):
    with pytest.raises(ImportFailed, match="no rows"):
        import_file(empty_project, b"\n\n", "p.jsonl", ImportKind.PROMPTS)
    with pytest.raises(ImportFailed, match="cannot tell the format"):
        import_file(empty_project, b'{"prompt": "x"}', "p.txt", ImportKind.PROMPTS)


@pytest.mark.django_db
def test_management_command_imports_and_reports_errors(empty_project, tmp_path, capsys):
    good = tmp_path / "pairs.jsonl"
    good.write_bytes(jsonl({"prompt": "Q", "response_a": "a", "response_b": "b"}))
    call_command("import_data", "Imports", str(good), "--kind", "pairs")
    assert "Imported 1 prompts, 1 comparisons in round 1" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"prompt": "Q"}))
    with pytest.raises(CommandError, match="line 1: missing field 'response_a'"):
        call_command("import_data", str(empty_project.id), str(bad), "--kind", "pairs")


@pytest.mark.django_db
def test_nul_characters_are_refused_by_name(empty_project):
    data = jsonl({"prompt": "Q", "response_a": "a\u0000b", "response_b": "c"})
    with pytest.raises(ImportFailed, match="line 1: field 'response_a' contains a NUL"):
        import_file(empty_project, data, "pairs.jsonl", ImportKind.PAIRS)
