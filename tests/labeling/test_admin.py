"""Every PrefLab model is in the Django admin, and each changelist (with its filters and search)
answers for a superuser, with rows present."""

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.urls import reverse

from labeling.services import VoteInput, cast_vote, lease_next_comparison
from labeling.snapshots import build_snapshot, request_snapshot
from training.models import Checkpoint, RunMetric, SamplingJob, TrainingRun

# PrefLab's own apps: those whose code lives in this repository (not in the virtualenv).
PROJECT_APPS = [
    config
    for config in apps.get_app_configs()
    if config.path.startswith(str(settings.BASE_DIR)) and "site-packages" not in config.path
]


def project_models():
    return [model for config in PROJECT_APPS for model in config.get_models()]


def test_every_project_model_is_registered_in_the_admin():
    assert {config.label for config in PROJECT_APPS} >= {"labeling", "training", "api"}
    missing = [model._meta.label for model in project_models() if model not in admin.site._registry]
    assert not missing, f"not in the Django admin: {missing}"


@pytest.fixture
def loop_rows(project, annotator, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput("A", "clear", "because"))
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    base = Checkpoint.objects.create(project=project, name="base", path="/models/base")
    run = TrainingRun.objects.create(
        project=project, snapshot=snapshot, start_checkpoint=base, config={"beta": 0.1}
    )
    RunMetric.objects.create(run=run, split="train", step=1, values={"loss": 0.69})
    SamplingJob.objects.create(project=project, checkpoint=base)
    return run


@pytest.mark.django_db
def test_every_changelist_answers_with_rows_filters_and_search(admin_client, loop_rows):
    for model in project_models():
        model_admin = admin.site._registry[model]
        assert model_admin.list_display != ("__str__",), f"{model._meta.label}: no list columns"
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = admin_client.get(url)
        assert response.status_code == 200, model._meta.label
        if model_admin.search_fields:
            assert admin_client.get(url, {"q": "1"}).status_code == 200, model._meta.label
        if model.objects.exists():
            row = model.objects.first()
            change = reverse(
                f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[row.pk]
            )
            assert admin_client.get(change).status_code == 200, model._meta.label


@pytest.mark.django_db
def test_job_admin_rows_link_to_their_pages(admin_client, loop_rows):
    job = SamplingJob.objects.get()
    page = admin_client.get(reverse("admin:training_samplingjob_changelist")).content.decode()
    assert reverse("training:sampling_job", args=[job.project_id, job.pk]) in page
    page = admin_client.get(reverse("admin:training_trainingrun_changelist")).content.decode()
    assert reverse("training:run", args=[loop_rows.project_id, loop_rows.pk]) in page
