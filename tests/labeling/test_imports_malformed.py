"""Malformed imports: each gets a clear, line-numbered error and writes nothing; duplicates are
reported and skipped or refused as asked, on the web form, the API and the command line."""

from __future__ import annotations

import csv
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling.importers import ImportFailed, ImportKind, OnDuplicate, import_file
from labeling.models import Comparison, Completion, Project, Prompt, Role, Vote
from labeling.services import add_member
from tests.conftest import make_user


@pytest.fixture
def empty_project(db: None) -> Project:
    return Project.objects.create(name="Malformed", overlap=1)


def nothing_written() -> bool:
    return not (
        Prompt.objects.exists()
        or Completion.objects.exists()
        or Comparison.objects.exists()
        or Vote.objects.exists()
    )


def refused(project: Project, data: bytes, name: str, kind: str = ImportKind.PAIRS) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        import_file(project, data, name, kind)
    assert nothing_written()
    return failed.value.errors


PAIR = '"response_a": "one", "response_b": "two"'


@pytest.mark.django_db
def test_deep_nesting_is_a_line_numbered_error_not_a_recursion_error(empty_project):
    deep = "[" * 100_000 + "]" * 100_000
    data = f'{{"prompt": "ok", {PAIR}}}\n{{"prompt": "q", {PAIR}, "metadata": {{"x": {deep}}}}}'
    errors = refused(empty_project, data.encode(), "deep.jsonl")
    assert errors == ["line 2: values are nested more than 32 levels deep"]


