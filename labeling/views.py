"""Annotation UI. Each view: validate the input, check membership, call one service, render.

Pages and their htmx fragments share one URL; `request.htmx` picks the fragment.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Count, F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling import ranking_services, services
from labeling.forms import AddMemberForm, FlagForm, ImportForm, QueueSettingsForm, VoteForm
from labeling.importers import ImportFailed, import_file
from labeling.models import Comparison, FlagKind, Membership, Project, Side, Vote
from labeling.rendering import highlight_css
from labeling.web import current_user, manager_or_403, membership_or_404, render_page, see_other


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    memberships = (
        Membership.objects.filter(user=current_user(request))
        .select_related("project")
        .annotate(
            # Gold items measure annotators and are never done; they are not counted as work.
            comparisons=Count(
                "project__comparisons",
                filter=Q(project__comparisons__is_gold=False),
                distinct=True,
            ),
            done=Count(
                "project__comparisons",
                filter=Q(
                    project__comparisons__vote_count__gte=F("project__comparisons__votes_target"),
                    project__comparisons__is_gold=False,
                ),
                distinct=True,
            ),
        )
        .order_by("project__name")
    )
    rows = [
        {
            "membership": membership,
            "progress": services.get_annotator_progress(current_user(request), membership.project),
        }
        for membership in memberships
    ]
    return render(request, "labeling/project_list.html", {"rows": rows})


def _project_page_context(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    project = membership.project
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "progress": services.get_annotator_progress(current_user(request), project),
    }
    # Shown (with a link to the ranking page) only when the project has ranking tasks.
    ranking = ranking_services.get_ranking_status(current_user(request), project)
    context["ranking"] = ranking if ranking.tasks else None
    if membership.can_review:
        context["stats"] = services.get_project_stats(project)
        # Counted apart: one Count per relation joined twice would multiply the two.
        context["rounds"] = project.rounds.annotate(
            n=Count("comparisons", distinct=True),
            ranking_tasks_count=Count("ranking_tasks", distinct=True),
        )
        context["remote_code_checkpoints"] = project.checkpoints.filter(trust_remote_code=True)
    if membership.can_manage:
        context["import_form"] = ImportForm()
        context["member_form"] = AddMemberForm()
        context["queue_form"] = QueueSettingsForm(instance=project)
        context["members"] = project.memberships.select_related("user").order_by("user__username")
    return context


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = membership_or_404(request, project_id)
    return render(
        request, "labeling/project_detail.html", _project_page_context(request, membership)
    )


def _workbench_context(
    request: HttpRequest,
    membership: Membership,
    comparison: Comparison | None,
    form: VoteForm | None = None,
    notice: str = "",
    flag_form: FlagForm | None = None,
) -> dict[str, Any]:
    project = membership.project
    user = current_user(request)
    status = services.get_workbench_status(user, project)
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "comparison": comparison,
        "progress": status.progress,
        "undoable": status.undoable_vote_id is not None,
        "notice": notice,
        "partial": "workbench",
    }
    if comparison is not None:
        left_side = services.left_side_for(user.pk, comparison.id)
        right_side = Side.B if left_side == Side.A else Side.A
        context.update(
            left=comparison.completion_on(left_side),
            right=comparison.completion_on(right_side),
            left_choice=left_side,
            right_choice=right_side,
            form=form or VoteForm(initial={"comparison": comparison.id, "strength": "clear"}),
            flag_form=flag_form or FlagForm(initial={"comparison": comparison.id}),
        )
    return context


@login_required
@require_GET
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = membership_or_404(request, project_id)
    comparison = services.lease_next_comparison(current_user(request), membership.project)
    return render_page(
        request, "labeling/annotate.html", _workbench_context(request, membership, comparison)
    )


def _comparison_to_redisplay(form: forms.Form, project: Project, user: User) -> Comparison | None:
    """The comparison an invalid annotate-page form was about, or the annotator's next one."""
    comparison_id = form.cleaned_data.get("comparison")
    comparison = (
        Comparison.objects.filter(project=project, id=comparison_id)
        .select_related("prompt", "round", "completion_a", "completion_b")
        .first()
        if comparison_id
        else None
    )
    return comparison or services.lease_next_comparison(user, project)


