"""The pipeline pages: who sees them, htmx fragments, form validation, downloads."""

import hashlib

import pytest
from django.urls import reverse

from labeling.services import VoteInput, cast_vote, lease_next_comparison
from labeling.snapshots import build_snapshot, request_snapshot
from training.models import Checkpoint, RunMetric, SamplingJob, TrainingRun

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def ready_snapshot(project, annotator, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput("A", "clear"))
    return build_snapshot(request_snapshot(project, "every_vote").id)


@pytest.fixture
def run(project, ready_snapshot):
    base = Checkpoint.objects.create(project=project, name="base", path="/models/base")
    run = TrainingRun.objects.create(
        project=project, snapshot=ready_snapshot, start_checkpoint=base, config={"beta": 0.1}
    )
    for step, loss in ((1, 0.69), (2, 0.6)):
        RunMetric.objects.create(
            run=run, split="train", step=step, values={"loss": loss, "reward_accuracy": 0.5}
        )
    return run


def urls(project, snapshot, run):
    return [
        reverse("training:pipeline", args=[project.id]),
        reverse("training:snapshot", args=[project.id, snapshot.id]),
        reverse("training:snapshot_download", args=[project.id, snapshot.id, "jsonl"]),
        reverse("training:run", args=[project.id, run.id]),
    ]


@pytest.mark.django_db
def test_outsider_gets_404_and_annotator_403_on_pipeline_pages(
    client, project, ready_snapshot, run, outsider, annotator
):
    for user, expected in ((outsider, 404), (annotator, 403)):
        client.force_login(user)
        for url in urls(project, ready_snapshot, run):
            assert client.get(url).status_code == expected, (user, url)


@pytest.mark.django_db
def test_reviewer_sees_run_page_with_plots_and_htmx_fragment(client, project, run, reviewer):
    client.force_login(reviewer)
    url = reverse("training:run", args=[project.id, run.id])
    page = client.get(url).content.decode()
    assert "<html" in page and "Reward accuracy" in page
    assert "uPlot.iife.min.js" in page and 'id="chart-config"' in page
    assert "Cancel run" not in page
    fragment = client.get(url, **HX).content.decode()
    assert "<html" not in fragment and 'id="run-live"' in fragment
    # The charts keep their place (hx-preserve) while the live part refreshes.
    assert 'id="run-charts" hx-preserve="true"' in fragment


@pytest.mark.django_db
def test_run_metrics_json_has_columns_and_turns_non_numbers_into_gaps(
    client, project, run, reviewer
):
    RunMetric.objects.create(
        run=run, split="eval", step=2, values={"loss": "nan", "reward_accuracy": 1}
    )
    client.force_login(reviewer)
    response = client.get(reverse("training:run_metrics", args=[project.id, run.id]))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["series"]["train"]["step"] == [1, 2]
    assert body["series"]["train"]["loss"] == [0.69, 0.6]
    assert body["series"]["eval"] == {
        "step": [2], "loss": [None], "reward_accuracy": [1.0], "reward_margin": [None]
    }  # fmt: skip
    assert body["finished"] is False


@pytest.mark.django_db
def test_compare_overlays_only_this_projects_runs(client, project, run, reviewer, make_project):
    other = make_project("Other project", pairs=0)
    foreign_checkpoint = Checkpoint.objects.create(project=other, name="b", path="/b")
    foreign = TrainingRun.objects.create(
        project=other, snapshot=run.snapshot, start_checkpoint=foreign_checkpoint
    )
    client.force_login(reviewer)
    url = reverse("training:run_compare", args=[project.id])
    page = client.get(url, {"run": [run.id, foreign.id, "x"]}).content.decode()
    assert reverse("training:run_metrics", args=[project.id, run.id]) in page
    assert f"/runs/{foreign.id}/metrics.json" not in page
    assert f'name="run" value="{run.id}" checked' in page
    outsider_url = reverse("training:run_metrics", args=[other.id, foreign.id])
    assert client.get(outsider_url).status_code == 404


@pytest.mark.django_db
def test_sampling_job_has_its_own_page_linked_from_the_pipeline(client, project, run, reviewer):
    job = SamplingJob.objects.create(
        project=project, checkpoint=run.start_checkpoint, generation={"temperature": 0.7}
    )
    client.force_login(reviewer)
    page_url = reverse("training:sampling_job", args=[project.id, job.id])
    assert page_url in client.get(reverse("training:pipeline", args=[project.id])).content.decode()
    page = client.get(page_url).content.decode()
    assert f"Sampling job {job.id}" in page and "temperature" in page
    assert 'hx-trigger="every 2s"' in page  # queued: it refreshes itself


@pytest.mark.django_db
def test_download_streams_the_published_bytes_with_the_hash_as_etag(
    client, project, ready_snapshot, reviewer
):
    client.force_login(reviewer)
    url = reverse("training:snapshot_download", args=[project.id, ready_snapshot.id, "jsonl"])
    response = client.get(url)
    body = b"".join(response.streaming_content)
    assert response["ETag"] == f'"{ready_snapshot.sha256}"'
    assert hashlib.sha256(body).hexdigest() == ready_snapshot.sha256


@pytest.mark.django_db
def test_invalid_run_form_gives_400_with_errors_in_the_fragment(
    client, project, ready_snapshot, project_admin
):
    client.force_login(project_admin)
    url = reverse("training:run_create", args=[project.id])
    assert client.get(url).status_code == 200
    response = client.post(url, {"snapshot": ready_snapshot.id, "beta": "-1"}, **HX)
    assert response.status_code == 400
    body = response.content.decode()
    assert "<html" not in body and "errorlist" in body
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_admin_cancels_a_queued_run(client, project, run, project_admin):
    client.force_login(project_admin)
    response = client.post(reverse("training:run_cancel", args=[project.id, run.id]))
    assert response.status_code == 303
    run.refresh_from_db()
    assert run.status == "cancelled"


@pytest.mark.django_db
def test_run_form_preselects_the_newest_ready_snapshot_and_fits_defaults_to_it(
    client, project, ready_snapshot, project_admin
):
    client.force_login(project_admin)
    page = client.get(reverse("training:run_create", args=[project.id])).content.decode()
    assert f'<option value="{ready_snapshot.id}" selected>' in page
    # 5 rows: small batches, several epochs, a short warm-up.
    assert 'name="batch_size" value="4"' in page
    assert 'name="warmup_steps" value="1"' in page or 'name="warmup_steps" value="2"' in page
    assert "Defaults fitted to snapshot" in page
    # Help text comes from training.params, as the validation does.
    assert "Strength of the pull towards the reference model." in page
