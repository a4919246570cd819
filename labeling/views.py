"""Annotation UI. Each view: validate the input, check membership, call one service, render.

Pages and their htmx fragments share one URL; `request.htmx` picks the fragment.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling import services
from labeling.forms import AddMemberForm, ImportForm, VoteForm
from labeling.importers import ImportFailed, import_file
from labeling.models import Comparison, Membership, Side
from labeling.rendering import highlight_css


def _user(request: HttpRequest) -> User:
    # Every caller sits behind login_required, so the user is a real, authenticated User.
    return cast(User, request.user)


def _membership_or_404(request: HttpRequest, project_id: int) -> Membership:
    membership = services.get_membership(_user(request), project_id)
    if membership is None:
        # 404, not 403: a user outside a project must not learn that it exists.
        raise Http404("No such project.")
    return membership


def _see_other(location: str) -> HttpResponse:
    """Redirect after a POST so a reload does not resubmit the form."""
    response = HttpResponse(status=303)
    response["Location"] = location
    return response


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render the page, or only its named partial when htmx asked for one."""
    partial = context.pop("partial", None)
    name = f"{template}#{partial}" if request.htmx and partial else template  # type: ignore[attr-defined]
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    memberships = (
        Membership.objects.filter(user=_user(request))
        .select_related("project")
        .annotate(
            comparisons=Count("project__comparisons", distinct=True),
            done=Count(
                "project__comparisons",
                filter=Q(
                    project__comparisons__vote_count__gte=F("project__comparisons__votes_target")
                ),
                distinct=True,
            ),
        )
        .order_by("project__name")
    )
    rows = [
        {
            "membership": membership,
            "progress": services.get_annotator_progress(_user(request), membership.project),
        }
        for membership in memberships
    ]
    return render(request, "labeling/project_list.html", {"rows": rows})


def _project_page_context(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    project = membership.project
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "progress": services.get_annotator_progress(_user(request), project),
    }
    if membership.can_review:
        context["stats"] = services.get_project_stats(project)
        context["rounds"] = project.rounds.annotate(n=Count("comparisons"))
    if membership.can_manage:
        context["import_form"] = ImportForm()
        context["member_form"] = AddMemberForm()
        context["members"] = project.memberships.select_related("user").order_by("user__username")
    return context


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = _membership_or_404(request, project_id)
    return render(
        request, "labeling/project_detail.html", _project_page_context(request, membership)
    )


def _workbench_context(
    request: HttpRequest,
    membership: Membership,
    comparison: Comparison | None,
    form: VoteForm | None = None,
    notice: str = "",
) -> dict[str, Any]:
    project = membership.project
    user = _user(request)
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "comparison": comparison,
        "progress": services.get_annotator_progress(user, project),
        "undoable": services.get_undoable_vote(user, project),
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
        )
    return context


@login_required
@require_GET
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = _membership_or_404(request, project_id)
    comparison = services.lease_next_comparison(_user(request), membership.project)
    return _render(
        request, "labeling/annotate.html", _workbench_context(request, membership, comparison)
    )


@login_required
@require_POST
def vote(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = _membership_or_404(request, project_id)
    project = membership.project
    form = VoteForm(request.POST)
    if not form.is_valid():
        comparison_id = form.cleaned_data.get("comparison")
        comparison = (
            Comparison.objects.filter(project=project, id=comparison_id)
            .select_related("prompt", "completion_a", "completion_b")
            .first()
            if comparison_id
            else None
        )
        if comparison is None:
            comparison = services.lease_next_comparison(_user(request), project)
        context = _workbench_context(request, membership, comparison, form=form)
        return _render(request, "labeling/annotate.html", context, status=400)
    data = form.cleaned_data
    notice = "Vote saved."
    try:
        services.cast_vote(
            _user(request),
            project,
            data["comparison"],
            services.VoteInput(data["choice"], data["strength"], data["rationale"]),
        )
    except services.VoteRejected as exc:
        notice = str(exc)
    if not request.htmx:  # type: ignore[attr-defined]
        messages.info(request, notice)
        return _see_other(reverse("labeling:annotate", args=[project.id]))
    comparison = services.lease_next_comparison(_user(request), project)
    return _render(
        request,
        "labeling/annotate.html",
        _workbench_context(request, membership, comparison, notice=notice),
    )


@login_required
@require_POST
def undo(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = _membership_or_404(request, project_id)
    project = membership.project
    try:
        services.undo_last_vote(_user(request), project)
        notice = "Vote undone."
        status = 200
    except services.VoteRejected as exc:
        notice, status = str(exc), 409
    if not request.htmx:  # type: ignore[attr-defined]
        messages.info(request, notice)
        return _see_other(reverse("labeling:annotate", args=[project.id]))
    comparison = services.lease_next_comparison(_user(request), project)
    context = _workbench_context(request, membership, comparison, notice=notice)
    return _render(request, "labeling/annotate.html", context, status=status)


def _manager_or_403(request: HttpRequest, project_id: int) -> Membership:
    membership = _membership_or_404(request, project_id)
    if not membership.can_manage:
        raise PermissionDenied("Only the project's admins can do this.")
    return membership


@login_required
@require_http_methods(["POST"])
def import_data(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = _manager_or_403(request, project_id)
    project = membership.project
    form = ImportForm(request.POST, request.FILES)
    errors: list[str] = []
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            result = import_file(project, upload.read(), upload.name, form.cleaned_data["kind"])
        except ImportFailed as exc:
            errors = exc.errors
            hidden = exc.total_errors - len(exc.errors)
            if hidden > 0:
                errors.append(f"… and {hidden} more bad rows not listed.")
        else:
            messages.success(request, result.summary())
            return _see_other(reverse("labeling:project_detail", args=[project.id]))
    context = _project_page_context(request, membership)
    context.update(import_form=form, import_errors=errors, partial="import-form")
    return _render(request, "labeling/project_detail.html", context, status=400)


@login_required
@require_POST
def add_member(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = _manager_or_403(request, project_id)
    project = membership.project
    form = AddMemberForm(request.POST)
    if not form.is_valid():
        context = _project_page_context(request, membership)
        context.update(member_form=form, partial="member-form")
        return _render(request, "labeling/project_detail.html", context, status=400)
    added = services.add_member(project, form.cleaned_data["username"], form.cleaned_data["role"])
    messages.success(request, f"{added.user} is now {added.get_role_display().lower()}.")
    return _see_other(reverse("labeling:project_detail", args=[project.id]))


@require_GET
@cache_control(max_age=86400, public=True)
def highlight_stylesheet(request: HttpRequest) -> HttpResponse:
    return HttpResponse(highlight_css(), content_type="text/css")
