"""Training runs through the API: start (202 + poll URL), inspect, cancel, refusals."""

from __future__ import annotations

import pytest

from labeling.snapshots import request_snapshot
from tests.api.conftest import World, bearer
from training.models import RunStatus, TrainingRun


@pytest.mark.django_db
def test_start_run_answers_202_with_a_poll_url_that_shows_it(world: World, client) -> None:
    headers = bearer(world.token(["train", "read"]))
    response = client.post(
        f"/api/v1/projects/{world.home.project.id}/runs",
        {
            "snapshot_id": world.home.snapshot.id,
            "start_checkpoint_id": world.home.checkpoint.id,
            "hyperparameters": {"beta": 0.2},
        },
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response["Location"] == body["poll_url"]
    polled = client.get(body["poll_url"], **headers)
    assert polled.status_code == 200
    assert polled.json()["config"]["beta"] == 0.2
    assert TrainingRun.objects.get(id=body["run"]["id"]).created_by == world.owner


@pytest.mark.django_db
def test_bad_hyperparameters_or_unready_snapshot_get_422(world: World, client) -> None:
    url = f"/api/v1/projects/{world.home.project.id}/runs"
    headers = bearer(world.token(["train"]))
    base = {"snapshot_id": world.home.snapshot.id, "start_checkpoint_id": world.home.checkpoint.id}
    managed = client.post(
        url,
        {**base, "hyperparameters": {"out_dir": "/tmp/x"}},
        content_type="application/json",
        **headers,
    )
    assert (managed.status_code, managed.json()["error"]["code"]) == (422, "run_refused")
    queued = request_snapshot(world.home.project, "majority")
    unready = client.post(
        url, {**base, "snapshot_id": queued.id}, content_type="application/json", **headers
    )
    assert (unready.status_code, unready.json()["error"]["code"]) == (422, "run_refused")


@pytest.mark.django_db
def test_checkpoint_of_another_project_gets_404(world: World, client) -> None:
    response = client.post(
        f"/api/v1/projects/{world.home.project.id}/runs",
        {"snapshot_id": world.home.snapshot.id, "start_checkpoint_id": world.other.checkpoint.id},
        content_type="application/json",
        **bearer(world.token(["train"])),
    )
    assert response.status_code == 404


@pytest.mark.django_db
def test_cancel_a_queued_run_then_again_gets_409(world: World, client) -> None:
    url = f"/api/v1/runs/{world.home.run.id}/cancel"
    headers = bearer(world.token(["train"]))
    first = client.post(url, **headers)
    assert first.status_code == 202
    assert first.json()["status"] == RunStatus.CANCELLED
    second = client.post(url, **headers)
    assert (second.status_code, second.json()["error"]["code"]) == (409, "run_finished")
