"""An LLM judge's API key reaches the endpoint and nothing else: no page, log, export, row."""

from __future__ import annotations

import json
import logging

import pytest
from django.urls import reverse

from api.models import Scope
from api.tokens import create_token
from judging.models import JudgeResult, JudgingJob
from judging.services import add_judge, run_judging
from labeling.models import JobStatus, Judge, Role, Vote
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file
from tests.judging.conftest import knows_the_answer

SECRET = "sk-test-VERY-secret-0123456789"


def test_the_api_key_is_sent_to_the_endpoint_and_shown_nowhere(
    make_project, project_admin, fake_openai, monkeypatch, caplog, client
):
    monkeypatch.setenv("PREFLAB_JUDGE_KEY_TEST", SECRET)
    caplog.set_level(logging.DEBUG)
    project_admin.is_staff = project_admin.is_superuser = True  # the admin site too
    project_admin.save()
    project = make_project(pairs=2, members={project_admin: Role.ADMIN})
    server = fake_openai(knows_the_answer)
    judge = add_judge(
        project,
        "llm",
        "llm",
        {"base_url": server.url, "model": "m", "api_key_env": "PREFLAB_JUDGE_KEY_TEST"},
        created_by=project_admin,
    )
    job = run_judging(judge)
    assert job.consistent == 2
    assert {request["authorization"] for request in server.requests} == {f"Bearer {SECRET}"}

    seen = []
    client.force_login(project_admin)
    seen.append(client.get(reverse("judging:judges", args=[project.id])).content.decode())
    admin_page = client.get(f"/admin/labeling/judge/{judge.pk}/change/")
    assert admin_page.status_code == 200
    seen.append(admin_page.content.decode())
    token = create_token(project_admin, "t", [Scope.READ, Scope.EXPORT], [project]).secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    seen.append(client.get(f"/api/v1/projects/{project.pk}/judges", **auth).content.decode())
    seen.append(client.get(f"/api/v1/projects/{project.pk}/judging-jobs", **auth).content.decode())
    stream = client.get(f"/api/v1/projects/{project.pk}/preferences", **auth)
    seen.append(b"".join(stream.streaming_content).decode())
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    for path in snapshot_file(snapshot).parent.iterdir():
        seen.append(path.read_bytes().decode("utf-8", "replace"))
    seen.append(json.dumps(list(Judge.objects.values()), default=str))
    seen.append(json.dumps(list(Vote.objects.values("judge_output")), default=str))
    seen.append(json.dumps(list(JudgeResult.objects.values()), default=str))
    seen.append(caplog.text)
    seen.append("\n".join(record.getMessage() for record in caplog.records))

    assert "PREFLAB_JUDGE_KEY_TEST" in seen[0]  # the variable's name is shown...
    for text in seen:
        assert SECRET not in text  # ...its value never
    assert len(seen[4].splitlines()) == 2  # the stream did list the judge votes


def test_a_missing_key_fails_the_job_naming_the_variable_not_a_value(
    make_project, fake_openai, monkeypatch
):
    monkeypatch.delenv("PREFLAB_JUDGE_KEY_ABSENT", raising=False)
    project = make_project(pairs=1)
    server = fake_openai(knows_the_answer)
    judge = add_judge(
        project,
        "llm",
        "llm",
        {"base_url": server.url, "model": "m", "api_key_env": "PREFLAB_JUDGE_KEY_ABSENT"},
    )
    with pytest.raises(ValueError, match="PREFLAB_JUDGE_KEY_ABSENT is not set"):
        run_judging(judge)
    job = JudgingJob.objects.get()
    assert job.status == JobStatus.FAILED and "PREFLAB_JUDGE_KEY_ABSENT" in job.error
    assert not server.requests


def test_a_key_itself_in_the_config_is_refused(make_project, fake_openai):
    project = make_project(pairs=1)
    server = fake_openai(knows_the_answer)
    try:
        add_judge(
            project, "llm", "llm", {"base_url": server.url, "model": "m", "api_key_env": SECRET}
        )
    except ValueError as exc:
        assert SECRET not in str(exc) and "PREFLAB_JUDGE_KEY_<NAME>" in str(exc)
    else:
        raise AssertionError("a key in api_key_env was accepted")
    assert not Judge.objects.exists()
