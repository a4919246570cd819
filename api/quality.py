"""A project's quality figures (docs/quality.md) from the cached quality report, as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from api.auth import api_auth, project_membership, require_scope
from api.common import REVIEWER, api_url
from api.errors import ApiError, error_responses
from api.models import Scope
from labeling.quality.jobs import get_quality, reported_rankings

router = Router(auth=api_auth, tags=["quality"])


class QualityJob(Schema):
    id: int
    status: str = Field(description="queued or running")


class QualityOut(Schema):
    project_id: int
    round: int | None = Field(description="The round number, or null for the whole project.")
    report_id: int
    computed_at: datetime
    vote_count: int = Field(description="Human votes the figures cover.")
    current_vote_count: int = Field(description="Human votes in the scope now.")
    ranking_count: int = Field(0, description="Human rankings the figures cover.")
    current_ranking_count: int = Field(0, description="Human rankings in the scope now.")
    stale: bool = Field(
        description="Whether the votes or rankings changed since the figures were computed."
    )
    computing: QualityJob | None = Field(description="A newer computation under way, if any.")
    figures: dict[str, Any] = Field(
        description="Every figure: project, rounds, annotators, flagged, thresholds, "
        "annotator_names, votes, and rankings where the scope has human rankings "
        "(docs/quality.md)."
    )


class QualityAccepted(Schema):
    status: str = Field(description="The computation's state: queued or running.")
    message: str
    report_id: int
    poll_url: str


@router.get(
    "/projects/{project_id}/quality",
    response={200: QualityOut, 202: QualityAccepted, **error_responses()},
    url_name="quality",
)
def get_project_quality(
    request: HttpRequest,
    project_id: int,
    round: int | None = Query(None, ge=1, description="A round number: that round's figures."),
) -> Any:
    """The newest computed quality figures of the project, or of one round.

    With no figures yet, a computation is queued and the answer is 202: poll the same URL.
    When the votes changed since the figures were computed, they are returned with
    `stale: true` and a new computation is queued (at most one at a time).

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    membership = project_membership(request, project_id, REVIEWER)
    project = membership.project
    round_ = None
    if round is not None:
        round_ = project.rounds.filter(number=round).first()
        if round_ is None:
            raise ApiError(404, "not_found", f"Project {project_id} has no round {round}.")
    cached = get_quality(project, round_)
    url = api_url(request, f"projects/{project_id}/quality")
    if round is not None:
        url += f"?round={round}"
    report = cached.report
    if report is None:
        if cached.computing is None:
            failed = cached.failed
            raise ApiError(
                404,
                "no_quality_report",
                "The quality figures could not be computed"
                + (f": {failed.error}" if failed is not None else ".")
                + " A reviewer can press Recompute on the quality page.",
            )
        return Status(
            202,
            {
                "status": cached.computing.status,
                "message": "No quality figures yet; they are being computed. Poll poll_url.",
                "report_id": cached.computing.pk,
                "poll_url": url,
            },
        )
    computing = cached.computing
    return {
        "project_id": project.pk,
        "round": round_.number if round_ is not None else None,
        "report_id": report.pk,
        "computed_at": report.finished_at or report.created_at,
        "vote_count": report.vote_count,
        "current_vote_count": cached.current_votes,
        "ranking_count": reported_rankings(report),
        "current_ranking_count": cached.current_rankings,
        "stale": cached.stale,
        "computing": {"id": computing.pk, "status": computing.status} if computing else None,
        "figures": report.data,
    }
