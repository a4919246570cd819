"""The loop's models in the Django admin.

Checkpoints carry one staff-only setting: whether a model's own code may run on the worker.
Runs, their metrics and sampling jobs are written by PrefLab itself: the admin lists, filters
and searches them, and links each job to its page.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from training.models import Checkpoint, RunMetric, SamplingJob, TrainingRun


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "path", "run", "is_final", "promoted", "trust_remote_code")
    list_filter = ("trust_remote_code", "is_final", "promoted")
    search_fields = ("name", "path")
    # Only trust_remote_code is a staff decision; the rest is written by PrefLab itself.
    fields = ("project", "name", "path", "run", "step", "is_final", "trust_remote_code")
    readonly_fields = ("project", "path", "run", "step", "is_final")
    # promoted is set by the gate or an override on the checkpoint page, which records why.

    def has_add_permission(self, request: object) -> bool:
        return False


def _job_columns(*extra: str) -> tuple[str, ...]:
    return ("id", "project", "status", *extra, "attempts", "created_at", "finished_at")


class ReadOnlyJobAdmin(admin.ModelAdmin):
    """Jobs are written by PrefLab's services and workers; the admin looks, filters, searches."""

    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyJobAdmin):
    list_display = _job_columns("progress", "snapshot", "loss", "reward_accuracy", "page")
    list_filter = ("status", "project", "cancel_requested")
    search_fields = ("id", "project__name", "created_by__username", "error")
    list_select_related = ("project", "snapshot", "created_by")
    raw_id_fields = ("snapshot", "start_checkpoint", "reference_checkpoint", "created_by")

    @admin.display(description="steps")
    def progress(self, run: TrainingRun) -> str:
        return f"{run.step}/{run.total_steps if run.total_steps is not None else '?'}"

    @admin.display(description="loss")
    def loss(self, run: TrainingRun) -> str | None:
        value = run.latest_metrics.get("loss")
        return f"{value:.4f}" if isinstance(value, int | float) else None

    @admin.display(description="reward acc.")
    def reward_accuracy(self, run: TrainingRun) -> str | None:
        value = run.latest_metrics.get("reward_accuracy")
        return f"{value:.3f}" if isinstance(value, int | float) else None

    @admin.display(description="run page")
    def page(self, run: TrainingRun) -> str:
        url = reverse("training:run", args=[run.project_id, run.pk])
        return format_html('<a href="{}">open</a>', url)


@admin.register(RunMetric)
class RunMetricAdmin(admin.ModelAdmin):
    list_display = ("run", "split", "step", "loss", "reward_accuracy")
    list_filter = ("split", "run__project")
    search_fields = ("run__id", "run__project__name")
    list_select_related = ("run",)
    raw_id_fields = ("run",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="loss")
    def loss(self, metric: RunMetric) -> object:
        return metric.values.get("loss")

    @admin.display(description="reward accuracy")
    def reward_accuracy(self, metric: RunMetric) -> object:
        return metric.values.get("reward_accuracy")


@admin.register(SamplingJob)
class SamplingJobAdmin(ReadOnlyJobAdmin):
    list_display = _job_columns(
        "checkpoint", "pairing", "selection", "round", "comparisons_created",
        "ranking_tasks_created", "dropped_identical", "dropped_empty", "dropped_missing", "page",
    )  # fmt: skip
    list_filter = ("status", "pairing", "selection", "project")
    search_fields = ("id", "project__name", "checkpoint__name", "error")
    list_select_related = ("project", "checkpoint", "round")
    raw_id_fields = ("checkpoint", "previous_checkpoint", "round", "created_by", "judge")

    @admin.display(description="job page")
    def page(self, job: SamplingJob) -> str:
        url = reverse("training:sampling_job", args=[job.project_id, job.pk])
        return format_html('<a href="{}">open</a>', url)
