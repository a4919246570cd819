from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse

from labeling.forms import ImportForm
from labeling.importers import ImportFailed, import_file
from labeling.models import (
    Adjudication,
    AnnotatorExclusion,
    Comparison,
    Completion,
    Invite,
    ItemFlag,
    Judge,
    Membership,
    Project,
    Prompt,
    QualityReport,
    Ranking,
    RankingItem,
    RankingSkip,
    RankingTask,
    Round,
    Snapshot,
    Vote,
)
from labeling.services import get_project_stats


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "overlap", "base_model", "member_count", "progress", "created_at"]
    search_fields = ["name", "base_model"]
    inlines = [MembershipInline]
    change_form_template = "admin/labeling/project/change_form.html"

    @admin.display(description="members")
    def member_count(self, project: Project) -> int:
        return project.memberships.count()

    @admin.display(description="comparisons done")
    def progress(self, project: Project) -> str:
        stats = get_project_stats(project)
        return f"{stats.comparisons_done}/{stats.comparisons} ({stats.votes} votes)"

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:project_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="labeling_project_import",
            )
        ]
        return extra + super().get_urls()

    def import_view(self, request: HttpRequest, project_id: int) -> HttpResponse:
        project = get_object_or_404(Project, id=project_id)
        if not self.has_change_permission(request, project):
            return HttpResponse(status=403)
        form = ImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        status = 200
        if request.method == "POST":
            status = 400
            if form.is_valid():
                upload = form.cleaned_data["file"]
                try:
                    result = import_file(
                        project,
                        upload.read(),
                        upload.name,
                        form.cleaned_data["kind"],
                        form.cleaned_data["on_duplicate"],
                    )
                except ImportFailed as exc:
                    errors = exc.errors
                else:
                    self.message_user(request, result.summary(), messages.SUCCESS)
                    return redirect(reverse("admin:labeling_project_change", args=[project.id]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import into {project}",
            "project": project,
            "form": form,
            "import_errors": errors,
            "opts": self.model._meta,
        }
        return render(request, "admin/labeling/project/import.html", context, status=status)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "purpose", "source", "status", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["project__name", "source"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "preview", "is_chat", "source", "created_at"]
    list_filter = ["project", "source"]
    search_fields = ["text", "source"]
    list_select_related = ["project"]

    @admin.display(boolean=True, description="chat")
    def is_chat(self, prompt: Prompt) -> bool:
        return prompt.is_chat


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt_id", "model_name", "short_text", "created_at"]
    list_filter = ["model_name"]
    search_fields = ["text", "model_name"]
    raw_id_fields = ["prompt"]

    @admin.display(description="text")
    def short_text(self, completion: Completion) -> str:
        return completion.text[:80]


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = [
        "id", "project", "round", "vote_count", "votes_target", "is_gold", "leased_to",
        "lease_expires_at",
    ]  # fmt: skip
    list_filter = ["project", "is_gold", "round"]
    search_fields = ["prompt__text", "id"]
    raw_id_fields = ["prompt", "completion_a", "completion_b", "leased_to"]
    list_select_related = ["project", "round", "leased_to"]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = [
        "id", "comparison_id", "annotator", "choice", "strength", "left_side", "time_taken_ms",
        "imported_from", "created_at",
    ]  # fmt: skip
    list_filter = ["source", "choice", "strength", "left_side", "comparison__project"]
    search_fields = ["annotator__username", "rationale", "imported_from"]
    raw_id_fields = ["comparison", "chosen", "rejected", "annotator"]
    list_select_related = ["annotator"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Vote]:
        return super().get_queryset(request).select_related("comparison")


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Snapshots are built by workers and never change once published: look, never edit."""

    list_display = [
        "id", "project", "status", "policy", "min_agreement", "row_count", "short_sha256",
        "created_by", "created_at", "finished_at",
    ]  # fmt: skip
    list_filter = ["status", "policy", "project"]
    search_fields = ["id", "sha256", "project__name", "created_by__username"]
    list_select_related = ["project", "created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="SHA-256")
    def short_sha256(self, snapshot: Snapshot) -> str:
        return snapshot.sha256[:12]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "kind", "version", "enabled", "created_at"]
    list_filter = ["kind", "enabled", "project"]
    search_fields = ["name", "project__name"]
    # The configuration may name a secret setting; it never holds the secret itself.
    readonly_fields = ["version", "created_by", "created_at"]


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["comparison", "choice", "reviewer", "updated_at"]
    list_filter = ["choice", "comparison__project"]
    search_fields = ["reviewer__username", "note", "comparison__id"]
    raw_id_fields = ["comparison"]


@admin.register(AnnotatorExclusion)
class AnnotatorExclusionAdmin(admin.ModelAdmin):
    list_display = ["annotator", "project", "created_by", "created_at", "lifted_at"]
    list_filter = ["project", "lifted_at"]
    search_fields = ["annotator__username", "reason"]


@admin.register(ItemFlag)
class ItemFlagAdmin(admin.ModelAdmin):
    list_display = ["comparison", "kind", "reason", "user", "created_at", "resolved_at"]
    list_filter = ["kind", "reason", "comparison__project"]
    search_fields = ["user__username", "note", "comparison__id"]
    raw_id_fields = ["comparison"]


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["project", "role", "created_by", "created_at", "expires_at", "used_by"]
    list_filter = ["role", "project"]
    search_fields = ["project__name", "created_by__username", "used_by__username"]
    # The token itself is shown once to its creator; only its hash is stored.
    readonly_fields = ["token_hash"]


@admin.register(QualityReport)
class QualityReportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "round", "status", "vote_count", "finished_at"]
    list_filter = ["status", "project"]
    search_fields = ["id", "project__name"]
    readonly_fields = ["data"]


class RankingItemInline(admin.TabularInline):
    """A task's K completions at their canonical positions: stored rankings index into them, so
    they are shown, never edited here."""

    model = RankingItem
    extra = 0
    can_delete = False
    fields = ["position", "completion"]
    readonly_fields = ["position", "completion"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(RankingTask)
class RankingTaskAdmin(admin.ModelAdmin):
    list_display = [
        "id", "project", "round", "size", "vote_count", "votes_target", "leased_to",
        "lease_expires_at",
    ]  # fmt: skip
    list_filter = ["project", "size", "round"]
    search_fields = ["prompt__text", "id"]
    raw_id_fields = ["prompt", "leased_to"]
    list_select_related = ["project", "round", "leased_to"]
    # K and the counter follow the items and the rankings; a hand edit would break both.
    readonly_fields = ["size", "vote_count"]
    inlines = [RankingItemInline]


@admin.register(RankingItem)
class RankingItemAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "position", "completion"]
    list_filter = ["task__project"]
    search_fields = ["completion__text", "task__id"]
    raw_id_fields = ["task", "completion"]
    list_select_related = ["task", "completion"]


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = [
        "id", "task_id", "annotator", "ranking", "display_order", "source", "time_taken_ms",
        "imported_from", "created_at",
    ]  # fmt: skip
    list_filter = ["source", "task__project"]
    search_fields = ["annotator__username", "imported_from", "task__id"]
    raw_id_fields = ["task", "annotator"]
    list_select_related = ["annotator"]
    date_hierarchy = "created_at"
    # What the annotator submitted and saw: evidence, not settings.
    readonly_fields = ["ranking", "display_order", "time_taken_ms", "client_key", "created_at"]


@admin.register(RankingSkip)
class RankingSkipAdmin(admin.ModelAdmin):
    list_display = ["task", "reason", "user", "created_at"]
    list_filter = ["reason", "task__project"]
    search_fields = ["user__username", "note", "task__id"]
    raw_id_fields = ["task", "user"]
    list_select_related = ["task", "user"]
