"""AI judges: list and add judges, start, inspect and cancel judging jobs (docs/judges.md).

Adding a judge runs code or reaches a network from the server, so it needs a staff user's
token as well as the project's admin role. Starting and cancelling jobs uses the `train`
scope (like training runs): both spend compute on the project's behalf.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status

from api.auth import api_auth, project_membership, request_token, require_scope
from api.common import ADMIN, REVIEWER, api_url, visible_project_ids
from api.errors import ApiError, error_responses, not_found
from api.models import Scope
from api.pagination import keyset_page
from judging import services
from judging.kinds import JudgeConfigError
from judging.models import JudgingJob, JudgingScope
from labeling.models import Judge, Round

router = Router(auth=api_auth, tags=["judges"])


class JudgeOut(Schema):
    id: int
    project_id: int
    name: str
    kind: str
    version: int
    enabled: bool
    config: dict[str, Any]
    created_at: datetime


class JudgeList(Schema):
    items: list[JudgeOut]


class JudgeCreate(Schema):
    name: str
    kind: str
    config: dict[str, Any]


class JudgingJobOut(Schema):
    id: int
    project_id: int
    judge_id: int
    judge_version: int
    scope: str
    round: int | None
    status: str
    total: int
    done: int
    progress_percent: int
    consistent: int
    inconsistent: int
    unparseable: int
    errors: int
    calls: int
    tokens: int
    seconds: float
    error: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str


class JudgingJobPage(Schema):
    items: list[JudgingJobOut]
    next_cursor: str | None


class JudgingCreate(Schema):
    scope: str = JudgingScope.NEEDS_VOTES
    round: int | None = None


class JudgingAccepted(Schema):
    status: str
    poll_url: str
    job: JudgingJobOut


def judge_out(judge: Judge) -> dict[str, Any]:
    return {
        "id": judge.pk,
        "project_id": judge.project_id,
        "name": judge.name,
        "kind": judge.kind,
        "version": judge.version,
        "enabled": judge.enabled,
        "config": services.public_config(judge),
        "created_at": judge.created_at,
    }


def job_out(request: HttpRequest, job: JudgingJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "project_id": job.project_id,
        "judge_id": job.judge_id,
        "judge_version": job.judge_version,
        "scope": job.scope,
        "round": job.round.number if job.round_id and job.round else None,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "progress_percent": job.progress_percent,
        "consistent": job.consistent,
        "inconsistent": job.inconsistent,
        "unparseable": job.unparseable,
        "errors": job.errors,
        "calls": job.calls,
        "tokens": job.tokens,
        "seconds": job.seconds,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "url": api_url(request, f"judging-jobs/{job.pk}"),
    }


@router.get(
    "/projects/{project_id}/judges",
    response={200: JudgeList, **error_responses()},
    url_name="judges",
)
def list_judges(request: HttpRequest, project_id: int) -> dict[str, Any]:
    """A project's judges with their configuration (never an API key: a config only names
    the variable that holds it). Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    judges = Judge.objects.filter(project=project).order_by("name")
    return {"items": [judge_out(judge) for judge in judges]}


@router.post(
    "/projects/{project_id}/judges",
    response={201: JudgeOut, **error_responses()},
    url_name="judge_create",
)
def add_judge(
    request: HttpRequest, project_id: int, payload: JudgeCreate
) -> Status[dict[str, Any]]:
    """Add a judge: kind `programmatic`, `llm` or `reward_model` with its config
    (docs/judges.md). A bad config gets 422 `judge_refused` naming the key. Scope: train;
    role: admin, and the token's user must be staff."""
    token = require_scope(request, Scope.TRAIN)
    project = project_membership(request, project_id, ADMIN).project
    if not token.user.is_staff:
        raise ApiError(
            403, "staff_only", "Only staff add judges: a judge runs code or reaches a network."
        )
    try:
        judge = services.add_judge(
            project, payload.name, payload.kind, payload.config, created_by=token.user
        )
    except (JudgeConfigError, services.JudgingRefused) as exc:
        raise ApiError(422, "judge_refused", str(exc)) from None
    return Status(201, judge_out(judge))


