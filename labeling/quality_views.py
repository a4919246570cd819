"""The quality page: agreement, annotator reliability and flags, bias audits (docs/quality.md).

Reviewers and project admins only: an annotator gets 403, anyone outside the project 404. The
page reads the cached report (labeling.quality.jobs) and never computes figures itself; while a
report is queued or running its status fragment refreshes through htmx.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling.models import Membership, Round
from labeling.quality.forms import QualitySettingsForm
from labeling.quality.jobs import (
    MAX_PAIRS,
    get_quality,
    request_quality_report,
    thresholds_for,
)
from labeling.quality.thresholds import Thresholds
from labeling.web import current_user, manager_or_403, render_page, reviewer_or_403, see_other

# Rows of the annotator pair table shown on the page (the cached report keeps MAX_PAIRS).
PAGE_PAIRS = 50


def _round_or_404(membership: Membership, value: str | None) -> Round | None:
    """The project's round with this number (the ``round`` query or form field), or None."""
    if value in (None, ""):
        return None
    if not str(value).isdigit():
        raise Http404("No such round.")
    found = membership.project.rounds.filter(number=int(str(value))).first()
    if found is None:
        raise Http404("No such round.")
    return found


def _name(names: dict[str, str], annotator: Any) -> str:
    return names.get(str(annotator), f"user {annotator}")


def _bars(
    chart_id: str,
    title: str,
    labels: list[str],
    series: list[tuple[str, list[Any]]],
    *,
    y_range: tuple[float, float] | None = None,
    reference: float | None = None,
    y_label: str = "",
) -> dict[str, Any]:
    return {
        "id": chart_id,
        "title": title,
        "labels": labels,
        "series": [{"label": label, "values": values} for label, values in series],
        "range": y_range,
        "reference": reference,
        "y_label": y_label,
    }


def chart_config(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The bar charts of a report, as the JSON static/preflab/quality.js draws with uPlot."""
    charts: list[dict[str, Any]] = []
    project = data["project"]
    histogram = sorted((int(k), v) for k, v in project["agreement"]["votes_per_comparison"].items())
    charts.append(
        _bars(
            "votes-per-comparison",
            "Votes per comparison",
            [str(k) for k, _ in histogram],
            [("comparisons", [v for _, v in histogram])],
            y_label="comparisons",
        )
    )
    rounds = sorted(data["rounds"].items(), key=lambda item: int(item[0]))
    if rounds:
        charts.append(
            _bars(
                "length-bias",
                "Chosen response is the longer one, per round",
                [f"round {r}" for r, _ in rounds],
                [("share", [s["length_bias"]["longer_chosen"]["share"] for _, s in rounds])],
                y_range=(0.0, 1.0),
                reference=0.5,
                y_label="share of decisive votes",
            )
        )
        charts.append(
            _bars(
                "position-bias-rounds",
                "Left response chosen, per round",
                [f"round {r}" for r, _ in rounds],
                [("share", [s["position_bias"]["share"] for _, s in rounds])],
                y_range=(0.0, 1.0),
                reference=0.5,
                y_label="share of decisive votes",
            )
        )
    models = project["model_win_rates"]
    if models:
        charts.append(
            _bars(
                "model-win-rates",
                "Win-rate per model",
                [str(m["model"]) for m in models],
                [("win-rate", [m["win_rate"] for m in models])],
                y_range=(0.0, 1.0),
                reference=0.5,
                y_label="wins / (wins + losses)",
            )
        )
    annotators = [a for a in data["annotators"] if a["left_share"] is not None]
    if annotators:
        names = data.get("annotator_names", {})
        charts.append(
            _bars(
                "position-bias-annotators",
                "Left response chosen, per annotator",
                [_name(names, a["annotator"]) for a in annotators],
                [("share", [a["left_share"] for a in annotators])],
                y_range=(0.0, 1.0),
                reference=0.5,
                y_label="share of decisive votes",
            )
        )
    return charts


def _section_rows(data: dict[str, Any], round_: Round | None) -> list[dict[str, Any]]:
    if round_ is not None:  # a round's own report: its project section is the round
        return [{"label": f"Round {round_.number}", "number": round_.number, **data["project"]}]
    rows = [{"label": "All rounds", **data["project"]}]
    for number, section in sorted(data["rounds"].items(), key=lambda item: int(item[0])):
        rows.append({"label": f"Round {number}", "number": int(number), **section})
    return rows


def _annotator_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    names = data.get("annotator_names", {})
    rows = [{**a, "name": _name(names, a["annotator"])} for a in data["annotators"]]
    return sorted(rows, key=lambda a: (not a["flagged"], a["name"]))


def _pair_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    names = data.get("annotator_names", {})
    return [
        {**p, "name_a": _name(names, p["annotator_a"]), "name_b": _name(names, p["annotator_b"])}
        for p in data["project"]["pairs"][:PAGE_PAIRS]
    ]


def _context(
    request: HttpRequest,
    membership: Membership,
    round_: Round | None,
    settings_form: QualitySettingsForm | None = None,
) -> dict[str, Any]:
    project = membership.project
    polled = bool(getattr(request, "htmx", False))
    # Only a full page load queues new figures: the status box's polls never do, so a page
    # left open while annotators vote does not recompute back to back.
    cached = get_quality(project, round_, refresh=not polled)
    report = cached.report
    data = report.data if report is not None else {}
    has_figures = bool(data.get("votes"))
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "round": round_,
        "rounds": project.rounds.order_by("number"),
        "cached": cached,
        "report": report,
        "data": data,
        "has_figures": has_figures,
        "failed": cached.failed,
        "polled": polled,
        "partial": "quality-status",
    }
    if has_figures:
        context.update(
            sections=_section_rows(data, round_),
            annotators=_annotator_rows(data),
            pairs=_pair_rows(data),
            pairs_total=data["project"].get("pairs_total", 0),
            pairs_kept=MAX_PAIRS,
            charts={"charts": chart_config(data)},
        )
    if data.get("rankings"):  # only projects with human rankings (labeling.quality.rankings)
        from labeling.quality.rankings import page_context

        context["rankings"] = page_context(data["rankings"], round_.number if round_ else None)
    if membership.can_manage:
        try:
            current = dataclasses.asdict(thresholds_for(project))
        except ValueError as exc:
            current = dataclasses.asdict(Thresholds())
            context["settings_problem"] = str(exc)
        context["settings_form"] = settings_form or QualitySettingsForm(current=current)
    return context


@login_required
@require_GET
def quality(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    round_ = _round_or_404(membership, request.GET.get("round"))
    return render_page(request, "labeling/quality/page.html", _context(request, membership, round_))


@login_required
@require_POST
def quality_recompute(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    round_ = _round_or_404(membership, request.POST.get("round"))
    request_quality_report(membership.project, round_, created_by=current_user(request))
    messages.success(request, "Quality figures are being computed again.")
    location = reverse("labeling:quality", args=[project_id])
    return see_other(f"{location}?round={round_.number}" if round_ is not None else location)


@login_required
@require_POST
def quality_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    project = membership.project
    form = QualitySettingsForm(request.POST)
    if not form.is_valid():
        context = _context(request, membership, None, settings_form=form)
        context["partial"] = "quality-settings"
        return render_page(request, "labeling/quality/page.html", context, status=400)
    project.quality_settings = form.settings()
    project.save(update_fields=["quality_settings"])
    request_quality_report(project, None, created_by=current_user(request))
    messages.success(request, "Thresholds saved; the figures are being computed again.")
    return see_other(reverse("labeling:quality", args=[project_id]))
