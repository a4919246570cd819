"""Training on ranking snapshots: a listwise snapshot trains with loss_type plackett_luce and
nothing else, a pair snapshot never with it; a run on rankings goes through the worker's run
path (the engine as a child process, on the tiny model) to a registered checkpoint; the run
form, the snapshot form and the API offer the ranking policies and their settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from api.models import Scope
from api.tokens import create_token
from core.jobs import run_job
from labeling.importers import ImportKind, import_file
from labeling.models import JobStatus, Role, Round, Snapshot
from labeling.services import add_member
from labeling.snapshots import build_snapshot, request_snapshot
from tests.api.conftest import preferences_jsonl
from tests.labeling.test_ranking_snapshots import World, make_task, rank
from training.defaults import suggested_run_values
from training.forms import RunForm
from training.models import RunMetric, RunStatus
from training.services import RunRefused, register_base_model, start_run

TINY_RUN = {
    "beta": 0.1,
    "learning_rate": 1e-3,
    "batch_size": 2,
    "micro_batch_size": 2,
    "max_steps": 2,
    "warmup_steps": 1,
    "max_length": 128,
    "max_prompt_length": 64,
    "eval_fraction": 0.0,
    "log_every": 1,
}


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def world(db: None) -> World:
    return World()


def built(world: World, policy: str, **kwargs: Any) -> Snapshot:
    snapshot = build_snapshot(request_snapshot(world.project, policy, **kwargs).pk)
    assert snapshot is not None and snapshot.status == JobStatus.SUCCEEDED
    return snapshot


@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["rankings", "ranking_consensus"])
def test_a_listwise_snapshot_refuses_pair_losses_naming_loss_type(world, policy):
    snapshot = built(world, policy)
    base = register_base_model(world.project, "models/tiny-base")
    with pytest.raises(RunRefused, match=r"holds rankings .* plackett_luce only; got sigmoid") as e:
        start_run(snapshot, base, {})
    assert e.value.key == "loss_type" and str(e.value).startswith("loss_type: Snapshot")
    with pytest.raises(RunRefused, match="combines with no other loss"):
        start_run(snapshot, base, {"loss_type": ["plackett_luce", "sft"]})
    with pytest.raises(RunRefused, match="label_smoothing") as e:
        start_run(snapshot, base, {"loss_type": "plackett_luce", "label_smoothing": 0.1})
    assert e.value.key == "label_smoothing"
    run = start_run(snapshot, base, {"loss_type": "plackett_luce"})
    assert run.config["loss_type"] == "plackett_luce"


@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["ranking_pairs", "every_vote"])
def test_a_pair_snapshot_refuses_plackett_luce(world, make_project, policy):
    if policy == "ranking_pairs":
        snapshot = built(world, policy, pair_conversion="all")
        project = world.project
    else:
        project = make_project("Pairs", pairs=0)
        import_file(project, preferences_jsonl(3, "Pairs"), "p.jsonl", ImportKind.PREFERENCES)
        snapshot = build_snapshot(request_snapshot(project, policy).pk)
        assert snapshot.row_count == 3
    base = register_base_model(project, "models/tiny-base")
    with pytest.raises(RunRefused, match="plackett_luce trains on rankings, but Snapshot") as e:
        start_run(snapshot, base, {"loss_type": "plackett_luce"})
    assert e.value.key == "loss_type"


@pytest.mark.django_db
def test_the_run_form_preselects_plackett_luce_for_rankings_and_names_the_field(world, client):
    add_member(world.project, world.u1, Role.ADMIN)
    listwise = built(world, "rankings")
    pairs = built(world, "ranking_pairs", pair_conversion="best_worst")
    base = register_base_model(world.project, "models/tiny-base")
    assert suggested_run_values(listwise, base)["loss_type"] == "plackett_luce"
    assert "loss_type" not in suggested_run_values(pairs, base)
    client.force_login(world.u1)
    url = reverse("training:run_create", args=[world.project.pk])
    page = client.get(f"{url}?snapshot={listwise.pk}").content.decode()
    assert '<option value="plackett_luce" selected>' in page
    data = {
        "start_checkpoint": base.pk, "reference": "start", "loss_type": "sigmoid", "beta": 0.1,
        "label_smoothing": 0.0, "learning_rate": 1e-3, "epochs": 1, "batch_size": 2,
        "micro_batch_size": 2, "max_length": 128, "warmup_steps": 1,
    }  # fmt: skip
    form = RunForm(world.project, {**data, "snapshot": listwise.pk})
    assert not form.is_valid()
    assert "holds rankings" in form.errors["loss_type"][0]
    form = RunForm(world.project, {**data, "snapshot": pairs.pk, "loss_type": "plackett_luce"})
    assert not form.is_valid() and "holds pairs" in form.errors["loss_type"][0]
    assert RunForm(world.project, {**data, "snapshot": pairs.pk}).is_valid()
    response = client.post(url, {**data, "snapshot": listwise.pk, "loss_type": "plackett_luce"})
    assert response.status_code == 303


@pytest.mark.django_db
def test_the_pipeline_exports_ranking_snapshots_with_their_pair_conversion(world, client):
    add_member(world.project, world.u1, Role.ADMIN)
    client.force_login(world.u1)
    page = client.get(reverse("training:pipeline", args=[world.project.pk])).content.decode()
    assert 'value="ranking_consensus"' in page and 'name="pair_conversion"' in page
    url = reverse("training:snapshot_create", args=[world.project.pk])
    base = {"min_agreement": 0.5, "votes_from": "all"}
    pipeline = reverse("training:pipeline", args=[world.project.pk])

    def refused(data: dict[str, Any]) -> str:
        assert client.post(url, {**base, **data}).status_code == 303
        return client.get(pipeline).content.decode()  # the message says why

    assert "Choose how the rankings become pairs" in refused({"policy": "ranking_pairs"})
    assert "Only the ranking_pairs policy converts" in refused(
        {"policy": "rankings", "pair_conversion": "all"}
    )
    assert "adjudicated_only does not apply to the rankings policy" in refused(
        {"policy": "rankings", "adjudicated_only": "on"}
    )
    assert not Snapshot.objects.exists()
    response = client.post(url, {**base, "policy": "ranking_pairs", "pair_conversion": "adjacent"})
    snapshot = Snapshot.objects.get()
    assert response.status_code == 303 and snapshot.pair_conversion == "adjacent"
    build_snapshot(snapshot.pk)
    detail = client.get(reverse("training:snapshot", args=[world.project.pk, snapshot.pk]))
    assert 'data-testid="pair-conversion">Adjacent positions<' in detail.content.decode()
    listing = client.get(reverse("training:pipeline", args=[world.project.pk])).content.decode()
    assert "Rankings converted to pairs (a pair conversion policy) (adjacent positions)" in listing


@pytest.mark.django_db
def test_the_api_creates_and_shows_ranking_snapshots(world, client):
    add_member(world.project, world.u1, Role.ADMIN)
    secret = create_token(world.u1, "t", [Scope.READ, Scope.EXPORT], [world.project]).secret
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    url = f"/api/v1/projects/{world.project.pk}/snapshots"

    def post(body: dict[str, Any]) -> Any:
        return client.post(url, json.dumps(body), content_type="application/json", **headers)

    refused = post({"policy": "ranking_pairs"})
    assert refused.status_code == 422
    assert "pair_conversion" in refused.json()["error"]["message"]
    assert post({"policy": "majority", "pair_conversion": "all"}).status_code == 422
    accepted = post({"policy": "ranking_pairs", "pair_conversion": "best_worst"})
    assert accepted.status_code == 202
    body = accepted.json()["snapshot"]
    assert body["policy"] == "ranking_pairs" and body["pair_conversion"] == "best_worst"
    build_snapshot(body["id"])
    ready = client.get(f"/api/v1/snapshots/{body['id']}", **headers).json()
    assert ready["status"] == "ready" and ready["row_count"] == 5
    download = client.get(ready["files"]["jsonl"], **headers)
    rows = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert len(rows) == 5 and {"ranking_id", "chosen_position"} <= set(rows[0])
    listwise = post({"policy": "rankings"}).json()["snapshot"]
    assert listwise["pair_conversion"] is None


@pytest.mark.slow
@pytest.mark.django_db
def test_a_run_on_rankings_trains_plackett_luce_and_registers_a_checkpoint(world, tiny_model):
    # Four more tasks, so that two steps of two rankings each see different rankings.
    two = Round.objects.get(project=world.project, number=2)
    for i in range(4):
        task = make_task(two, f"Count to {i + 2}.", [f"{n}" for n in range(i + 2, i + 5)])
        rank(task, [[2, 0], 1] if i % 2 else [0, 1, 2], world.u2)
    snapshot = built(world, "rankings")
    assert snapshot.row_count == 8
    base = register_base_model(world.project, str(tiny_model), "tiny-base")
    config = {**TINY_RUN, "loss_type": suggested_run_values(snapshot, base)["loss_type"]}
    run = start_run(snapshot, base, config)
    run_job("training_run", run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    assert run.checkpoints.filter(is_final=True).exists()
    train = RunMetric.objects.filter(run=run, split="train").order_by("step")
    assert [m.step for m in train] == [1, 2]
    # the listwise objective's metrics: rankings, not pairs
    assert {"top1_accuracy", "rankings"} <= set(train.last().values)
    assert train.first().values["rankings"] == 2


@pytest.mark.slow
@pytest.mark.django_db
def test_pairs_converted_from_rankings_train_with_a_pair_loss_unchanged(world, tiny_model):
    snapshot = built(world, "ranking_pairs", pair_conversion="adjacent")
    base = register_base_model(world.project, str(tiny_model), "tiny-base")
    run = start_run(snapshot, base, {**TINY_RUN, "loss_type": "ipo", "max_steps": 1})
    run_job("training_run", run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    assert run.checkpoints.filter(is_final=True).exists()
    assert RunMetric.objects.get(run=run, split="train").values["pairs"] == 2
