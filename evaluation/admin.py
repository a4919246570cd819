"""Evaluations and promotion decisions in the Django admin: written by PrefLab itself (the
evaluation job, the gate and admins' overrides on the checkpoint page), so read-only here."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from evaluation.models import Evaluation, PromotionDecision


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "project", "checkpoint", "status", "round", "comparisons_created", "provisional",
        "attempts", "created_at", "finished_at", "page",
    )  # fmt: skip
    list_filter = ("status", "provisional", "project")
    search_fields = ("id", "project__name", "checkpoint__name", "error")
    list_select_related = ("project", "checkpoint", "round")
    raw_id_fields = ("checkpoint", "round", "created_by")
    date_hierarchy = "created_at"

    @admin.display(description="page")
    def page(self, evaluation: Evaluation) -> str:
        url = reverse("evaluation:evaluation", args=[evaluation.project_id, evaluation.pk])
        return format_html('<a href="{}">open</a>', url)


@admin.register(PromotionDecision)
class PromotionDecisionAdmin(ReadOnlyAdmin):
    list_display = ("id", "checkpoint", "decision", "decided_by", "evaluation", "created_at")
    list_filter = ("decision",)
    search_fields = ("checkpoint__name", "note", "decided_by__username")
    list_select_related = ("checkpoint", "decided_by", "evaluation")
    raw_id_fields = ("checkpoint", "evaluation", "decided_by")
