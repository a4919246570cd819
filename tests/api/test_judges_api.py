"""The judges API: list, add (staff), start, inspect and cancel jobs; judge votes in the
preferences stream with their source."""

from __future__ import annotations

import json

import pytest

from api.models import Scope
from judging.models import JudgingJob
from judging.services import add_judge, judge_comparisons
from labeling.models import JobStatus, Judge
from tests.api.conftest import bearer

CHECK = {"callable": "tests.judging.callables.shorter_is_better"}


@pytest.fixture(autouse=True)
def judge_modules(settings):
    settings.PREFLAB_JUDGE_CALLABLE_MODULES = ["judging.checks", "tests.judging"]


def test_listing_judges_needs_read_and_hides_other_projects(api_client, world):
    add_judge(world.home.project, "short", "programmatic", CHECK)
    add_judge(world.other.project, "elsewhere", "programmatic", CHECK)
    secret = world.token([Scope.READ])
    answer = api_client.get(f"/api/v1/projects/{world.home.project.pk}/judges", **bearer(secret))
    assert answer.status_code == 200
    assert [judge["name"] for judge in answer.json()["items"]] == ["short"]
    assert answer.json()["items"][0]["config"] == CHECK
    outside = api_client.get(f"/api/v1/projects/{world.other.project.pk}/judges", **bearer(secret))
    assert outside.status_code == 404


def test_only_a_staff_users_token_adds_a_judge(api_client, world):
    url = f"/api/v1/projects/{world.home.project.pk}/judges"
    body = json.dumps({"name": "short", "kind": "programmatic", "config": CHECK})
    secret = world.token([Scope.TRAIN])
    refused = api_client.post(url, body, content_type="application/json", **bearer(secret))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "staff_only"
    world.owner.is_staff = True
    world.owner.save()
    added = api_client.post(url, body, content_type="application/json", **bearer(secret))
    assert added.status_code == 201 and added.json()["version"] == 1
    bad = json.dumps(
        {
            "name": "x",
            "kind": "llm",
            "config": {"base_url": "http://169.254.169.254/v1", "model": "m"},
        }
    )
    refused = api_client.post(url, bad, content_type="application/json", **bearer(secret))
    assert (
        refused.status_code == 422
        and "PREFLAB_JUDGE_ALLOWED_HOSTS" in refused.json()["error"]["message"]
    )
    assert Judge.objects.filter(project=world.home.project).count() == 1


def test_start_poll_and_cancel_a_judging_job(api_client, world):
    judge = add_judge(world.home.project, "short", "programmatic", CHECK)
    secret = world.token([Scope.TRAIN, Scope.READ, Scope.EXPORT])
    started = api_client.post(
        f"/api/v1/judges/{judge.pk}/jobs",
        json.dumps({"scope": "round", "round": 1}),
        content_type="application/json",
        **bearer(secret),
    )
    assert started.status_code == 202, started.json()
    job_id = started.json()["job"]["id"]
    assert started.json()["job"]["total"] == 2
    judge_comparisons(job_id)  # what the worker's task does
    polled = api_client.get(started.json()["poll_url"], **bearer(secret)).json()
    assert polled["status"] == JobStatus.SUCCEEDED and polled["consistent"] == 2
    cancel = api_client.post(f"/api/v1/judging-jobs/{job_id}/cancel", **bearer(secret))
    assert cancel.status_code == 409
    queued = api_client.post(
        f"/api/v1/judges/{judge.pk}/jobs",
        json.dumps({}),
        content_type="application/json",
        **bearer(secret),
    ).json()["job"]["id"]
    assert (
        api_client.post(f"/api/v1/judging-jobs/{queued}/cancel", **bearer(secret)).status_code
        == 202
    )
    assert JudgingJob.objects.get(pk=queued).status == JobStatus.CANCELLED

    listed = api_client.get(
        f"/api/v1/projects/{world.home.project.pk}/judging-jobs", **bearer(secret)
    )
    assert [job["id"] for job in listed.json()["items"]] == [queued, job_id]

    stream = api_client.get(
        f"/api/v1/projects/{world.home.project.pk}/preferences?source=judge", **bearer(secret)
    )
    rows = [json.loads(line) for line in b"".join(stream.streaming_content).splitlines()]
    assert len(rows) == 2 and {row["source"] for row in rows} == {"judge"}
    assert {row["judge"] for row in rows} == {"short"} and rows[0]["annotator"] is None
    everything = api_client.get(
        f"/api/v1/projects/{world.home.project.pk}/preferences", **bearer(secret)
    )
    sources = {
        json.loads(line)["source"] for line in b"".join(everything.streaming_content).splitlines()
    }
    assert sources == {"judge", "imported"}


def test_a_reader_cannot_start_judging(api_client, world):
    judge = add_judge(world.home.project, "short", "programmatic", CHECK)
    secret = world.token([Scope.READ])
    answer = api_client.post(
        f"/api/v1/judges/{judge.pk}/jobs",
        json.dumps({}),
        content_type="application/json",
        **bearer(secret),
    )
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "missing_scope"
