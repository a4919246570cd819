"""The reference log-prob cache is shared across runs through the artifact store: a second run
on the same snapshot and reference runs no reference forward pass at all, on the local store
(one shared directory) and on S3 with the two runs on workers that share no disk.

Each run is the real engine in a child process on the tiny model, started through
training.services as a worker does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labeling.snapshots import build_snapshot, request_snapshot
from tests.artifacts.conftest import S3
from tests.workers.test_loop import TINY_RUN, labeled_project
from training import services
from training.models import Checkpoint, RunStatus, TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

RUN = {**TINY_RUN, "max_steps": 1, "batch_size": 2, "micro_batch_size": 2, "save_every": 0}


def train(snapshot: Any, base: Checkpoint) -> TrainingRun:
    """One run, executed here as the worker executes it (the engine is a child process)."""
    run = TrainingRun.objects.create(
        project=snapshot.project,
        snapshot=snapshot,
        start_checkpoint=base,
        config=services.validate_run_config(RUN),
    )
    run.out_dir = services.run_key(run)
    run.save(update_fields=["out_dir"])
    services.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    return run


def snapshot_and_base(make_project: Any, tiny_model: Path) -> tuple[Any, Checkpoint]:
    project, _ = labeled_project(make_project, tiny_model, pairs=4)
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    assert snapshot is not None and snapshot.sha256
    return snapshot, Checkpoint.objects.get(project=project, run=None)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("reference-*.safetensors"))


def test_local_store_second_run_loads_the_first_runs_reference_log_probs(
    make_project: Any, tiny_model: Path, settings: Any, tmp_path: Path
) -> None:
    settings.ARTIFACT_STORAGE_URL = ""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    snapshot, base = snapshot_and_base(make_project, tiny_model)

    first = train(snapshot, base)
    assert first.summary["reference_forwards"] > 0
    shared = tmp_path / "artifacts" / "refcache" / snapshot.sha256
    assert len(entries(shared)) == 1

    second = train(snapshot, base)
    assert second.summary["reference_forwards"] == 0
    assert "reference log-probs loaded from cache" in second.log_tail
    assert len(entries(shared)) == 1


def test_s3_workers_without_a_shared_disk_share_the_cache_through_the_bucket(
    s3: S3, make_project: Any, tiny_model: Path, settings: Any, tmp_path: Path
) -> None:
    snapshot, base = snapshot_and_base(make_project, tiny_model)
    key = f"refcache/{snapshot.sha256}"

    settings.PREFLAB_WORK_DIR = tmp_path / "worker-a" / "work"
    settings.PREFLAB_CACHE_DIR = tmp_path / "worker-a" / "cache"
    first = train(snapshot, base)
    assert first.summary["reference_forwards"] > 0
    (name,) = entries(tmp_path / "worker-a" / "work" / key)
    assert f"{key}/{name}" in s3.objects()
    stored = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{key}/{name}")

    settings.PREFLAB_WORK_DIR = tmp_path / "worker-b" / "work"  # another machine, empty disk
    settings.PREFLAB_CACHE_DIR = tmp_path / "worker-b" / "cache"
    second = train(snapshot, base)
    assert second.summary["reference_forwards"] == 0
    assert "reference log-probs loaded from cache" in second.log_tail
    assert entries(tmp_path / "worker-b" / "work" / key) == [name]
    assert [o for o in s3.objects() if o.startswith("refcache/")] == [f"{key}/{name}"]

    # Publishing again (the store's listing unknown) leaves the stored entry as it was.
    services._publish_reference_cache(second, tmp_path / "worker-b" / "work" / key, set())
    again = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{key}/{name}")
    assert again["ETag"] == stored["ETag"] and again["LastModified"] == stored["LastModified"]
