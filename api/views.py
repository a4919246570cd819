"""Projects, snapshots (list, start, inspect, download) and imports."""

from __future__ import annotations

from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja import File, Form, Query, Router, Status
from ninja.files import UploadedFile

from api.auth import api_auth, download_auth, project_membership, request_token, require_scope
from api.common import ADMIN, ANNOTATOR, REVIEWER, api_url, snapshot_for
from api.downloads import serve_file
from api.errors import ApiError, error_responses
from api.models import Scope
from api.pagination import keyset_page
from api.schemas import (
    ImportOut,
    ProjectOut,
    ProjectPage,
    SnapshotAccepted,
    SnapshotCreate,
    SnapshotOut,
    SnapshotPage,
)
from api.tokens import token_memberships
from labeling.importers import ImportFailed, import_file
from labeling.models import Project, Snapshot
from labeling.snapshots import export_snapshot, manifest_filters, snapshot_key

router = Router(auth=api_auth, tags=["projects and snapshots"])

FILE_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def snapshot_out(request: HttpRequest, snapshot: Snapshot) -> dict[str, Any]:
    url = api_url(request, f"snapshots/{snapshot.pk}")
    ready = snapshot.is_ready
    return {
        "id": snapshot.pk,
        "project_id": snapshot.project_id,
        # The API's word for a published snapshot (docs/api.md); the row says "succeeded".
        "status": "ready" if ready else snapshot.status,
        "policy": snapshot.policy,
        "pair_conversion": snapshot.pair_conversion or None,
        "min_agreement": snapshot.min_agreement,
        "row_count": snapshot.row_count,
        "sha256": snapshot.sha256 or None,
        "parquet_sha256": snapshot.parquet_sha256 or None,
        "error": snapshot.error,
        "created_at": snapshot.created_at,
        "started_at": snapshot.started_at,
        "finished_at": snapshot.finished_at,
        "url": url,
        "files": {"jsonl": f"{url}/files/jsonl", "parquet": f"{url}/files/parquet"}
        if ready
        else None,
        "filters": manifest_filters(snapshot),
    }


@router.get("/projects", response={200: ProjectPage, **error_responses()}, url_name="projects")
def list_projects(
    request: HttpRequest,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """The projects this token reaches (and you are still a member of). Scope: read."""
    require_scope(request, Scope.READ)
    memberships = token_memberships(request_token(request))
    roles = dict(memberships.values_list("project_id", "role"))
    projects, next_cursor = keyset_page(
        Project.objects.filter(id__in=list(roles)), cursor, limit, descending=False
    )
    items = [
        {
            "id": project.pk,
            "name": project.name,
            "role": roles[project.pk],
            "overlap": project.overlap,
            "base_model": project.base_model,
            "created_at": project.created_at,
        }
        for project in projects
    ]
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/projects/{project_id}", response={200: ProjectOut, **error_responses()}, url_name="project"
)
def get_project(request: HttpRequest, project_id: int) -> dict[str, Any]:
    """One project. Scope: read."""
    require_scope(request, Scope.READ)
    membership = project_membership(request, project_id, ANNOTATOR)
    project = membership.project
    return {
        "id": project.pk,
        "name": project.name,
        "role": membership.role,
        "overlap": project.overlap,
        "base_model": project.base_model,
        "created_at": project.created_at,
    }


