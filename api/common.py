"""Small helpers the endpoint modules share: absolute URLs and object lookups by token."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from api.auth import project_membership, visible_memberships
from api.errors import not_found
from labeling.models import Membership, Role, Snapshot
from training.models import TrainingRun


def api_url(request: HttpRequest, path: str) -> str:
    return request.build_absolute_uri(reverse("api:api-root") + path)


def visible_project_ids(request: HttpRequest) -> Any:
    return visible_memberships(request).values("project_id")


def snapshot_for(
    request: HttpRequest, snapshot_id: int, min_role: str
) -> tuple[Snapshot, Membership]:
    snapshot = Snapshot.objects.filter(
        id=snapshot_id, project_id__in=visible_project_ids(request)
    ).first()
    if snapshot is None:
        raise not_found("snapshot")
    return snapshot, project_membership(request, snapshot.project_id, min_role)


def run_for(request: HttpRequest, run_id: int, min_role: str) -> TrainingRun:
    run = TrainingRun.objects.filter(id=run_id, project_id__in=visible_project_ids(request)).first()
    if run is None:
        raise not_found("training run")
    project_membership(request, run.project_id, min_role)
    return run


REVIEWER = Role.REVIEWER
ADMIN = Role.ADMIN
ANNOTATOR = Role.ANNOTATOR
