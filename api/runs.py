"""Training runs (list, start, inspect, cancel) and checkpoints."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from api.auth import api_auth, project_membership, request_token, require_scope
from api.common import ADMIN, REVIEWER, api_url, run_for
from api.errors import ApiError, error_responses, not_found
from api.models import Scope
from api.pagination import keyset_page
from api.schemas import CheckpointPage, RunAccepted, RunCreate, RunOut, RunPage
from labeling.models import Snapshot
from training import services
from training.models import Checkpoint, TrainingRun

router = Router(auth=api_auth, tags=["training"])


def run_out(request: HttpRequest, run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "project_id": run.project_id,
        "snapshot_id": run.snapshot_id,
        "start_checkpoint_id": run.start_checkpoint_id,
        "reference_checkpoint_id": run.reference_checkpoint_id,
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "progress_percent": run.progress_percent,
        "eta_seconds": run.eta_seconds,
        "config": run.config,
        "latest_metrics": run.latest_metrics,
        "summary": run.summary,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "heartbeat_at": run.heartbeat_at,
        "url": api_url(request, f"runs/{run.pk}"),
    }


@router.get(
    "/projects/{project_id}/runs", response={200: RunPage, **error_responses()}, url_name="runs"
)
def list_runs(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """A project's training runs, newest first. Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    runs, next_cursor = keyset_page(
        TrainingRun.objects.filter(project=project), cursor, limit, descending=True
    )
    return {"items": [run_out(request, run) for run in runs], "next_cursor": next_cursor}


def _checkpoint(project_id: int, checkpoint_id: int | None) -> Checkpoint | None:
    if checkpoint_id is None:
        return None
    checkpoint = Checkpoint.objects.filter(project_id=project_id, id=checkpoint_id).first()
    if checkpoint is None:
        raise not_found("checkpoint in this project")
    return checkpoint


@router.post(
    "/projects/{project_id}/runs",
    response={202: RunAccepted, **error_responses()},
    url_name="run_create",
)
def start_run(
    request: HttpRequest, project_id: int, payload: RunCreate, response: HttpResponse
) -> Status[dict[str, Any]]:
    """Queue a DPO training run on a ready snapshot; poll `poll_url` for its progress.

    Snapshot and checkpoints must belong to the project (404 otherwise). `hyperparameters`
    may set only the run parameters listed in docs/api.md, within their bounds; any other key
    (paths, cache locations, `trust_remote_code`) or an out-of-range value gets 422
    `run_refused` whose `details.key` names it. Omitted parameters take their defaults, and
    the run's `config` shows every value it trains with. Scope: train; role: admin."""
    require_scope(request, Scope.TRAIN)
    project = project_membership(request, project_id, ADMIN).project
    snapshot = Snapshot.objects.filter(project=project, id=payload.snapshot_id).first()
    if snapshot is None:
        raise not_found("snapshot in this project")
    start = _checkpoint(project.pk, payload.start_checkpoint_id)
    reference = _checkpoint(project.pk, payload.reference_checkpoint_id)
    if start is None:  # unreachable: start_checkpoint_id is required
        raise not_found("checkpoint in this project")
    try:
        run = services.start_run(
            snapshot,
            start,
            payload.hyperparameters,
            reference_checkpoint=reference,
            created_by=request_token(request).user,
        )
    except services.RunRefused as exc:
        details = {"key": exc.key} if exc.key else None
        raise ApiError(422, "run_refused", str(exc), details=details) from None
    body = run_out(request, run)
    response["Location"] = body["url"]
    return Status(202, {"status": run.status, "poll_url": body["url"], "run": body})


@router.get("/runs/{run_id}", response={200: RunOut, **error_responses()}, url_name="run")
def get_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """A training run: status, progress, latest metrics, errors. Scope: read; role: reviewer."""
    require_scope(request, Scope.READ)
    return run_out(request, run_for(request, run_id, REVIEWER))


@router.post(
    "/runs/{run_id}/cancel",
    response={202: RunAccepted, **error_responses(409)},
    url_name="run_cancel",
)
def cancel_run(request: HttpRequest, run_id: int) -> Status[dict[str, Any]]:
    """Ask a run to stop: a queued run is cancelled at once, a running one saves a checkpoint
    and stops at its next step. 409 `run_finished` if it has already ended.

    Scope: train; role: admin."""
    require_scope(request, Scope.TRAIN)
    run = run_for(request, run_id, ADMIN)
    if not services.request_cancel(run):
        raise ApiError(
            409,
            "run_finished",
            f"Run {run.pk} has already ended ({run.status}).",
            details={"status": run.status},
        )
    run.refresh_from_db()
    body = run_out(request, run)
    return Status(202, {"status": run.status, "poll_url": body["url"], "run": body})


@router.get(
    "/projects/{project_id}/checkpoints",
    response={200: CheckpointPage, **error_responses()},
    url_name="checkpoints",
)
def list_checkpoints(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """A project's checkpoints (base models and run outputs), newest first.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    checkpoints, next_cursor = keyset_page(
        Checkpoint.objects.filter(project=project), cursor, limit, descending=True
    )
    items = [
        {
            "id": checkpoint.pk,
            "project_id": checkpoint.project_id,
            "run_id": checkpoint.run_id,
            "name": checkpoint.name,
            "path": checkpoint.path,
            "step": checkpoint.step,
            "is_final": checkpoint.is_final,
            "metrics": checkpoint.metrics,
            "created_at": checkpoint.created_at,
        }
        for checkpoint in checkpoints
    ]
    return {"items": items, "next_cursor": next_cursor}
