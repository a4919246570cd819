"""Web and workers on "different machines": they share the database, the broker and an S3
bucket (a real S3 API server, moto), and no disk. The web side (this process) and each worker
get their own PREFLAB_VAR_DIR, ARTIFACT_ROOT, cache and work directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labeling.models import Comparison
from tests.artifacts import conftest as s3_fixtures
from tests.artifacts.conftest import S3
from tests.workers.conftest import wait_for
from tests.workers.test_loop import TINY_RUN, finished, labeled_project, ready_snapshot
from training.models import Checkpoint, RunStatus, SamplingJob
from training.services import start_run, start_sampling

pytestmark = [pytest.mark.slow]
# The real S3 API server and a bucket per test (tests/artifacts/conftest.py).
s3_server = s3_fixtures.s3_server
s3 = s3_fixtures.s3


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_snapshot_training_and_sampling_pass_only_through_the_bucket(
    s3: S3, start_worker: Any, make_project: Any, tiny_model: Path, settings: Any, tmp_path: Path
) -> None:
    trainer_home, sampler_home = tmp_path / "trainer", tmp_path / "sampler"
    trainer = start_worker(**s3.env(trainer_home))
    project, _ = labeled_project(make_project, tiny_model)

    snapshot = ready_snapshot(project, trainer)
    assert snapshot.path == f"snapshots/{project.id}/{snapshot.id}"
    assert f"{snapshot.path}/data.jsonl" in s3.objects()

    base = Checkpoint.objects.get(project=project, run=None)  # an external directory, as-is
    run = start_run(snapshot, base, TINY_RUN)
    run = wait_for(finished(run.id), 300, "the training run", trainer)
    assert run.status == RunStatus.SUCCEEDED, (run.error, trainer.log())
    assert run.out_dir == f"runs/{run.id}"
    final = Checkpoint.objects.get(run=run, is_final=True)
    assert final.path == f"runs/{run.id}/checkpoint-000003"  # a key, published before its row
    published = s3.objects()
    for name in ("model.safetensors", "config.json", "trainer_state.json"):
        assert f"{final.path}/{name}" in published
    # The trainer trained on a staged copy of the snapshot and kept nothing of the run.
    assert any(path.name == "data.jsonl" for path in files_under(trainer_home / "cache"))
    assert not files_under(trainer_home / "work" / "runs")
    trainer.stop()

    sampler = start_worker(**s3.env(sampler_home))
    job = start_sampling(project, final, generation={"max_new_tokens": 16, "seed": 1})
    job = wait_for(
        lambda: SamplingJob.objects.filter(id=job.id, finished_at__isnull=False).first(),
        300,
        "the sampling job",
        sampler,
    )
    assert job.status == RunStatus.SUCCEEDED, (job.error, sampler.log())
    assert job.comparisons_created > 0
    assert Comparison.objects.filter(round=job.round, completion_a__checkpoint=final).exists()
    # The sampler read the checkpoint back from the bucket into its own cache.
    staged = [
        path
        for path in files_under(sampler_home / "cache")
        if path.parent.name == "checkpoint-000003"
    ]
    assert {"model.safetensors", "config.json"} <= {path.name for path in staged}

    # Nothing went through the web side's disk, nor anyone's ARTIFACT_ROOT.
    for root in (settings.ARTIFACT_ROOT, trainer_home / "artifacts", sampler_home / "artifacts"):
        assert not files_under(Path(root)), root
