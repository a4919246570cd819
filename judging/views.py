"""The judges page of a project: judges, their jobs (progress, cancel) and agreement."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from judging import services
from judging.forms import JudgeEditForm, JudgeForm, StartJudgingForm
from judging.kinds import JudgeConfigError
from judging.models import JudgingJob
from labeling.models import Judge, Membership
from labeling.quality.judges import judge_agreement
from labeling.web import current_user, manager_or_403, render_page, reviewer_or_403, see_other

_RECENT_JOBS = 20


def _context(membership: Membership, request: HttpRequest, **extra: Any) -> dict[str, Any]:
    project = membership.project
    judges = list(Judge.objects.filter(project=project).order_by("name"))
    jobs = list(
        JudgingJob.objects.filter(project=project)
        .select_related("judge", "round", "created_by")
        .order_by("-id")[:_RECENT_JOBS]
    )
    figures = [entry for entry in judge_agreement(project) if entry["round_id"] is None]
    context = {
        "project": project,
        "membership": membership,
        "judges": [(judge, services.public_config(judge)) for judge in judges],
        "edit_forms": {
            judge.pk: JudgeEditForm(
                initial={
                    "config": json.dumps(services.public_config(judge), indent=2),
                    "enabled": judge.enabled,
                },
                prefix=f"judge-{judge.pk}",
            )
            for judge in judges
        },
        "jobs": jobs,
        "any_active": any(job.is_active for job in jobs),
        "agreement": figures,
        "can_add": membership.can_manage and request.user.is_staff,
        "judge_form": JudgeForm(),
        "start_form": StartJudgingForm(project),
        "partial": "judging-jobs",
    }
    context.update(extra)
    return context


@login_required
@require_GET
def judges_page(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    return render_page(request, "judging/judges.html", _context(membership, request))


@login_required
@require_POST
def judge_add(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    if not request.user.is_staff:
        raise PermissionDenied("Only staff add judges: a judge runs code or reaches a network.")
    form = JudgeForm(request.POST)
    if form.is_valid():
        try:
            judge = services.add_judge(
                membership.project,
                form.cleaned_data["name"],
                form.cleaned_data["kind"],
                form.cleaned_data["config"],
                created_by=current_user(request),
            )
        except (JudgeConfigError, services.JudgingRefused) as exc:
            form.add_error("config" if isinstance(exc, JudgeConfigError) else None, str(exc))
        else:
            messages.success(request, f"Judge {judge.name} added.")
            return see_other(reverse("judging:judges", args=[project_id]))
    context = _context(membership, request, judge_form=form)
    context["partial"] = None
    return render_page(request, "judging/judges.html", context, status=400)


@login_required
@require_POST
def judge_edit(request: HttpRequest, project_id: int, judge_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    if not request.user.is_staff:
        raise PermissionDenied("Only staff change judges: a judge runs code or reaches a network.")
    judge = get_object_or_404(Judge, project=membership.project, id=judge_id)
    form = JudgeEditForm(request.POST, prefix=f"judge-{judge.pk}")
    if form.is_valid():
        before = judge.version
        try:
            judge = services.update_judge(
                judge, config=form.cleaned_data["config"], enabled=form.cleaned_data["enabled"]
            )
        except JudgeConfigError as exc:
            form.add_error("config", str(exc))
        else:
            changed = f"now version {judge.version}" if judge.version != before else "same config"
            state = "enabled" if judge.enabled else "disabled"
            messages.success(request, f"Judge {judge.name} saved ({changed}, {state}).")
            return see_other(reverse("judging:judges", args=[project_id]))
    context = _context(membership, request)
    context["edit_forms"][judge.pk] = form
    context["open_edit"] = judge.pk
    context["partial"] = None
    return render_page(request, "judging/judges.html", context, status=400)


@login_required
@require_POST
def judging_start(request: HttpRequest, project_id: int, judge_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    judge = get_object_or_404(Judge, project=membership.project, id=judge_id)
    form = StartJudgingForm(membership.project, request.POST)
    if form.is_valid():
        try:
            job = services.start_judging(
                judge,
                scope=form.cleaned_data["scope"],
                round=form.cleaned_data["round"],
                created_by=current_user(request),
            )
        except services.JudgingRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Judging job {job.pk} queued: {judge.name}.")
            return see_other(reverse("judging:judges", args=[project_id]))
    context = _context(membership, request, start_form=form, failed_judge=judge.pk)
    context["partial"] = None
    return render_page(request, "judging/judges.html", context, status=400)


@login_required
@require_POST
def judging_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    job = get_object_or_404(JudgingJob, project=membership.project, id=job_id)
    if job.is_active:
        services.request_cancel(job)
        messages.info(request, f"Judging job {job.pk}: cancelling after its current batch.")
    else:
        messages.info(request, f"Judging job {job.pk} has already ended.")
    return see_other(reverse("judging:judges", args=[project_id]))
