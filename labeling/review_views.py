"""Reviewer pages: the review queue, one comparison with every vote, and exclusions.

Reviewers and admins only (annotators get 403, outsiders 404); marking gold is for admins.
Each POST validates a form (400 with the errors on the page), calls one labeling.review
function and redirects back.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling import review
from labeling.forms import (
    AdjudicationForm,
    ExclusionForm,
    GoldForm,
    LiftExclusionForm,
    ResolveFlagForm,
)
from labeling.models import AnnotatorExclusion, Comparison, FlagKind, ItemFlag, Membership
from labeling.web import current_user, manager_or_403, reviewer_or_403, see_other


@login_required
@require_GET
def review_queue(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    queue = review.get_review_queue(membership.project)
    return render(
        request,
        "labeling/review/queue.html",
        {"project": membership.project, "membership": membership, "queue": queue},
    )


def _comparison_or_404(membership: Membership, comparison_id: int) -> Comparison:
    comparison = review.get_review_comparison(membership.project, comparison_id)
    if comparison is None:
        raise Http404("No such comparison.")
    return comparison


def _comparison_context(
    membership: Membership, comparison: Comparison, **forms: Any
) -> dict[str, Any]:
    adjudication = getattr(comparison, "adjudication", None)
    initial = {"choice": adjudication.choice, "note": adjudication.note} if adjudication else {}
    flags = comparison.flags.select_related("user", "resolved_by").order_by("created_at", "id")
    return {
        "project": membership.project,
        "membership": membership,
        "comparison": comparison,
        "votes": review.get_comparison_votes(comparison),
        "adjudication": adjudication,
        "flags": [flag for flag in flags if flag.kind == FlagKind.FLAG],
        "skips": sum(1 for flag in flags if flag.kind == FlagKind.SKIP),
        "adjudication_form": forms.get("adjudication_form") or AdjudicationForm(initial=initial),
        "gold_form": forms.get("gold_form")
        or GoldForm(initial={"gold_choice": comparison.gold_choice}),
        "resolve_form": forms.get("resolve_form") or ResolveFlagForm(),
        "resolve_errors_for": forms.get("resolve_errors_for"),
    }


@login_required
@require_GET
def review_comparison(request: HttpRequest, project_id: int, comparison_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    comparison = _comparison_or_404(membership, comparison_id)
    return render(
        request, "labeling/review/comparison.html", _comparison_context(membership, comparison)
    )


def _back_to(membership: Membership, comparison: Comparison) -> HttpResponse:
    return see_other(
        reverse("labeling:review_comparison", args=[membership.project.id, comparison.id])
    )


def _invalid(
    request: HttpRequest, membership: Membership, comparison: Comparison, **forms: Any
) -> HttpResponse:
    context = _comparison_context(membership, comparison, **forms)
    return render(request, "labeling/review/comparison.html", context, status=400)


@login_required
@require_POST
def adjudicate(request: HttpRequest, project_id: int, comparison_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    comparison = _comparison_or_404(membership, comparison_id)
    form = AdjudicationForm(request.POST)
    if not form.is_valid():
        return _invalid(request, membership, comparison, adjudication_form=form)
    review.adjudicate(
        current_user(request), comparison, form.cleaned_data["choice"], form.cleaned_data["note"]
    )
    messages.success(request, "Decision recorded; it wins over the votes in exports.")
    return _back_to(membership, comparison)


@login_required
@require_POST
def set_gold(request: HttpRequest, project_id: int, comparison_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    comparison = _comparison_or_404(membership, comparison_id)
    form = GoldForm(request.POST)
    if not form.is_valid():
        return _invalid(request, membership, comparison, gold_form=form)
    choice = form.cleaned_data["gold_choice"]
    if choice:
        review.mark_gold(comparison, choice)
        messages.success(request, "This comparison is now a gold item.")
    else:
        review.unmark_gold(comparison)
        messages.success(request, "This comparison is a regular comparison again.")
    return _back_to(membership, comparison)


@login_required
@require_POST
def resolve_flag(request: HttpRequest, project_id: int, flag_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    flag = ItemFlag.objects.filter(id=flag_id, comparison__project=membership.project).first()
    if flag is None:
        raise Http404("No such flag.")
    comparison = _comparison_or_404(membership, flag.comparison_id)
    form = ResolveFlagForm(request.POST)
    if not form.is_valid():
        return _invalid(
            request, membership, comparison, resolve_form=form, resolve_errors_for=flag.pk
        )
    try:
        review.resolve_flag(current_user(request), flag, form.cleaned_data["resolution"])
    except review.ReviewRefused as exc:
        messages.info(request, str(exc))
    else:
        messages.success(request, "Flag resolved.")
    return _back_to(membership, comparison)


def _exclusions_context(membership: Membership, **forms: Any) -> dict[str, Any]:
    project = membership.project
    return {
        "project": project,
        "membership": membership,
        "exclusions": review.list_exclusions(project),
        "form": forms.get("form") or ExclusionForm(annotators=review.project_annotators(project)),
        "lift_form": forms.get("lift_form") or LiftExclusionForm(),
        "lift_errors_for": forms.get("lift_errors_for"),
    }


@login_required
def exclusions(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: every exclusion, active and lifted, with who and when; POST: exclude someone."""
    membership = reviewer_or_403(request, project_id)
    template = "labeling/review/exclusions.html"
    if request.method != "POST":
        return render(request, template, _exclusions_context(membership))
    form = ExclusionForm(request.POST, annotators=review.project_annotators(membership.project))
    if form.is_valid():
        try:
            review.exclude_annotator(
                current_user(request),
                membership.project,
                form.cleaned_data["annotator"],
                form.cleaned_data["reason"],
            )
        except review.ReviewRefused as exc:
            form.add_error("annotator", str(exc))
        else:
            messages.success(
                request, f"{form.cleaned_data['annotator'].username}'s votes are excluded."
            )
            return see_other(reverse("labeling:exclusions", args=[membership.project.id]))
    return render(request, template, _exclusions_context(membership, form=form), status=400)


@login_required
@require_POST
def lift_exclusion(request: HttpRequest, project_id: int, exclusion_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    exclusion = AnnotatorExclusion.objects.filter(
        id=exclusion_id, project=membership.project
    ).first()
    if exclusion is None:
        raise Http404("No such exclusion.")
    form = LiftExclusionForm(request.POST)
    if not form.is_valid():
        context = _exclusions_context(membership, lift_form=form, lift_errors_for=exclusion.pk)
        return render(request, "labeling/review/exclusions.html", context, status=400)
    try:
        review.lift_exclusion(current_user(request), exclusion, form.cleaned_data["lift_reason"])
    except review.ReviewRefused as exc:
        messages.info(request, str(exc))
    else:
        messages.success(request, "Exclusion lifted.")
    return see_other(reverse("labeling:exclusions", args=[membership.project.id]))
