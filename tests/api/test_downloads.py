"""Snapshot downloads: ETag = SHA-256, ranges and resume, 304, 416, and reading the result
with the datasets library exactly as docs/api.md shows."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from api.downloads import parse_range
from api.errors import ApiError
from labeling.models import Snapshot
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file
from tests.api.conftest import World, bearer


def url(snapshot: Snapshot, file_format: str = "jsonl") -> str:
    return f"/api/v1/snapshots/{snapshot.id}/files/{file_format}"


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.django_db
def test_full_download_has_hash_etag_length_and_accept_ranges(world: World, client) -> None:
    snapshot = world.home.snapshot
    response = client.get(url(snapshot), **bearer(world.token(["export"])))
    data = body(response)
    assert response.status_code == 200
    assert response["ETag"] == f'"{snapshot.sha256}"'
    assert response["Accept-Ranges"] == "bytes"
    assert int(response["Content-Length"]) == len(data) == snapshot_file(snapshot).stat().st_size
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256
    assert "attachment" in response["Content-Disposition"]


@pytest.mark.django_db
def test_parquet_download_is_tagged_with_the_parquet_hash(world: World, client) -> None:
    snapshot = world.home.snapshot
    response = client.get(url(snapshot, "parquet"), **bearer(world.token(["export"])))
    assert response["ETag"] == f'"{snapshot.parquet_sha256}"'
    assert hashlib.sha256(body(response)).hexdigest() == snapshot.parquet_sha256


@pytest.mark.django_db
def test_resumed_range_download_reassembles_to_the_published_hash(world: World, client) -> None:
    snapshot = world.home.snapshot
    headers = bearer(world.token(["export"]))
    size = snapshot_file(snapshot).stat().st_size
    cut = size // 3
    first = client.get(url(snapshot), HTTP_RANGE=f"bytes=0-{cut - 1}", **headers)
    assert first.status_code == 206
    assert first["Content-Range"] == f"bytes 0-{cut - 1}/{size}"
    part = body(first)
    assert len(part) == cut == int(first["Content-Length"])
    # What `curl -C -` sends after an interrupted download, guarded by If-Range.
    rest = client.get(
        url(snapshot), HTTP_RANGE=f"bytes={len(part)}-", HTTP_IF_RANGE=first["ETag"], **headers
    )
    assert rest.status_code == 206
    assert rest["Content-Range"] == f"bytes {cut}-{size - 1}/{size}"
    assert hashlib.sha256(part + body(rest)).hexdigest() == snapshot.sha256


@pytest.mark.django_db
def test_suffix_range_and_stale_if_range(world: World, client) -> None:
    snapshot = world.home.snapshot
    headers = bearer(world.token(["export"]))
    data = snapshot_file(snapshot).read_bytes()
    tail = client.get(url(snapshot), HTTP_RANGE="bytes=-10", **headers)
    assert (tail.status_code, body(tail)) == (206, data[-10:])
    stale = client.get(url(snapshot), HTTP_RANGE="bytes=5-", HTTP_IF_RANGE='"0000"', **headers)
    assert (stale.status_code, body(stale)) == (200, data)


@pytest.mark.django_db
def test_range_past_the_end_gets_416(world: World, client) -> None:
    snapshot = world.home.snapshot
    size = snapshot_file(snapshot).stat().st_size
    response = client.get(url(snapshot), HTTP_RANGE=f"bytes={size}-", **bearer(world.token()))
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


@pytest.mark.django_db
def test_if_none_match_with_the_hash_gets_304(world: World, client) -> None:
    snapshot = world.home.snapshot
    etag = f'"{snapshot.sha256}"'
    response = client.get(url(snapshot), HTTP_IF_NONE_MATCH=etag, **bearer(world.token()))
    assert response.status_code == 304
    assert response["ETag"] == etag
    assert response.content == b""
    other = client.get(url(snapshot), HTTP_IF_NONE_MATCH='"abc"', **bearer(world.token()))
    assert other.status_code == 200


@pytest.mark.django_db
def test_head_gives_the_headers_without_the_body(world: World, client) -> None:
    snapshot = world.home.snapshot
    response = client.head(url(snapshot), **bearer(world.token()))
    assert response.status_code == 200
    assert int(response["Content-Length"]) == snapshot_file(snapshot).stat().st_size
    assert response.content == b""


@pytest.mark.django_db
def test_snapshot_not_ready_gets_409(world: World, client) -> None:
    queued = request_snapshot(world.home.project, "majority")
    response = client.get(url(queued), **bearer(world.token()))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "snapshot_not_ready"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=-5", (95, 99)),
        ("bytes=50-500", (50, 99)),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file
        ("items=0-5", None),
        ("bytes=9-2", None),
    ],
)
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=200-300"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_range(header, 100)
    assert caught.value.status == 416


@pytest.mark.django_db
def test_downloaded_snapshot_loads_with_datasets_as_prompt_chosen_rejected(
    world: World, client, tmp_path, monkeypatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = world.home.snapshot
    response = client.get(url(snapshot), **bearer(world.token(["export"])))
    path = tmp_path / "snapshot.jsonl"
    path.write_bytes(body(response))
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    expected = [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]
    assert dataset.num_rows == snapshot.row_count == 6
    assert dataset["prompt"] == [row["prompt"] for row in expected]
    assert dataset["chosen"] == [f"A careful answer {index}." for index in range(6)]
    assert dataset["rejected"] == [f"A sloppy answer {index}!" for index in range(6)]


@pytest.mark.django_db
def test_conversational_snapshot_loads_with_datasets_as_message_lists(
    world: World, client, tmp_path, monkeypatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from labeling.importers import ImportKind, import_file

    project = world.home.project
    chat = {
        "prompt": [{"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    import_file(project, json.dumps(chat).encode(), "chat.jsonl", ImportKind.PREFERENCES)
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    assert snapshot is not None
    response = client.get(url(snapshot), **bearer(world.token(["export"])))
    path = tmp_path / "chat.jsonl"
    path.write_bytes(body(response))
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    last = dataset[-1]
    assert last["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert last["chosen"] == [{"role": "assistant", "content": "Hello!"}]
    assert dataset[0]["chosen"][0]["role"] == "assistant"
