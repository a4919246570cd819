"""The loop's pages: snapshots, training runs (live progress), checkpoints, sampling rounds.

Reviewers and admins of a project see them; only admins start, cancel or export.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from api.downloads import serve_file
from core.artifacts import get_store
from labeling.models import JobStatus, Snapshot, SnapshotPolicy
from labeling.snapshots import export_snapshot, snapshot_key
from labeling.web import (
    current_user,
    manager_or_403,
    render_page,
    reviewer_or_403,
    see_other,
)
from training import services
from training.charts import chart_metrics, run_series
from training.defaults import describe as describe_defaults
from training.defaults import describe_truncation, suggested_label_smoothing, suggested_run_values
from training.forms import RunForm, SamplingForm, SnapshotForm
from training.models import Checkpoint, RunMetric, SamplingJob, TrainingRun
from training.params import RUN_PARAMS_BY_NAME


def pipeline_rows(runs: list[TrainingRun]) -> list[dict[str, Any]]:
    """Per run: its last eval metrics (loss, reward accuracy and margin) and the win-rate of
    its final checkpoint's newest evaluation with results, so runs compare at a glance."""
    from django.apps import apps

    last_eval: dict[int, dict[str, Any]] = {}
    for row in RunMetric.objects.filter(run__in=runs, split="eval").order_by("run_id", "step"):
        last_eval[row.run_id] = row.values
    win: dict[int, dict[str, Any]] = {}
    # evaluation sits above training in the layers: reach its model through the registry
    if apps.is_installed("evaluation"):
        evaluation_model = apps.get_model("evaluation", "Evaluation")
        finished = evaluation_model.objects.filter(
            checkpoint__run__in=runs, checkpoint__is_final=True, status=JobStatus.SUCCEEDED
        ).order_by("id")
        for evaluation in finished.values("checkpoint__run_id", "results", "provisional"):
            opponents = (evaluation["results"] or {}).get("opponents") or []
            if opponents and opponents[0].get("win_rate"):
                win[evaluation["checkpoint__run_id"]] = {
                    **opponents[0]["win_rate"],
                    "opponent": opponents[0]["name"],
                    "provisional": evaluation["provisional"],
                }
    return [{"run": run, "eval": last_eval.get(run.pk, {}), "win": win.get(run.pk)} for run in runs]


