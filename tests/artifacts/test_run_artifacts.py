"""A run's checkpoints go through the store: published before their rows, staged to be read,
fetched back to resume on another machine; on the local store, none of it copies a byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labeling.models import Snapshot
from tests.artifacts.conftest import S3
from training import services
from training.models import Checkpoint, TrainingRun

pytestmark = pytest.mark.django_db

FILES = {"model.safetensors": b"\x00" * 4096, "config.json": b"{}", "trainer_state.json": b"{}"}


def queued_run(make_project: Any) -> TrainingRun:
    project = make_project("Runs", pairs=0)
    snapshot = Snapshot.objects.create(project=project, policy="every_vote")
    base = Checkpoint.objects.create(project=project, name="base", path="/models/base")
    run = TrainingRun.objects.create(
        project=project, snapshot=snapshot, start_checkpoint=base, config={}
    )
    run.out_dir = services.run_key(run)
    run.save(update_fields=["out_dir"])
    return run


def write_checkpoint(out_dir: Path, step: int) -> Path:
    path = out_dir / f"checkpoint-{step:06d}"
    path.mkdir(parents=True)
    for name, data in FILES.items():
        (path / name).write_bytes(data)
    return path


def test_a_reported_checkpoint_is_uploaded_then_registered_under_its_key(
    s3: S3, make_project: Any, settings: Any
) -> None:
    run = queued_run(make_project)
    out_dir = services.run_out_dir(run)
    assert out_dir == Path(settings.PREFLAB_WORK_DIR) / f"runs/{run.pk}"
    local = write_checkpoint(out_dir, 2)
    checkpoint = services._register_checkpoint(run, {"path": str(local), "step": 2})
    assert checkpoint.path == f"runs/{run.pk}/checkpoint-000002"
    assert {f"{checkpoint.path}/{name}" for name in FILES} <= set(s3.objects())
    # Read back for sampling or as a start checkpoint: a staged copy, not the work directory.
    staged = Path(services.model_reference(checkpoint))
    assert staged.is_relative_to(settings.PREFLAB_CACHE_DIR)
    assert (staged / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_a_run_resumed_on_another_machine_fetches_its_last_checkpoint(
    s3: S3, make_project: Any, settings: Any, tmp_path: Path
) -> None:
    run = queued_run(make_project)
    for step in (2, 4):
        local = write_checkpoint(services.run_out_dir(run), step)
        services._register_checkpoint(run, {"path": str(local), "step": step})
    settings.PREFLAB_WORK_DIR = tmp_path / "other-machine" / "work"  # an empty disk
    out_dir = services.run_out_dir(run)
    out_dir.mkdir(parents=True)
    services._restore_last_checkpoint(run, out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["checkpoint-000004"]
    assert (out_dir / "checkpoint-000004" / "trainer_state.json").read_bytes() == b"{}"


def test_on_the_local_store_checkpoints_are_written_in_place(
    make_project: Any, settings: Any, tmp_path: Path
) -> None:
    settings.ARTIFACT_STORAGE_URL = ""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    run = queued_run(make_project)
    out_dir = services.run_out_dir(run)
    assert out_dir == tmp_path / "artifacts" / f"runs/{run.pk}"
    local = write_checkpoint(out_dir, 3)
    inode = (local / "model.safetensors").stat().st_ino
    checkpoint = services._register_checkpoint(run, {"path": str(local), "step": 3})
    assert checkpoint.path == f"runs/{run.pk}/checkpoint-000003"
    staged = Path(services.model_reference(checkpoint))
    assert staged == local and (staged / "model.safetensors").stat().st_ino == inode


def test_base_models_outside_the_store_are_passed_as_they_are(s3: S3, make_project: Any) -> None:
    run = queued_run(make_project)
    hub = Checkpoint.objects.create(project=run.project, name="hub", path="org/some-model")
    assert services.model_reference(run.start_checkpoint) == "/models/base"
    assert services.model_reference(hub) == "org/some-model"
