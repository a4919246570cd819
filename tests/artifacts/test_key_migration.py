"""training 0004 turns the absolute paths older rows stored into artifact store keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("training", "0003_job_shape")]
AFTER = [("training", "0004_artifact_keys")]


@pytest.mark.django_db(transaction=True)
def test_absolute_paths_under_the_artifact_root_become_keys(settings: Any, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    executor = MigrationExecutor(connection)
    # Migrating training back leaves labeling's newer columns in place (they need nothing of
    # training's), so the old models must see labeling's newest state too.
    before = BEFORE + [node for node in executor.loader.graph.leaf_nodes() if node[0] == "labeling"]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    project = old.get_model("labeling", "Project").objects.create(name="Old")
    snapshot = old.get_model("labeling", "Snapshot").objects.create(
        project=project, policy="every_vote"
    )
    Checkpoint = old.get_model("training", "Checkpoint")
    base = Checkpoint.objects.create(project=project, name="base", path="/models/base")
    hub = Checkpoint.objects.create(project=project, name="hub", path="org/model")
    TrainingRun = old.get_model("training", "TrainingRun")
    run = TrainingRun.objects.create(
        project=project, snapshot=snapshot, start_checkpoint=base, config={}
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        out_dir=str(settings.ARTIFACT_ROOT / f"runs/{run.pk}")
    )
    mine = Checkpoint.objects.create(
        project=project,
        name="step 4",
        path=str(settings.ARTIFACT_ROOT / f"runs/{run.pk}/checkpoint-000004"),
        run=run,
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    # Later migrations, if any, for the tests that come after this one.
    MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    assert (
        new.get_model("training", "TrainingRun").objects.get(pk=run.pk).out_dir == f"runs/{run.pk}"
    )
    paths = dict(new.get_model("training", "Checkpoint").objects.values_list("pk", "path"))
    assert paths == {
        base.pk: "/models/base",
        hub.pk: "org/model",
        mine.pk: f"runs/{run.pk}/checkpoint-000004",
    }