@router.get(
    "/projects/{project_id}/snapshots",
    response={200: SnapshotPage, **error_responses()},
    url_name="snapshots",
)
def list_snapshots(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """A project's snapshots, newest first. Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    membership = project_membership(request, project_id, REVIEWER)
    snapshots, next_cursor = keyset_page(
        Snapshot.objects.filter(project=membership.project), cursor, limit, descending=True
    )
    return {
        "items": [snapshot_out(request, snapshot) for snapshot in snapshots],
        "next_cursor": next_cursor,
    }


@router.post(
    "/projects/{project_id}/snapshots",
    response={202: SnapshotAccepted, **error_responses()},
    url_name="snapshot_create",
)
def start_snapshot(
    request: HttpRequest, project_id: int, payload: SnapshotCreate, response: HttpResponse
) -> Status[dict[str, Any]]:
    """Queue a new snapshot; poll `poll_url` until its status is ready or failed.

    Scope: export; role: admin."""
    require_scope(request, Scope.EXPORT)
    membership = project_membership(request, project_id, ADMIN)
    try:
        snapshot = export_snapshot(
            membership.project,
            payload.policy,
            payload.min_agreement,
            created_by=request_token(request).user,
            filters=payload.filters.model_dump() if payload.filters is not None else None,
            pair_conversion=payload.pair_conversion or "",
        )
    except ValueError as exc:
        raise ApiError(422, "snapshot_refused", str(exc)) from None
    body = snapshot_out(request, snapshot)
    response["Location"] = body["url"]
    return Status(202, {"status": snapshot.status, "poll_url": body["url"], "snapshot": body})


@router.get(
    "/snapshots/{snapshot_id}",
    response={200: SnapshotOut, **error_responses()},
    url_name="snapshot",
)
def get_snapshot(request: HttpRequest, snapshot_id: int) -> dict[str, Any]:
    """A snapshot: its status while it builds; row count, hashes and file URLs when ready.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    snapshot, _ = snapshot_for(request, snapshot_id, REVIEWER)
    return snapshot_out(request, snapshot)


_DOWNLOAD_RESPONSES: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "The whole file, streamed.",
            "headers": {
                "ETag": {
                    "schema": {"type": "string"},
                    "description": "The file's SHA-256, quoted.",
                },
                "Content-Length": {"schema": {"type": "integer"}},
                "Accept-Ranges": {"schema": {"type": "string"}},
            },
            "content": {
                "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.apache.parquet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        },
        "206": {
            "description": "One byte range (Range: bytes=N- resumes a download).",
            "headers": {"Content-Range": {"schema": {"type": "string"}}},
            "content": {
                "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.apache.parquet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        },
        "304": {"description": "If-None-Match matched the ETag: you have these bytes."},
    }
}


@router.api_operation(
    ["GET", "HEAD"],
    "/snapshots/{snapshot_id}/files/{file_format}",
    auth=download_auth,
    response=error_responses(409, 416),
    openapi_extra=_DOWNLOAD_RESPONSES,
    url_name="snapshot_file",
)
def download_snapshot(
    request: HttpRequest, snapshot_id: int, file_format: Literal["jsonl", "parquet"]
) -> HttpResponseBase:
    """Download a ready snapshot's data.jsonl or data.parquet.

    ETag is the file's SHA-256; single byte ranges are served (206), so `curl -C -` resumes;
    If-None-Match answers 304. Scope: export; role: reviewer or admin. Counts against the
    download rate limit, once per request."""
    require_scope(request, Scope.EXPORT)
    snapshot, _ = snapshot_for(request, snapshot_id, REVIEWER)
    if not snapshot.is_ready:
        raise ApiError(
            409,
            "snapshot_not_ready",
            f"Snapshot {snapshot.pk} is {snapshot.status}; poll it until it is ready.",
            details={"status": snapshot.status},
        )
    sha256 = snapshot.sha256 if file_format == "jsonl" else snapshot.parquet_sha256
    filename = f"preflab-snapshot-{snapshot.pk}-{snapshot.sha256[:12]}.{file_format}"
    key = snapshot_key(snapshot, file_format)
    response = serve_file(request, key, sha256, filename, FILE_TYPES[file_format])
    if request.method == "HEAD":
        head = HttpResponse(status=response.status_code)
        for name, value in response.items():
            head[name] = value
        response.close()
        return head
    return response


@router.post(
    "/projects/{project_id}/imports",
    response={201: ImportOut, **error_responses(413)},
    url_name="imports",
)
def upload(
    request: HttpRequest,
    project_id: int,
    kind: Form[Literal["prompts", "pairs", "preferences", "rankings", "ranked"]],
    file: File[UploadedFile],
    on_duplicate: Form[Literal["refuse", "skip"]] = "refuse",
) -> Status[dict[str, Any]]:
    """Import prompts, pairs, preferences, ranking tasks (`rankings`) or existing rankings
    (`ranked`) from a JSONL or CSV file (multipart).

    All or nothing, exactly as the web import: one bad row and nothing is written; the 422
    answer lists the bad rows by line. Rows that repeat an earlier row exactly refuse the
    file (`on_duplicate=refuse`, the default) or are left out (`skip`; their lines are in
    `skipped_duplicates`). Scope: upload; role: admin."""
    require_scope(request, Scope.UPLOAD)
    membership = project_membership(request, project_id, ADMIN)
    limit = settings.PREFLAB_IMPORT_MAX_BYTES
    if file.size is not None and file.size > limit:
        raise ApiError(
            413,
            "file_too_large",
            f"The file is {file.size:,} bytes; the limit is {limit:,} bytes (split it up).",
            details={"size": file.size, "limit": limit},
        )
    try:
        result = import_file(
            membership.project, file.read(), file.name or "upload", kind, on_duplicate
        )
    except ImportFailed as exc:
        raise ApiError(
            422,
            "import_failed",
            "Nothing was imported: fix the rows listed in details.errors and upload again.",
            details={"errors": exc.errors, "total_errors": exc.total_errors},
        ) from None
    return Status(
        201,
        {
            "kind": result.kind,
            "prompts": result.prompts,
            "comparisons": result.comparisons,
            "votes": result.votes,
            "round": result.round_number,
            "skipped_duplicates": result.skipped_duplicates,
            "ranking_tasks": result.ranking_tasks,
            "rankings": result.rankings,
        },
    )
