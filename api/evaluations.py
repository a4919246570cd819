"""Evaluations (start, list, read), the project's leaderboard and its checkpoint lineage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from api.auth import api_auth, project_membership, request_token, require_scope
from api.common import ADMIN, REVIEWER, api_url
from api.errors import ApiError, error_responses, not_found
from api.models import Scope
from api.pagination import keyset_page
from evaluation import services
from evaluation.models import Evaluation
from training.models import Checkpoint

router = Router(auth=api_auth, tags=["evaluation"])


class EvaluationCreate(Schema):
    checkpoint_id: int
    opponent_ids: list[int] = Field(
        default_factory=list, description="Empty: the checkpoint's parent (its run's start)."
    )
    generation: dict[str, Any] = Field(
        default_factory=dict,
        description="temperature, top_p, max_new_tokens, seed (the sampling parameters).",
    )
    prompt_limit: int | None = Field(None, description="At most this many held-out prompts.")
    min_votes: int | None = Field(
        None, description="Votes before the figures stop being provisional."
    )


class EvaluationOut(Schema):
    id: int
    project_id: int
    checkpoint_id: int
    opponent_ids: list[int]
    status: str
    round: int | None = Field(description="The evaluation round's number, once it exists.")
    generation: dict[str, Any]
    prompt_limit: int | None
    min_votes: int
    comparisons_created: int
    dropped_identical: int
    provisional: bool
    results: dict[str, Any] = Field(
        description="votes, votes_by_source, provisional, opponents (win_rate and "
        "length_controlled with intervals), lengths, gate (docs/evaluation.md)."
    )
    error: str
    created_at: datetime
    finished_at: datetime | None
    url: str


class EvaluationPage(Schema):
    items: list[EvaluationOut]
    next_cursor: str | None


class EvaluationAccepted(Schema):
    status: str
    poll_url: str
    evaluation: EvaluationOut


def evaluation_out(
    request: HttpRequest, evaluation: Evaluation, *, with_results: bool = True
) -> dict[str, Any]:
    results = services.get_results(evaluation) if with_results else evaluation.results
    return {
        "id": evaluation.pk,
        "project_id": evaluation.project_id,
        "checkpoint_id": evaluation.checkpoint_id,
        "opponent_ids": sorted(o.pk for o in evaluation.opponents.all()),
        "status": evaluation.status,
        "round": evaluation.round.number if evaluation.round else None,
        "generation": evaluation.generation,
        "prompt_limit": evaluation.prompt_limit,
        "min_votes": evaluation.min_votes,
        "comparisons_created": evaluation.comparisons_created,
        "dropped_identical": evaluation.dropped_identical,
        "provisional": evaluation.provisional,
        "results": results or {},
        "error": evaluation.error,
        "created_at": evaluation.created_at,
        "finished_at": evaluation.finished_at,
        "url": api_url(request, f"projects/{evaluation.project_id}/evaluations/{evaluation.pk}"),
    }


@router.get(
    "/projects/{project_id}/evaluations",
    response={200: EvaluationPage, **error_responses()},
    url_name="evaluations",
)
def list_evaluations(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    """A project's evaluations, newest first, with their figures as last computed.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    evaluations, next_cursor = keyset_page(
        Evaluation.objects.filter(project=project).select_related("round"),
        cursor,
        limit,
        descending=True,
    )
    items = [evaluation_out(request, e, with_results=False) for e in evaluations]
    return {"items": items, "next_cursor": next_cursor}


@router.post(
    "/projects/{project_id}/evaluations",
    response={202: EvaluationAccepted, **error_responses()},
    url_name="evaluation_create",
)
def start_evaluation(
    request: HttpRequest, project_id: int, payload: EvaluationCreate, response: HttpResponse
) -> Status[dict[str, Any]]:
    """Queue an evaluation of a checkpoint against its parent (default) or the opponents
    named, on the project's held-out prompts. Checkpoints must belong to the project (404);
    bad settings or no held-out prompts get 422 `evaluation_refused` with `details.key`.

    Scope: train; role: admin."""
    require_scope(request, Scope.TRAIN)
    project = project_membership(request, project_id, ADMIN).project
    checkpoint = Checkpoint.objects.filter(project=project, id=payload.checkpoint_id).first()
    if checkpoint is None:
        raise not_found("checkpoint in this project")
    opponents = list(Checkpoint.objects.filter(project=project, id__in=payload.opponent_ids))
    if len(opponents) != len(set(payload.opponent_ids)):
        raise not_found("checkpoint in this project")
    try:
        evaluation = services.start_evaluation(
            project,
            checkpoint,
            opponents=opponents,
            generation=payload.generation,
            prompt_limit=payload.prompt_limit,
            min_votes=payload.min_votes,
            created_by=request_token(request).user,
        )
    except services.EvaluationRefused as exc:
        details = {"key": exc.key} if exc.key else None
        raise ApiError(422, "evaluation_refused", str(exc), details=details) from None
    body = evaluation_out(request, evaluation)
    response["Location"] = body["url"]
    return Status(202, {"status": evaluation.status, "poll_url": body["url"], "evaluation": body})


@router.get(
    "/projects/{project_id}/evaluations/{evaluation_id}",
    response={200: EvaluationOut, **error_responses()},
    url_name="evaluation",
)
def get_evaluation(request: HttpRequest, project_id: int, evaluation_id: int) -> dict[str, Any]:
    """One evaluation with its figures, recomputed if its votes changed since.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    evaluation = (
        Evaluation.objects.filter(project=project, id=evaluation_id)
        .select_related("round", "checkpoint", "project")
        .first()
    )
    if evaluation is None:
        raise not_found("evaluation in this project")
    return evaluation_out(request, evaluation)


@router.get(
    "/projects/{project_id}/leaderboard",
    response={200: dict[str, Any], **error_responses()},
    url_name="leaderboard",
)
def get_leaderboard(request: HttpRequest, project_id: int) -> dict[str, Any]:
    """Bradley-Terry with ties over every checkpoint in the project's evaluation rounds:
    rows (checkpoint, name, score, ci_low, ci_high, votes, wins, losses, ties, provisional,
    separated, promoted), best first. Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    return services.leaderboard(project)


@router.get(
    "/projects/{project_id}/lineage",
    response={200: dict[str, Any], **error_responses()},
    url_name="lineage",
)
def get_lineage(request: HttpRequest, project_id: int) -> dict[str, Any]:
    """The checkpoint tree: base models as roots, each with children (the final checkpoints
    of runs started from it), its run, snapshot, rounds and evaluations.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    return {"roots": [node.as_dict() for node in services.lineage(project)]}