@login_required
@require_POST
def vote(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = membership_or_404(request, project_id)
    project = membership.project
    form = VoteForm(request.POST)
    if not form.is_valid():
        comparison = _comparison_to_redisplay(form, project, current_user(request))
        context = _workbench_context(request, membership, comparison, form=form)
        return render_page(request, "labeling/annotate.html", context, status=400)
    data = form.cleaned_data
    notice = "Vote saved."
    user = current_user(request)
    saved = True
    try:
        services.cast_vote(
            user,
            project,
            data["comparison"],
            services.VoteInput(
                data["choice"], data["strength"], data["rationale"], data["client_key"]
            ),
        )
    except services.VoteRejected as exc:
        saved = False
        # A retried submit whose first try was stored: say so, and move on as a success.
        stored = services.stored_vote(user, project, data["client_key"])
        notice = "Your vote was already saved." if stored else str(exc)
    if not request.htmx:  # type: ignore[attr-defined]
        messages.info(request, notice)
        return see_other(reverse("labeling:annotate", args=[project.id]))
    # A saved vote released the annotator's lease: there is no held one to look for.
    comparison = services.lease_next_comparison(user, project, may_hold=not saved)
    return render_page(
        request,
        "labeling/annotate.html",
        _workbench_context(request, membership, comparison, notice=notice),
    )


@login_required
@require_POST
def set_aside(request: HttpRequest, project_id: int) -> HttpResponse:
    """Skip the comparison (not served to this annotator again) or flag it for review."""
    membership = membership_or_404(request, project_id)
    project = membership.project
    user = current_user(request)
    form = FlagForm(request.POST)
    if not form.is_valid():
        comparison = _comparison_to_redisplay(form, project, user)
        context = _workbench_context(request, membership, comparison, flag_form=form)
        return render_page(request, "labeling/annotate.html", context, status=400)
    data = form.cleaned_data
    try:
        services.set_aside_comparison(
            user, project, data["comparison"], data["kind"], data["reason"], data["note"]
        )
        notice = (
            "Flagged for a reviewer; thank you."
            if data["kind"] == FlagKind.FLAG
            else "Skipped; you will not see it again."
        )
        status = 200
    except services.VoteRejected as exc:
        notice, status = str(exc), 409
    if not request.htmx:  # type: ignore[attr-defined]
        messages.info(request, notice)
        return see_other(reverse("labeling:annotate", args=[project.id]))
    comparison = services.lease_next_comparison(user, project)
    context = _workbench_context(request, membership, comparison, notice=notice)
    return render_page(request, "labeling/annotate.html", context, status=status)


@login_required
@require_POST
def undo(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = membership_or_404(request, project_id)
    project = membership.project
    try:
        services.undo_last_vote(current_user(request), project)
        notice = "Vote undone."
        status = 200
    except services.VoteRejected as exc:
        notice, status = str(exc), 409
    if not request.htmx:  # type: ignore[attr-defined]
        messages.info(request, notice)
        return see_other(reverse("labeling:annotate", args=[project.id]))
    comparison = services.lease_next_comparison(current_user(request), project)
    context = _workbench_context(request, membership, comparison, notice=notice)
    return render_page(request, "labeling/annotate.html", context, status=status)


@login_required
@require_http_methods(["POST"])
def import_data(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    form = ImportForm(request.POST, request.FILES)
    errors: list[str] = []
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
            hidden = exc.total_errors - len(exc.errors)
            if hidden > 0:
                errors.append(f"… and {hidden} more bad rows not listed.")
        else:
            messages.success(request, result.summary())
            return see_other(reverse("labeling:project_detail", args=[project.id]))
    context = _project_page_context(request, membership)
    context.update(import_form=form, import_errors=errors, partial="import-form")
    return render_page(request, "labeling/project_detail.html", context, status=400)


@login_required
@require_POST
def add_member(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    form = AddMemberForm(request.POST)
    if not form.is_valid():
        context = _project_page_context(request, membership)
        context.update(member_form=form, partial="member-form")
        return render_page(request, "labeling/project_detail.html", context, status=400)
    added = services.add_member(project, form.cleaned_data["username"], form.cleaned_data["role"])
    messages.success(request, f"{added.user} is now {added.get_role_display().lower()}.")
    return see_other(reverse("labeling:project_detail", args=[project.id]))


@login_required
@require_POST
def queue_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """Set the project's queue order and gold rate (admins)."""
    membership = manager_or_403(request, project_id)
    project = membership.project
    form = QueueSettingsForm(request.POST, instance=project)
    if not form.is_valid():
        context = _project_page_context(request, membership)
        context.update(queue_form=form, partial="queue-form")
        return render_page(request, "labeling/project_detail.html", context, status=400)
    form.save()
    messages.success(request, "Queue settings saved; they apply to the next comparison served.")
    return see_other(reverse("labeling:project_detail", args=[project.id]))


RECENT_VOTES = 50


@login_required
@require_GET
def my_votes(request: HttpRequest) -> HttpResponse:
    """The signed-in annotator's own latest votes, in projects they still belong to."""
    user = current_user(request)
    votes = (
        Vote.objects.filter(annotator=user, comparison__project__memberships__user=user)
        .select_related("comparison__project", "comparison__prompt", "comparison__round")
        .order_by("-created_at", "-id")[:RECENT_VOTES]
    )
    return render(request, "labeling/my_votes.html", {"votes": votes, "limit": RECENT_VOTES})


@require_GET
@cache_control(max_age=86400, public=True)
def highlight_stylesheet(request: HttpRequest) -> HttpResponse:
    return HttpResponse(highlight_css(), content_type="text/css")
