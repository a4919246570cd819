"""Evaluation pages: a project's evaluations and leaderboard, a checkpoint, an evaluation, the
lineage. Reviewers and admins see them; only admins start evaluations, hold prompts out, set
the gate rule, apply the gate or override it. Annotators never see results (403); outsiders
get 404."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evaluation import services
from evaluation.forms import EvaluationForm, GateRuleForm, HoldOutForm, OverrideForm
from evaluation.models import Evaluation, PromotionDecision
from labeling.models import Membership
from labeling.web import current_user, manager_or_403, render_page, reviewer_or_403, see_other
from training.forms import SamplingForm
from training.models import Checkpoint


def _project_context(membership: Membership, **extra: Any) -> dict[str, Any]:
    project = membership.project
    evaluations = list(
        Evaluation.objects.filter(project=project)
        .select_related("checkpoint", "round")
        .prefetch_related("opponents")[:50]
    )
    return {
        "project": project,
        "membership": membership,
        "evaluations": evaluations,
        "leaderboard": services.leaderboard(project),
        "splits": services.split_counts(project),
        "promoted": services.promoted_checkpoint(project),
        "hold_out_form": HoldOutForm(),
        "gate_form": GateRuleForm.for_project(project),
        **extra,
    }


@login_required
@require_GET
def project_evaluations(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    return render_page(request, "evaluation/project.html", _project_context(membership))


@login_required
@require_POST
def hold_out(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    form = HoldOutForm(request.POST)
    if form.is_valid():
        try:
            result = services.hold_out_prompts(
                membership.project, form.cleaned_data["percent"], form.cleaned_data["seed"]
            )
        except services.EvaluationRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, result.summary())
            return see_other(reverse("evaluation:project", args=[project_id]))
    context = _project_context(membership, hold_out_form=form)
    return render_page(request, "evaluation/project.html", context, status=400)


@login_required
@require_POST
def gate_rule(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    form = GateRuleForm(request.POST)
    if form.is_valid():
        try:
            services.parse_gate_rule(form.rule())
        except (TypeError, ValueError) as exc:
            form.add_error(None, str(exc))
        else:
            project.gate_rule = form.rule()
            project.save(update_fields=["gate_rule"])
            messages.success(request, "Gate rule saved; it applies to the next gate check.")
            return see_other(reverse("evaluation:project", args=[project_id]))
    context = _project_context(membership, gate_form=form)
    return render_page(request, "evaluation/project.html", context, status=400)


def _checkpoint_context(
    membership: Membership, checkpoint: Checkpoint, **extra: Any
) -> dict[str, Any]:
    project = membership.project
    return {
        "project": project,
        "membership": membership,
        "checkpoint": checkpoint,
        "parent": checkpoint.parent,
        "evaluations": list(
            Evaluation.objects.filter(checkpoint=checkpoint).prefetch_related("opponents")
        ),
        "decisions": PromotionDecision.objects.filter(checkpoint=checkpoint).select_related(
            "decided_by"
        ),
        "form": EvaluationForm(
            project,
            checkpoint,
            initial={"opponents": [c.pk for c in services.default_opponents(checkpoint)]},
        ),
        "override_form": OverrideForm(),
        "sampling_form": SamplingForm(project),
        "held_out": services.split_counts(project)["eval"],
        **extra,
    }


@login_required
@require_GET
def checkpoint_detail(request: HttpRequest, project_id: int, checkpoint_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    checkpoint = get_object_or_404(
        Checkpoint.objects.select_related("run", "run__start_checkpoint", "run__snapshot"),
        project=membership.project,
        id=checkpoint_id,
    )
    return render_page(
        request, "evaluation/checkpoint.html", _checkpoint_context(membership, checkpoint)
    )


@login_required
@require_POST
def evaluation_create(request: HttpRequest, project_id: int, checkpoint_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    checkpoint = get_object_or_404(Checkpoint, project=project, id=checkpoint_id)
    form = EvaluationForm(project, checkpoint, request.POST)
    if form.is_valid():
        try:
            evaluation = services.start_evaluation(
                project,
                checkpoint,
                opponents=list(form.cleaned_data["opponents"]),
                generation=form.generation(),
                prompt_limit=form.cleaned_data["prompt_limit"],
                min_votes=form.cleaned_data["min_votes"],
                created_by=current_user(request),
            )
        except services.EvaluationRefused as exc:
            field = exc.key if exc.key in form.fields else None
            form.add_error(field, str(exc))
        else:
            messages.success(request, f"Evaluation {evaluation.pk} queued.")
            return see_other(reverse("evaluation:evaluation", args=[project.pk, evaluation.pk]))
    context = _checkpoint_context(membership, checkpoint, form=form)
    return render_page(request, "evaluation/checkpoint.html", context, status=400)


def _evaluation_context(
    membership: Membership, evaluation: Evaluation, **extra: Any
) -> dict[str, Any]:
    return {
        "project": membership.project,
        "membership": membership,
        "evaluation": evaluation,
        "opponents": list(evaluation.opponents.all()),
        "results": services.get_results(evaluation),
        "decisions": evaluation.decisions.select_related("decided_by"),
        "override_form": OverrideForm(),
        "partial": "evaluation-live",
        **extra,
    }


@login_required
@require_GET
def evaluation_detail(request: HttpRequest, project_id: int, evaluation_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    evaluation = get_object_or_404(
        Evaluation.objects.select_related("checkpoint", "round", "created_by", "project"),
        project=membership.project,
        id=evaluation_id,
    )
    return render_page(
        request, "evaluation/evaluation.html", _evaluation_context(membership, evaluation)
    )


@login_required
@require_POST
def evaluation_gate(request: HttpRequest, project_id: int, evaluation_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    evaluation = get_object_or_404(
        Evaluation.objects.select_related("checkpoint", "project"),
        project=membership.project,
        id=evaluation_id,
    )
    try:
        decision = services.apply_gate(evaluation, decided_by=current_user(request))
    except services.EvaluationRefused as exc:
        messages.error(request, str(exc))
    else:
        if decision.decision == "promoted":
            messages.success(request, f"{evaluation.checkpoint.name} passed the gate: promoted.")
        else:
            messages.error(
                request,
                f"{evaluation.checkpoint.name} was not promoted: " + "; ".join(decision.reasons),
            )
    return see_other(reverse("evaluation:evaluation", args=[project_id, evaluation_id]))


@login_required
@require_http_methods(["POST"])
def checkpoint_override(request: HttpRequest, project_id: int, checkpoint_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    checkpoint = get_object_or_404(Checkpoint, project=membership.project, id=checkpoint_id)
    form = OverrideForm(request.POST)
    if form.is_valid():
        evaluation = Evaluation.objects.filter(checkpoint=checkpoint).order_by("-id").first()
        try:
            services.override_promotion(
                checkpoint,
                promote=form.cleaned_data["action"] == "promote",
                note=form.cleaned_data["note"],
                decided_by=current_user(request),
                evaluation=evaluation,
            )
        except services.EvaluationRefused as exc:
            form.add_error("note", str(exc))
        else:
            messages.success(request, "Override recorded.")
            return see_other(reverse("evaluation:checkpoint", args=[project_id, checkpoint_id]))
    context = _checkpoint_context(membership, checkpoint, override_form=form)
    return render_page(request, "evaluation/checkpoint.html", context, status=400)


@login_required
@require_GET
def lineage(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    context = {
        "project": membership.project,
        "membership": membership,
        "roots": services.lineage(membership.project),
    }
    return render_page(request, "evaluation/lineage.html", context)
