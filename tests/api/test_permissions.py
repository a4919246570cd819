"""Every endpoint against every kind of caller: no token, a bad/revoked/expired token, a
token without the endpoint's scope, an object of a project outside the token, a user who left
the project, a role too low for the action, and the right token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from api.models import Scope
from api.tokens import revoke_token
from labeling.models import Membership, Role
from tests.api.conftest import ALL_SCOPES, ProjectWorld, World, bearer, expired
from tests.conftest import make_user


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[ProjectWorld], str]
    scope: str
    min_role: str
    ok: int
    body: Callable[[ProjectWorld], dict[str, Any]] | None = None
    multipart: bool = False


def _upload(_: ProjectWorld) -> dict[str, Any]:
    data = b'{"prompt": "New?", "response_a": "yes", "response_b": "no"}\n'
    return {"kind": "pairs", "file": SimpleUploadedFile("new.jsonl", data)}


def _exists(w: ProjectWorld) -> bool:
    return type(w.project).objects.filter(pk=w.project.pk).exists()


def _judge_id(w: ProjectWorld) -> int:
    """The project's judge, made on first use; a missing project's is a missing judge."""
    from judging.services import add_judge
    from labeling.models import Judge

    if not _exists(w):
        return 999_999
    judge = Judge.objects.filter(project=w.project).first() or add_judge(
        w.project, "check", "programmatic", {"callable": "judging.checks.exact_answer"}
    )
    return judge.pk


def _judging_job_id(w: ProjectWorld) -> int:
    """A queued judging job of the project's judge, made on first use."""
    from judging.models import JudgingJob
    from judging.services import request_judging
    from labeling.models import Judge

    if not _exists(w):
        return 999_999
    judge = Judge.objects.get(pk=_judge_id(w))
    job = JudgingJob.objects.filter(judge=judge, status="queued").first()
    return (job or request_judging(judge)).pk


def _staff_admins(w: ProjectWorld) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(
        memberships__project_id=w.project.pk, memberships__role=Role.ADMIN
    ).update(is_staff=True)
    return {
        "name": "exact",
        "kind": "programmatic",
        "config": {"callable": "judging.checks.exact_answer"},
    }


def _evaluation_body(w: ProjectWorld) -> dict[str, Any]:
    """Start an evaluation of a second checkpoint against the base, on one held-out prompt."""
    from labeling.models import Prompt, PromptSplit
    from training.models import Checkpoint

    if not _exists(w):
        return {"checkpoint_id": 999_999}
    Prompt.objects.get_or_create(project=w.project, text="held out?", split=PromptSplit.EVAL)
    other, _ = Checkpoint.objects.get_or_create(
        project=w.project, path=f"models/{w.project.pk}-other", defaults={"name": "other"}
    )
    return {"checkpoint_id": other.pk, "opponent_ids": [w.checkpoint.pk]}


def _evaluation_id(w: ProjectWorld) -> int:
    """A queued evaluation of the project, made on first use."""
    from evaluation.models import Evaluation

    if not _exists(w):
        return 999_999
    evaluation = Evaluation.objects.filter(project=w.project).first()
    if evaluation is None:
        evaluation = Evaluation.objects.create(project=w.project, checkpoint=w.checkpoint)
    return evaluation.pk


