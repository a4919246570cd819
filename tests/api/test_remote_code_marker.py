"""The marker test: a starting checkpoint whose folder ships its own code (auto_map) must not
get that code run through the API. Asking for trust_remote_code is refused; the config the
worker builds for the engine carries the checkpoint's staff setting, and the engine's loader
runs the shipped code only when staff allowed it (the marker file says whether it ran)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import World, bearer
from training import services
from training.engine.modeling import load_tokenizer
from training.models import Checkpoint, TrainingRun


def model_with_code(folder: Path, marker: Path) -> Path:
    """A model folder whose tokenizer is custom code that leaves a marker when it runs."""
    folder.mkdir(parents=True)
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "MarkerTokenizer",
                "auto_map": {"AutoTokenizer": ["marker_code.MarkerTokenizer", None]},
            }
        )
    )
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "marker_code.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('the shipped code ran')\n"
        "raise RuntimeError('marker written')\n"
    )
    return folder


@pytest.mark.django_db
def test_shipped_code_runs_only_when_staff_allowed_it(world: World, client, tmp_path) -> None:
    marker = tmp_path / "MARKER"
    folder = model_with_code(tmp_path / "custom-model", marker)
    checkpoint = services.register_base_model(world.home.project, str(folder), "custom")
    url = f"/api/v1/projects/{world.home.project.id}/runs"
    body = {"snapshot_id": world.home.snapshot.id, "start_checkpoint_id": checkpoint.id}
    headers = bearer(world.token(["train"]))

    refused = client.post(
        url,
        {**body, "hyperparameters": {"trust_remote_code": True}},
        content_type="application/json",
        **headers,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["key"] == "trust_remote_code"

    accepted = client.post(url, body, content_type="application/json", **headers)
    assert accepted.status_code == 202
    run = TrainingRun.objects.get(id=accepted.json()["run"]["id"])
    engine_config = services._engine_config(run)
    assert engine_config["trust_remote_code"] is False
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_tokenizer(engine_config["model"], engine_config["trust_remote_code"])
    assert not marker.exists()

    # Staff allow it in the admin: now the same path runs the shipped code.
    Checkpoint.objects.filter(id=checkpoint.id).update(trust_remote_code=True)
    run.refresh_from_db()
    run.start_checkpoint.refresh_from_db()
    engine_config = services._engine_config(run)
    assert engine_config["trust_remote_code"] is True
    with pytest.raises(RuntimeError, match="marker written"):
        load_tokenizer(engine_config["model"], engine_config["trust_remote_code"])
    assert marker.read_text() == "the shipped code ran"
