"""Number formats of the quality page: shares as percentages, p-values, dashes for no value."""

from __future__ import annotations

import math
from typing import Any

from django import template

register = template.Library()

NONE = "\u2013"  # an en dash: no value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@register.filter
def pct(value: Any, digits: int = 0) -> str:
    """0.4567 -> "46%" (digits=1: "45.7%"); None -> an en dash."""
    number = _number(value)
    return NONE if number is None else f"{100 * number:.{int(digits)}f}%"


@register.filter
def num(value: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant digits; None -> an en dash."""
    number = _number(value)
    return NONE if number is None else f"{number:.{int(digits)}g}"


@register.filter
def pvalue(value: Any) -> str:
    number = _number(value)
    if number is None:
        return NONE
    return "< 1e-300" if number == 0 else f"{number:.2g}"


@register.filter
def snapshot_filters(snapshot: Any) -> str:
    """What a snapshot left out, in words (labeling.snapshots.manifest_filters)."""
    from labeling.snapshots import manifest_filters

    f = manifest_filters(snapshot)
    parts = [
        "rounds " + ", ".join(map(str, f["rounds"])) if f["rounds"] != "all" else "every round",
    ]
    if f["sources"] != "all":
        parts.append("sources " + ", ".join(f["sources"]))
    if f["exclude_flagged"]:
        parts.append(f"{f['flagged_annotators_excluded']} flagged annotator(s) left out")
    if f["adjudicated_only"]:
        parts.append("adjudicated comparisons only")
    if f["annotators_excluded_by_reviewers"]:
        parts.append(f"{f['annotators_excluded_by_reviewers']} excluded annotator(s) left out")
    return "; ".join(parts) + "; no evaluation rounds or held-out prompts"
