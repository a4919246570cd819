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
