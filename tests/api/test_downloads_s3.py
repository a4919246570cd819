"""Snapshots built into S3 (a real S3 API server, moto) and downloaded from it: streamed with
the SHA-256 ETag, ranges and 304, or redirected to a presigned URL that serves the ranges."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from core.artifacts import get_store
from labeling.snapshots import snapshot_key
from tests.api.conftest import World, bearer
from tests.artifacts import conftest as s3_fixtures
from tests.artifacts.conftest import S3

pytestmark = pytest.mark.django_db
# The real S3 API server and a bucket per test (tests/artifacts/conftest.py).
s3_server = s3_fixtures.s3_server
s3 = s3_fixtures.s3

FILES = ("data.jsonl", "data.parquet", "manifest.json", "README.md")


def url(snapshot: Any, file_format: str = "jsonl") -> str:
    return f"/api/v1/snapshots/{snapshot.id}/files/{file_format}"


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def s3_bytes(s3: S3, key: str) -> bytes:
    return bytes(s3.client.get_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{key}")["Body"].read())


def test_a_snapshot_is_built_into_the_bucket_and_not_onto_the_web_disk(
    s3: S3, world: World, settings: Any
) -> None:
    snapshot = world.home.snapshot
    prefix = f"snapshots/{snapshot.project_id}/{snapshot.pk}"
    assert snapshot.path == prefix  # a key, not a path of this machine
    assert {f"{prefix}/{name}" for name in FILES} <= set(s3.objects())
    assert hashlib.sha256(s3_bytes(s3, f"{prefix}/data.jsonl")).hexdigest() == snapshot.sha256
    parquet = s3_bytes(s3, f"{prefix}/data.parquet")
    assert hashlib.sha256(parquet).hexdigest() == snapshot.parquet_sha256
    assert not Path(settings.ARTIFACT_ROOT).exists()
    work = Path(settings.PREFLAB_WORK_DIR)
    assert not [path for path in work.rglob("*") if path.is_file()]  # the build's copy is gone


def test_a_published_snapshot_is_never_overwritten(s3: S3, world: World, tmp_path: Path) -> None:
    key = snapshot_key(world.home.snapshot)
    before = s3_bytes(s3, key)
    (tmp_path / "other.jsonl").write_bytes(b'{"prompt": "tampered"}\n')
    with pytest.raises(FileExistsError):
        get_store().publish(tmp_path / "other.jsonl", key, immutable=True)
    assert s3_bytes(s3, key) == before


def test_streamed_download_resumes_with_ranges_and_answers_304(
    s3: S3, world: World, client: Any
) -> None:
    snapshot = world.home.snapshot
    headers = bearer(world.token(["export"]))
    full = client.get(url(snapshot), **headers)
    data = body(full)
    assert full.status_code == 200 and full["ETag"] == f'"{snapshot.sha256}"'
    assert int(full["Content-Length"]) == len(data)
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256
    cut = len(data) // 3
    first = client.get(url(snapshot), HTTP_RANGE=f"bytes=0-{cut - 1}", **headers)
    assert first.status_code == 206 and first["Content-Range"] == f"bytes 0-{cut - 1}/{len(data)}"
    rest = client.get(
        url(snapshot), HTTP_RANGE=f"bytes={cut}-", HTTP_IF_RANGE=first["ETag"], **headers
    )
    assert rest.status_code == 206 and int(rest["Content-Length"]) == len(data) - cut
    assert body(first) + body(rest) == data
    not_modified = client.get(url(snapshot), HTTP_IF_NONE_MATCH=full["ETag"], **headers)
    assert not_modified.status_code == 304
    past = client.get(url(snapshot), HTTP_RANGE=f"bytes={len(data)}-", **headers)
    assert past.status_code == 416


def test_presigned_downloads_redirect_to_the_bucket_which_serves_ranges(
    s3: S3, world: World, client: Any, settings: Any
) -> None:
    settings.PREFLAB_S3_PRESIGNED_DOWNLOADS = True
    snapshot = world.home.snapshot
    headers = bearer(world.token(["export"]))
    data = s3_bytes(s3, snapshot_key(snapshot))
    redirect = client.get(url(snapshot), **headers)
    assert redirect.status_code == 302
    assert redirect["ETag"] == f'"{snapshot.sha256}"'
    location = redirect["Location"]
    assert location.startswith(s3.endpoint)
    ranged = urllib.request.Request(location, headers={"Range": "bytes=10-49"})
    with urllib.request.urlopen(ranged, timeout=10) as answer:
        assert answer.status == 206 and answer.read() == data[10:50]
    with urllib.request.urlopen(location, timeout=10) as answer:
        assert hashlib.sha256(answer.read()).hexdigest() == snapshot.sha256
        assert f"preflab-snapshot-{snapshot.pk}-" in answer.headers["Content-Disposition"]
    # A client that has the bytes is answered here, without a trip to the bucket.
    cached = client.get(url(snapshot), HTTP_IF_NONE_MATCH=redirect["ETag"], **headers)
    assert cached.status_code == 304


def test_the_pipeline_page_downloads_stream_from_the_bucket(
    s3: S3, world: World, client: Any
) -> None:
    snapshot = world.home.snapshot
    client.force_login(world.owner)
    args = [snapshot.project_id, snapshot.pk]
    jsonl = client.get(reverse("training:snapshot_download", args=[*args, "jsonl"]))
    assert jsonl["ETag"] == f'"{snapshot.sha256}"'
    assert hashlib.sha256(body(jsonl)).hexdigest() == snapshot.sha256
    manifest = client.get(reverse("training:snapshot_download", args=[*args, "manifest"]))
    assert json.loads(body(manifest))["files"]["data.jsonl"]["sha256"] == snapshot.sha256