@login_required
@require_GET
def pipeline(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    project = membership.project
    runs = list(TrainingRun.objects.filter(project=project).select_related("snapshot")[:50])
    context = {
        "project": project,
        "membership": membership,
        "snapshots": Snapshot.objects.filter(project=project)[:50],
        "runs": runs,
        "run_rows": pipeline_rows(runs),
        "promoted": Checkpoint.objects.filter(project=project, promoted=True)
        .order_by("-promoted_at", "-id")
        .first(),
        "checkpoints": Checkpoint.objects.filter(project=project).select_related("run")[:100],
        "sampling_jobs": SamplingJob.objects.filter(project=project).select_related(
            "checkpoint", "round"
        )[:50],
        "snapshot_form": SnapshotForm(),
        "partial": "job-tables",
    }
    return render_page(request, "training/pipeline.html", context)


@login_required
@require_POST
def snapshot_create(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    form = SnapshotForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Snapshot not started: {form.errors.as_text()}")
        return see_other(reverse("training:pipeline", args=[project_id]))
    try:
        snapshot = export_snapshot(
            membership.project,
            form.cleaned_data["policy"],
            form.cleaned_data["min_agreement"],
            created_by=current_user(request),
            filters=form.filters(),
            pair_conversion=form.cleaned_data["pair_conversion"],
        )
    except ValueError as exc:  # a filter the project cannot satisfy (no such round, ...)
        messages.error(request, f"Snapshot not started: {exc}")
        return see_other(reverse("training:pipeline", args=[project_id]))
    return see_other(reverse("training:snapshot", args=[project_id, snapshot.pk]))


@login_required
@require_GET
def snapshot_detail(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    snapshot = get_object_or_404(Snapshot, project=membership.project, id=snapshot_id)
    context = {
        "project": membership.project,
        "membership": membership,
        "snapshot": snapshot,
        "partial": "snapshot-status",
    }
    return render_page(request, "training/snapshot.html", context)


_SNAPSHOT_FILE_TYPES = {
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "manifest": "application/json",
}


@login_required
@require_GET
def snapshot_download(
    request: HttpRequest, project_id: int, snapshot_id: int, file_format: str
) -> HttpResponseBase:
    membership = reviewer_or_403(request, project_id)
    snapshot = get_object_or_404(
        Snapshot, project=membership.project, id=snapshot_id, status=JobStatus.SUCCEEDED
    )
    if file_format not in {"jsonl", "parquet", "manifest"}:
        raise Http404("Unknown format.")
    key = snapshot_key(snapshot, file_format)
    name = f"preflab-snapshot-{snapshot.pk}-{snapshot.sha256[:12]}{PurePosixPath(key).suffix}"
    content_type = _SNAPSHOT_FILE_TYPES[file_format]
    sha256 = {"jsonl": snapshot.sha256, "parquet": snapshot.parquet_sha256}.get(file_format)
    if sha256:  # from the artifact store, with the API's ETag, Range and 304 handling
        return serve_file(request, key, sha256, name, content_type)
    return FileResponse(
        get_store().open(key), as_attachment=True, filename=name, content_type=content_type
    )


@login_required
@require_http_methods(["GET", "POST"])
def run_create(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    initial: dict[str, Any] = {}
    ready = (
        Snapshot.objects.filter(project=project, status=JobStatus.SUCCEEDED)
        .exclude(policy=SnapshotPolicy.RAW_VOTES)
        .order_by("-id")
    )
    # The snapshot asked for, else the newest ready one (the only one, often).
    asked = request.GET.get("snapshot", "")
    snapshot = (ready.filter(id=asked).first() if asked.isdigit() else None) or ready.first()
    # The promoted checkpoint (the gate's choice) is where the next round starts; without one,
    # the newest final checkpoint.
    latest_final = (
        Checkpoint.objects.filter(project=project, promoted=True)
        .order_by("-promoted_at", "-id")
        .first()
        or Checkpoint.objects.filter(project=project).order_by("-is_final", "-id").first()
    )
    if latest_final is not None:
        initial["start_checkpoint"] = latest_final.pk
    defaults_note = ""
    if snapshot is not None:
        initial["snapshot"] = snapshot.pk
        fitted = suggested_run_values(snapshot, latest_final)
        initial.update(fitted)
        defaults_note = describe_defaults(snapshot, fitted)
        smoothing = suggested_label_smoothing(snapshot)
        if smoothing is not None:
            initial["label_smoothing"], reason = smoothing
            defaults_note = f"{defaults_note} {reason}"
    form = RunForm(project, request.POST or None, initial=initial)
    truncation_note, truncation_warns = "", False
    chosen_length = str(request.POST.get("max_length") or initial.get("max_length") or "")
    chosen_snapshot = snapshot
    if request.POST.get("snapshot", "").isdigit():
        chosen_snapshot = ready.filter(id=request.POST["snapshot"]).first() or snapshot
    if chosen_snapshot is not None:
        default_length = int(RUN_PARAMS_BY_NAME["max_length"].default)
        length = int(chosen_length) if chosen_length.isdigit() else default_length
        truncation_note, truncation_warns = describe_truncation(chosen_snapshot, length)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                run = services.start_run(
                    form.cleaned_data["snapshot"],
                    form.cleaned_data["start_checkpoint"],
                    form.hyperparameters(),
                    reference_checkpoint=form.cleaned_data["reference_checkpoint"],
                    created_by=current_user(request),
                )
            except services.RunRefused as exc:
                form.add_error(None, str(exc))
            else:
                return see_other(reverse("training:run", args=[project.id, run.pk]))
    context = {
        "project": project,
        "membership": membership,
        "form": form,
        "defaults_note": defaults_note,
        "truncation_note": truncation_note,
        "truncation_warns": truncation_warns,
        "partial": "run-form",
    }
    return render_page(request, "training/run_form.html", context, status=status)


@login_required
@require_GET
def run_detail(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    run = get_object_or_404(
        TrainingRun.objects.select_related("snapshot", "start_checkpoint", "reference_checkpoint"),
        project=membership.project,
        id=run_id,
    )
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "chart_config": {
            "metrics": chart_metrics(),
            "sources": [_chart_source(membership.project.pk, run)],
        },
        "compare_url": reverse("training:run_compare", args=[membership.project.pk])
        + f"?run={run.pk}",
        "checkpoints": run.checkpoints.order_by("step"),
        "sampling_form": SamplingForm(membership.project),
        "partial": "run-live",
    }
    return render_page(request, "training/run.html", context)


@login_required
@require_POST
def run_cancel(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    run = get_object_or_404(TrainingRun, project=membership.project, id=run_id)
    if services.request_cancel(run):
        messages.info(request, "Cancelling: the run saves a checkpoint and stops.")
    else:
        messages.info(request, f"Run {run.pk} has already ended.")
    return see_other(reverse("training:run", args=[project_id, run.pk]))


@login_required
@require_POST
def sampling_create(request: HttpRequest, project_id: int, checkpoint_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    checkpoint = get_object_or_404(Checkpoint, project=project, id=checkpoint_id)
    form = SamplingForm(project, request.POST)
    if form.is_valid():
        try:
            job = services.start_sampling(
                project,
                checkpoint,
                pairing=form.cleaned_data["pairing"],
                selection=form.cleaned_data["selection"],
                prompt_limit=form.cleaned_data["prompt_limit"],
                generation=form.generation(),
                previous_checkpoint=form.cleaned_data["previous_checkpoint"],
                created_by=current_user(request),
                keep_empty=form.cleaned_data["keep_empty"],
                samples_per_prompt=form.cleaned_data["samples_per_prompt"],
                judge=form.cleaned_data["judge"],
            )
        except services.RunRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Sampling job {job.pk} queued with {checkpoint.name}.")
            return see_other(reverse("training:sampling_job", args=[project.id, job.pk]))
    context = {
        "project": project,
        "membership": membership,
        "checkpoint": checkpoint,
        "form": form,
        "partial": "sampling-form",
    }
    return render_page(request, "training/sampling_form.html", context, status=400)


@login_required
@require_GET
def sampling_job_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    job = get_object_or_404(
        SamplingJob.objects.select_related(
            "checkpoint", "previous_checkpoint", "round", "created_by", "judge"
        ),
        project=membership.project,
        id=job_id,
    )
    context = {
        "project": membership.project,
        "membership": membership,
        "job": job,
        "partial": "sampling-live",
    }
    return render_page(request, "training/sampling_job.html", context)


def _chart_source(project_id: int, run: TrainingRun) -> dict[str, Any]:
    return {
        "label": f"Run {run.pk}",
        "url": reverse("training:run_metrics", args=[project_id, run.pk]),
        "finished": run.is_finished,
    }


@login_required
@require_GET
def run_metrics(request: HttpRequest, project_id: int, run_id: int) -> JsonResponse:
    """A run's metrics as columns; the run and compare pages poll it while the run is live."""
    membership = reviewer_or_403(request, project_id)
    run = get_object_or_404(TrainingRun, project=membership.project, id=run_id)
    response = JsonResponse(run_series(run))
    response["Cache-Control"] = "no-store"
    return response


COMPARE_MAX_RUNS = 8


@login_required
@require_GET
def run_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """Overlay the chosen runs of one project on the same charts."""
    membership = reviewer_or_403(request, project_id)
    project = membership.project
    runs = list(
        TrainingRun.objects.filter(project=project).select_related("snapshot").order_by("-id")[:50]
    )
    wanted = {int(value) for value in request.GET.getlist("run") if value.isdigit()}
    chosen = [run for run in runs if run.pk in wanted][:COMPARE_MAX_RUNS]
    context = {
        "project": project,
        "membership": membership,
        "runs": runs,
        "chosen_ids": {run.pk for run in chosen},
        "max_runs": COMPARE_MAX_RUNS,
        "chart_config": {
            "metrics": chart_metrics(),
            "sources": [
                _chart_source(project.pk, run) for run in sorted(chosen, key=lambda r: r.pk)
            ],
        },
    }
    return render_page(request, "training/compare.html", context)