ENDPOINTS = [
    Endpoint(
        "get_project", "get", lambda w: f"projects/{w.project.id}", "read", Role.ANNOTATOR, 200
    ),
    Endpoint(
        "list_snapshots",
        "get",
        lambda w: f"projects/{w.project.id}/snapshots",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "start_snapshot",
        "post",
        lambda w: f"projects/{w.project.id}/snapshots",
        "export",
        Role.ADMIN,
        202,
        body=lambda w: {"policy": "majority", "min_agreement": 0.5},
    ),
    Endpoint(
        "get_snapshot", "get", lambda w: f"snapshots/{w.snapshot.id}", "read", Role.REVIEWER, 200
    ),
    Endpoint(
        "download_jsonl",
        "get",
        lambda w: f"snapshots/{w.snapshot.id}/files/jsonl",
        "export",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "download_parquet",
        "get",
        lambda w: f"snapshots/{w.snapshot.id}/files/parquet",
        "export",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "list_preferences",
        "get",
        lambda w: f"projects/{w.project.id}/preferences",
        "export",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "upload",
        "post",
        lambda w: f"projects/{w.project.id}/imports",
        "upload",
        Role.ADMIN,
        201,
        body=_upload,
        multipart=True,
    ),
    Endpoint(
        "list_runs", "get", lambda w: f"projects/{w.project.id}/runs", "read", Role.REVIEWER, 200
    ),
    Endpoint(
        "start_run",
        "post",
        lambda w: f"projects/{w.project.id}/runs",
        "train",
        Role.ADMIN,
        202,
        body=lambda w: {"snapshot_id": w.snapshot.id, "start_checkpoint_id": w.checkpoint.id},
    ),
    Endpoint("get_run", "get", lambda w: f"runs/{w.run.id}", "read", Role.REVIEWER, 200),
    Endpoint("cancel_run", "post", lambda w: f"runs/{w.run.id}/cancel", "train", Role.ADMIN, 202),
    Endpoint(
        "list_checkpoints",
        "get",
        lambda w: f"projects/{w.project.id}/checkpoints",
        "read",
        Role.REVIEWER,
        200,
    ),
    # With no figures computed yet the right token gets 202 (a computation is queued).
    Endpoint(
        "get_project_quality",
        "get",
        lambda w: f"projects/{w.project.id}/quality",
        "read",
        Role.REVIEWER,
        202,
    ),
    Endpoint(
        "list_adjudications",
        "get",
        lambda w: f"projects/{w.project.id}/adjudications",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "list_flags", "get", lambda w: f"projects/{w.project.id}/flags", "read", Role.REVIEWER, 200
    ),
    # AI judges (api/judges.py); adding one also needs a staff user (_staff_admins makes the
    # project's admins staff, after the role check the matrix exercises).
    Endpoint(
        "list_judges",
        "get",
        lambda w: f"projects/{w.project.id}/judges",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "add_judge",
        "post",
        lambda w: f"projects/{w.project.id}/judges",
        "train",
        Role.ADMIN,
        201,
        body=lambda w: _staff_admins(w),
    ),
    Endpoint(
        "list_judging_jobs",
        "get",
        lambda w: f"projects/{w.project.id}/judging-jobs",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "start_judging",
        "post",
        lambda w: f"judges/{_judge_id(w)}/jobs",
        "train",
        Role.ADMIN,
        202,
        body=lambda w: {"scope": "needs_votes"},
    ),
    Endpoint(
        "get_judging_job",
        "get",
        lambda w: f"judging-jobs/{_judging_job_id(w)}",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "cancel_judging",
        "post",
        lambda w: f"judging-jobs/{_judging_job_id(w)}/cancel",
        "train",
        Role.ADMIN,
        202,
    ),
    # Evaluations, leaderboard and lineage (api/evaluations.py).
    Endpoint(
        "list_evaluations",
        "get",
        lambda w: f"projects/{w.project.id}/evaluations",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "start_evaluation",
        "post",
        lambda w: f"projects/{w.project.id}/evaluations",
        "train",
        Role.ADMIN,
        202,
        body=_evaluation_body,
    ),
    Endpoint(
        "get_evaluation",
        "get",
        lambda w: f"projects/{w.project.id}/evaluations/{_evaluation_id(w)}",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "get_leaderboard",
        "get",
        lambda w: f"projects/{w.project.id}/leaderboard",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "get_lineage",
        "get",
        lambda w: f"projects/{w.project.id}/lineage",
        "read",
        Role.REVIEWER,
        200,
    ),
    # Ranking tasks and rankings (api/rankings.py).
    Endpoint(
        "list_ranking_tasks",
        "get",
        lambda w: f"projects/{w.project.id}/ranking-tasks",
        "read",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "list_rankings",
        "get",
        lambda w: f"projects/{w.project.id}/rankings",
        "export",
        Role.REVIEWER,
        200,
    ),
    Endpoint(
        "stream_rankings",
        "get",
        lambda w: f"projects/{w.project.id}/rankings/stream",
        "export",
        Role.REVIEWER,
        200,
    ),
]


def call(client: Any, endpoint: Endpoint, target: ProjectWorld, headers: dict[str, str]) -> Any:
    url = "/api/v1/" + endpoint.path(target)
    if endpoint.method == "get":
        return client.get(url, **headers)
    body = endpoint.body(target) if endpoint.body else {}
    if endpoint.multipart:
        return client.post(url, body, **headers)
    return client.post(url, body, content_type="application/json", **headers)


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


ids = [endpoint.name for endpoint in ENDPOINTS]


