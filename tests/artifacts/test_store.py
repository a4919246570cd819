"""The artifact store's contract, on the local disk and on a real S3 API server (moto)."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from core.artifacts import ArtifactKeyError, ArtifactStore, check_key, get_store, stage


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> ArtifactStore:
    if request.param == "s3":
        request.getfixturevalue("s3")
    else:
        settings.ARTIFACT_STORAGE_URL = ""
        settings.ARTIFACT_ROOT = tmp_path / "artifacts"
        settings.PREFLAB_CACHE_DIR = tmp_path / "cache"
    return get_store()


def make_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


CHECKPOINT = {
    "model.safetensors": bytes(range(256)) * 40,
    "config.json": b'{"layers": 2}',
    "tokenizer/vocab.json": b'{"a": 1}',
}


def test_a_published_directory_reads_back_byte_for_byte(store, tmp_path):
    store.publish(
        make_dir(tmp_path / "ckpt", CHECKPOINT), "runs/1/checkpoint-000002", immutable=False
    )
    assert store.exists("runs/1/checkpoint-000002") and store.exists("runs/1")
    assert not store.exists("runs/2")
    assert store.size("runs/1/checkpoint-000002/model.safetensors") == 10240
    store.fetch("runs/1/checkpoint-000002", tmp_path / "back")
    fetched = {
        p.relative_to(tmp_path / "back").as_posix(): p.read_bytes()
        for p in (tmp_path / "back").rglob("*")
        if p.is_file()
    }
    assert fetched == CHECKPOINT


def test_reads_seek_like_a_file(store, tmp_path):
    data = bytes(range(256)) * 100
    (tmp_path / "data.jsonl").write_bytes(data)
    store.publish(tmp_path / "data.jsonl", "snapshots/1/1/data.jsonl", immutable=True)
    with store.open("snapshots/1/1/data.jsonl") as handle:
        assert handle.seek(0, 2) == len(data)
        handle.seek(1000)
        assert handle.read(300) == data[1000:1300]


def test_an_immutable_key_is_never_overwritten(store, tmp_path):
    (tmp_path / "first").write_bytes(b"first")
    (tmp_path / "second").write_bytes(b"second")
    store.publish(tmp_path / "first", "snapshots/1/2/data.jsonl", immutable=True)
    with pytest.raises(FileExistsError):
        store.publish(tmp_path / "second", "snapshots/1/2/data.jsonl", immutable=True)
    with store.open("snapshots/1/2/data.jsonl") as handle:
        assert handle.read() == b"first"


def test_a_mutable_publish_replaces_the_whole_directory(store, tmp_path):
    store.publish(make_dir(tmp_path / "a", CHECKPOINT), "runs/3/checkpoint-000001", immutable=False)
    store.publish(
        make_dir(tmp_path / "b", {"config.json": b"{}"}),
        "runs/3/checkpoint-000001",
        immutable=False,
    )
    store.fetch("runs/3/checkpoint-000001", tmp_path / "back")
    assert [p.name for p in (tmp_path / "back").rglob("*")] == ["config.json"]


def test_delete_removes_everything_under_a_key(store, tmp_path):
    store.publish(make_dir(tmp_path / "a", CHECKPOINT), "runs/4/checkpoint-000001", immutable=False)
    store.delete("runs/4")
    assert not store.exists("runs/4/checkpoint-000001/config.json")
    store.delete("runs/4")  # nothing there is fine
    with pytest.raises(FileNotFoundError):
        store.fetch("runs/4", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):
        store.fingerprint("runs/4")


def test_the_fingerprint_follows_the_content(store, tmp_path):
    store.publish(make_dir(tmp_path / "a", CHECKPOINT), "runs/5/c", immutable=False)
    before = store.fingerprint("runs/5/c")
    assert store.fingerprint("runs/5/c") == before
    store.publish(
        make_dir(tmp_path / "b", {**CHECKPOINT, "config.json": b"{}"}), "runs/5/c", immutable=False
    )
    assert store.fingerprint("runs/5/c") != before


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../up", "a/../../b", "a//b", "a\\b", "./a"])
def test_keys_are_clean_relative_paths(store, key):
    with pytest.raises(ArtifactKeyError):
        check_key(key)
    with pytest.raises(ArtifactKeyError):
        store.exists(key)


def test_staging_a_local_artifact_is_the_artifact_itself(settings, tmp_path):
    settings.ARTIFACT_STORAGE_URL = ""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.PREFLAB_CACHE_DIR = tmp_path / "cache"
    store = get_store()
    source = make_dir(tmp_path / "work", CHECKPOINT)
    inode = (source / "model.safetensors").stat().st_ino
    store.publish(source, "runs/6/checkpoint-000001", immutable=True, move=True)
    staged = stage("runs/6/checkpoint-000001")
    assert staged == tmp_path / "artifacts" / "runs/6/checkpoint-000001"
    # published by a rename and staged in place: never a copy
    assert (staged / "model.safetensors").stat().st_ino == inode
    assert not source.exists() and not (tmp_path / "cache").exists()


def test_staging_from_s3_downloads_once_and_again_only_when_the_content_changes(
    s3, settings, tmp_path
):
    store = get_store()
    store.publish(make_dir(tmp_path / "a", CHECKPOINT), "runs/7/checkpoint-000001", immutable=False)
    staged = stage("runs/7/checkpoint-000001")
    assert staged.is_relative_to(settings.PREFLAB_CACHE_DIR)
    assert (staged / "model.safetensors").read_bytes() == CHECKPOINT["model.safetensors"]
    inode = (staged / "model.safetensors").stat().st_ino
    again = stage("runs/7/checkpoint-000001")
    assert again == staged and (again / "model.safetensors").stat().st_ino == inode

    store.publish(
        make_dir(tmp_path / "b", {"config.json": b"{}"}),
        "runs/7/checkpoint-000001",
        immutable=False,
    )
    changed = stage("runs/7/checkpoint-000001")
    assert changed != staged and [p.name for p in changed.iterdir()] == ["config.json"]
    assert not any(p.name.endswith(".tmp") for p in Path(settings.PREFLAB_CACHE_DIR).iterdir())


def test_concurrent_stagers_share_one_complete_copy(s3, settings, tmp_path):
    get_store().publish(make_dir(tmp_path / "a", CHECKPOINT), "runs/8/c", immutable=False)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: stage("runs/8/c"), range(4)))
    assert len(set(paths)) == 1
    assert (paths[0] / "tokenizer/vocab.json").read_bytes() == CHECKPOINT["tokenizer/vocab.json"]
    entries = list(Path(settings.PREFLAB_CACHE_DIR).iterdir())
    assert len(entries) == 1 and not entries[0].name.endswith(".tmp")


def test_a_presigned_url_serves_ranges_straight_from_s3(s3, tmp_path):
    store = get_store()
    data = b"0123456789" * 1000
    (tmp_path / "data.jsonl").write_bytes(data)
    store.publish(tmp_path / "data.jsonl", "snapshots/2/9/data.jsonl", immutable=True)
    url = store.download_url(
        "snapshots/2/9/data.jsonl",
        filename="s.jsonl",
        content_type="application/x-ndjson",
        expires=60,
    )
    assert url is not None and url.startswith(s3.endpoint)
    request = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.read() == data[100:200]
        assert 'filename="s.jsonl"' in response.headers["Content-Disposition"]


def test_the_local_store_has_no_presigned_urls(settings, tmp_path):
    settings.ARTIFACT_STORAGE_URL = ""
    settings.ARTIFACT_ROOT = tmp_path
    assert get_store().download_url("a", filename="a", content_type="x", expires=1) is None


def test_an_unknown_storage_url_is_refused(settings):
    settings.ARTIFACT_STORAGE_URL = "gs://bucket/prefix"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        get_store()