@pytest.mark.django_db
def test_nesting_within_the_recursion_limit_but_over_the_depth_limit_is_refused(empty_project):
    metadata = "[" * 40 + "]" * 40
    data = f'{{"prompt": "q", {PAIR}, "metadata": {{"x": {metadata}}}}}'
    assert refused(empty_project, data.encode(), "deep.jsonl") == [
        "line 1: values are nested more than 32 levels deep"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_with_their_line(empty_project, number):
    data = (
        f'{{"prompt": "a", {PAIR}}}\n\n{{"prompt": "b", {PAIR}, "metadata": {{"score": {number}}}}}'
    )
    errors = refused(empty_project, data.encode(), "nan.jsonl")
    assert errors == [
        f"line 3: the number {number} is not finite; NaN and infinities are not allowed"
    ]


@pytest.mark.django_db
def test_finite_numbers_in_metadata_still_import(empty_project):
    data = f'{{"prompt": "a", {PAIR}, "metadata": {{"score": 1.5e300, "n": -3}}}}'
    import_file(empty_project, data.encode(), "ok.jsonl", ImportKind.PAIRS)
    # PostgreSQL's jsonb gives 1.5e300 back in plain digits (an int in Python); same value.
    assert float(Prompt.objects.get().metadata["score"]) == 1.5e300


@pytest.mark.django_db
def test_an_oversized_csv_field_is_a_clear_error(empty_project):
    huge = "x" * (csv.field_size_limit() + 1)
    data = f"prompt,response_a,response_b\nfine,a,b\n{huge},a,b\n".encode()
    errors = refused(empty_project, data, "big.csv")
    assert errors == [
        f"line 3: CSV cannot be read: a field is longer than {csv.field_size_limit():,} characters"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x1c", "\x0b"])
def test_line_separators_inside_strings_are_text_and_lines_count_on_newlines(
    empty_project, separator
):
    rows = [
        {"prompt": f"first{separator}line", "response_a": "a", "response_b": "b"},
        {"prompt": "second", "response_a": f"x{separator}y", "response_b": "z"},
    ]
    data = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()
    result = import_file(empty_project, data, "seps.jsonl", ImportKind.PAIRS)
    assert result.comparisons == 2
    assert Prompt.objects.get(text=f"first{separator}line").metadata["import_line"] == 1
    # A bad third line is reported as line 3, not shifted by the separators above it.
    Prompt.objects.all().delete()
    with pytest.raises(ImportFailed) as failed:
        import_file(empty_project, data + b"\n{not json", "seps.jsonl", ImportKind.PAIRS)
    assert failed.value.errors[0].startswith("line 3: not valid JSON")


@pytest.mark.django_db
def test_crlf_lines_still_parse(empty_project):
    data = f'{{"prompt": "a", {PAIR}}}\r\n{{"prompt": "b", {PAIR}}}\r\n'.encode()
    assert import_file(empty_project, data, "crlf.jsonl", ImportKind.PAIRS).comparisons == 2


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [ImportKind.PROMPTS, ImportKind.PAIRS, ImportKind.PREFERENCES])
def test_a_prompt_message_list_must_end_with_a_user_turn(empty_project, kind):
    prompt = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    row: dict[str, Any] = {"prompt": prompt}
    if kind == ImportKind.PAIRS:
        row.update(response_a="one", response_b="two")
    if kind == ImportKind.PREFERENCES:
        row.update(chosen="good", rejected="bad")
    errors = refused(empty_project, json.dumps(row).encode(), "chat.jsonl", kind)
    assert errors == ["line 1: a chat prompt ('prompt') must end with a user message"]
    # The same under "messages" was already refused, with the same words.
    del row["prompt"]
    row["messages"] = prompt
    errors = refused(empty_project, json.dumps(row).encode(), "chat.jsonl", kind)
    assert errors == ["line 1: a chat prompt ('messages') must end with a user message"]


def duplicated_pairs() -> bytes:
    rows = [
        {"prompt": "same", "response_a": "a", "response_b": "b"},
        {"prompt": "other", "response_a": "a", "response_b": "b"},
        {"prompt": "same", "response_a": "a", "response_b": "b"},
        {"prompt": "same", "response_a": "a", "response_b": "b"},
    ]
    return "\n".join(json.dumps(row) for row in rows).encode()


@pytest.mark.django_db
def test_duplicates_refuse_the_file_by_default_naming_both_lines(empty_project):
    errors = refused(empty_project, duplicated_pairs(), "dups.jsonl")
    assert errors == [
        "line 3: duplicates line 1 exactly "
        "(choose to skip duplicates to import the file without them)",
        "line 4: duplicates line 1 exactly "
        "(choose to skip duplicates to import the file without them)",
    ]


@pytest.mark.django_db
def test_duplicates_can_be_skipped_and_are_reported(empty_project):
    result = import_file(
        empty_project, duplicated_pairs(), "dups.jsonl", ImportKind.PAIRS, OnDuplicate.SKIP
    )
    assert result.comparisons == 2
    assert result.skipped_duplicates == [3, 4]
    assert "Skipped 2 duplicate row(s): line(s) 3, 4." in result.summary()


@pytest.mark.django_db
def test_the_command_line_has_a_duplicates_flag(empty_project, tmp_path, capsys):
    path = tmp_path / "dups.jsonl"
    path.write_bytes(duplicated_pairs())
    with pytest.raises(CommandError, match="line 3: duplicates line 1"):
        call_command("import_data", empty_project.name, str(path), "--kind", "pairs")
    assert nothing_written()
    call_command(
        "import_data", empty_project.name, str(path), "--kind", "pairs", "--duplicates", "skip"
    )
    assert "Skipped 2 duplicate row(s)" in capsys.readouterr().out
    assert Comparison.objects.count() == 2


@pytest.mark.django_db
def test_the_web_form_lets_the_admin_choose(client, empty_project, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    admin = make_user("importer")
    add_member(empty_project, admin, Role.ADMIN)
    client.force_login(admin)
    url = reverse("labeling:import", args=[empty_project.id])

    def upload(**extra: str) -> Any:
        from django.core.files.uploadedfile import SimpleUploadedFile

        file = SimpleUploadedFile("dups.jsonl", duplicated_pairs())
        return client.post(url, {"kind": "pairs", "file": file, **extra})

    response = upload()
    assert response.status_code == 400
    assert "line 3: duplicates line 1 exactly" in response.content.decode()
    assert nothing_written()
    response = upload(on_duplicate="skip")
    assert response.status_code == 303
    assert Comparison.objects.count() == 2


@pytest.mark.django_db
def test_the_web_form_shows_a_deep_file_as_an_error_not_a_500(client, empty_project, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    admin = make_user("importer")
    add_member(empty_project, admin, Role.ADMIN)
    client.force_login(admin)
    from django.core.files.uploadedfile import SimpleUploadedFile

    deep = ("[" * 50_000 + "]" * 50_000).encode()
    response = client.post(
        reverse("labeling:import", args=[empty_project.id]),
        {"kind": "prompts", "file": SimpleUploadedFile("deep.jsonl", deep)},
    )
    assert response.status_code == 400
    assert "line 1: values are nested more than 32 levels deep" in response.content.decode()