def test_the_matrix_covers_every_operation_in_the_schema() -> None:
    from api.api import api

    operations = {
        operation["operationId"]
        for path in api.get_openapi_schema()["paths"].values()
        for operation in path.values()
    }
    covered = {
        endpoint.name.replace("download_jsonl", "download_snapshot") for endpoint in ENDPOINTS
    }
    assert operations - covered == {"list_projects"}  # list_projects: see test_list_projects_*


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_no_token_gets_401_with_a_bearer_challenge(endpoint, world: World, client) -> None:
    response = call(client, endpoint, world.home, {})
    assert response.status_code == 401
    assert error_code(response) == "missing_token"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
@pytest.mark.parametrize("bad", ["garbage", "revoked", "expired", "basic"])
def test_bad_revoked_or_expired_token_gets_401(endpoint, bad, world: World, client) -> None:
    if bad == "revoked":
        secret = world.token()
        from api.models import ApiToken

        revoke_token(ApiToken.objects.get(prefix=secret[:12]))
        headers, code = bearer(secret), "revoked_token"
    elif bad == "expired":
        headers, code = bearer(expired(world)), "expired_token"
    elif bad == "basic":
        headers, code = {"HTTP_AUTHORIZATION": "Basic dXNlcjpwdw=="}, "invalid_token"
    else:
        headers, code = bearer("plk_not-a-real-token"), "invalid_token"
    response = call(client, endpoint, world.home, headers)
    assert response.status_code == 401
    assert error_code(response) == code
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_token_without_the_scope_gets_403(endpoint, world: World, client) -> None:
    others = [scope for scope in ALL_SCOPES if scope != endpoint.scope]
    response = call(client, endpoint, world.home, bearer(world.token(others)))
    assert response.status_code == 403
    assert error_code(response) == "missing_scope"
    assert response.json()["error"]["details"]["required_scope"] == endpoint.scope


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_object_of_a_project_outside_the_token_gets_404(endpoint, world: World, client) -> None:
    # The owner administers both projects; the token was made for "home" only.
    response = call(client, endpoint, world.other, bearer(world.token()))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_token_of_a_user_who_left_the_project_gets_404(endpoint, world: World, client) -> None:
    secret = world.token()
    Membership.objects.filter(user=world.owner, project=world.home.project).delete()
    response = call(client, endpoint, world.home, bearer(secret))
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_missing_object_and_hidden_object_answer_alike(endpoint, world: World, client) -> None:
    hidden = call(client, endpoint, world.other, bearer(world.token()))
    gone = ProjectWorld(
        project=type(world.home.project)(id=999_999),
        snapshot=type(world.home.snapshot)(id=999_999),
        checkpoint=world.home.checkpoint,
        run=type(world.home.run)(id=999_999),
    )
    missing = call(client, endpoint, gone, bearer(world.token()))
    assert (hidden.status_code, hidden.json()) == (missing.status_code, missing.json())


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_annotator_role_is_limited_by_role_not_by_token(endpoint, world: World, client) -> None:
    annotator = make_user("token_annotator")
    Membership.objects.create(user=annotator, project=world.home.project, role=Role.ANNOTATOR)
    secret = world.token(user=annotator)
    response = call(client, endpoint, world.home, bearer(secret))
    if endpoint.min_role == Role.ANNOTATOR:
        assert response.status_code == endpoint.ok
    else:
        assert response.status_code == 403
        assert error_code(response) == "insufficient_role"


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
def test_right_token_succeeds(endpoint, world: World, client) -> None:
    response = call(client, endpoint, world.home, bearer(world.token([endpoint.scope])))
    assert response.status_code == endpoint.ok, getattr(response, "content", b"")[:500]


@pytest.mark.django_db
def test_list_projects_shows_only_the_tokens_projects_still_joined(world: World, client) -> None:
    secret = world.token([Scope.READ], projects=[world.home.project, world.other.project])
    names = [
        item["name"] for item in client.get("/api/v1/projects", **bearer(secret)).json()["items"]
    ]
    assert names == ["Home", "Other"]
    Membership.objects.filter(user=world.owner, project=world.other.project).delete()
    names = [
        item["name"] for item in client.get("/api/v1/projects", **bearer(secret)).json()["items"]
    ]
    assert names == ["Home"]


@pytest.mark.django_db
def test_list_projects_needs_a_token_and_the_read_scope(world: World, client) -> None:
    assert client.get("/api/v1/projects").status_code == 401
    response = client.get("/api/v1/projects", **bearer(world.token([Scope.EXPORT])))
    assert (response.status_code, error_code(response)) == (403, "missing_scope")