@router.get(
    "/projects/{project_id}/judging-jobs",
    response={200: JudgingJobPage, **error_responses()},
    url_name="judging_jobs",
)
def list_judging_jobs(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """A project's judging jobs, newest first. Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    jobs, next_cursor = keyset_page(
        JudgingJob.objects.filter(project=project).select_related("round"),
        cursor,
        limit,
        descending=True,
    )
    return {"items": [job_out(request, job) for job in jobs], "next_cursor": next_cursor}


def _judge_for(request: HttpRequest, judge_id: int, min_role: str) -> Judge:
    # The same 404 whether the judge does not exist or is outside the token's projects.
    judge = Judge.objects.filter(id=judge_id, project_id__in=visible_project_ids(request)).first()
    if judge is None:
        raise not_found("judge")
    project_membership(request, judge.project_id, min_role)
    return judge


def _job_for(request: HttpRequest, job_id: int, min_role: str) -> JudgingJob:
    job = (
        JudgingJob.objects.select_related("round")
        .filter(id=job_id, project_id__in=visible_project_ids(request))
        .first()
    )
    if job is None:
        raise not_found("judging job")
    project_membership(request, job.project_id, min_role)
    return job


@router.post(
    "/judges/{judge_id}/jobs",
    response={202: JudgingAccepted, **error_responses()},
    url_name="judging_start",
)
def start_judging(
    request: HttpRequest, judge_id: int, payload: JudgingCreate, response: HttpResponse
) -> Status[dict[str, Any]]:
    """Queue a judging job: `scope` "needs_votes" (comparisons that still need votes) or
    "round" with `round` (its number). 422 `judging_refused` for a disabled judge, an
    unknown scope or round. Scope: train; role: admin."""
    require_scope(request, Scope.TRAIN)
    judge = _judge_for(request, judge_id, ADMIN)
    round_ = None
    if payload.round is not None:
        round_ = Round.objects.filter(project_id=judge.project_id, number=payload.round).first()
        if round_ is None:
            raise ApiError(422, "judging_refused", f"This project has no round {payload.round}.")
    try:
        job = services.start_judging(
            judge, scope=payload.scope, round=round_, created_by=request_token(request).user
        )
    except services.JudgingRefused as exc:
        raise ApiError(422, "judging_refused", str(exc)) from None
    body = job_out(request, job)
    response["Location"] = body["url"]
    return Status(202, {"status": job.status, "poll_url": body["url"], "job": body})


@router.get(
    "/judging-jobs/{job_id}",
    response={200: JudgingJobOut, **error_responses()},
    url_name="judging_job",
)
def get_judging_job(request: HttpRequest, job_id: int) -> dict[str, Any]:
    """A judging job: status, progress, outcome counts and cost. Scope: read; role: reviewer."""
    require_scope(request, Scope.READ)
    return job_out(request, _job_for(request, job_id, REVIEWER))


@router.post(
    "/judging-jobs/{job_id}/cancel",
    response={202: JudgingAccepted, **error_responses(409)},
    url_name="judging_cancel",
)
def cancel_judging(request: HttpRequest, job_id: int) -> Status[dict[str, Any]]:
    """Ask a judging job to stop: a queued one is cancelled at once, a running one after its
    current batch (what it judged is kept). 409 `job_finished` if it has ended.
    Scope: train; role: admin."""
    require_scope(request, Scope.TRAIN)
    job = _job_for(request, job_id, ADMIN)
    if not job.is_active:
        raise ApiError(
            409, "job_finished", f"Judging job {job.pk} has already ended ({job.status})."
        )
    job = services.request_cancel(job)
    body = job_out(request, job)
    return Status(202, {"status": job.status, "poll_url": body["url"], "job": body})
