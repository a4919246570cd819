"""Chart data for the run pages: a run's metrics stream as columns the browser plots.

The page draws the charts with uPlot (static/preflab/charts.js) from this JSON, fetched again
every few seconds while a run is live, so the charts update without redrawing the page. Values
that are missing or not finite (NaN, inf) are null: JSON has no NaN, and a gap is honest.
"""

from __future__ import annotations

import math
from typing import Any

from training.models import RunMetric, TrainingRun

# (metrics key, chart title, fixed y range or None). Accuracy is a share: always 0 to 1.
PLOTTED: tuple[tuple[str, str, tuple[float, float] | None], ...] = (
    ("loss", "Loss", None),
    ("reward_accuracy", "Reward accuracy", (0.0, 1.0)),
    ("reward_margin", "Reward margin", None),
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def run_series(run: TrainingRun) -> dict[str, Any]:
    """{"run", "label", "status", "finished", "series": {split: {"step": [...], key: [...]}}}."""
    series: dict[str, dict[str, list[Any]]] = {}
    rows = RunMetric.objects.filter(run=run).order_by("split", "step")
    for split, step, values in rows.values_list("split", "step", "values"):
        columns = series.setdefault(split, {"step": [], **{key: [] for key, _, _ in PLOTTED}})
        columns["step"].append(step)
        for key, _, _ in PLOTTED:
            columns[key].append(_number(values.get(key)))
    return {
        "run": run.pk,
        "label": f"Run {run.pk}",
        "status": run.status,
        "finished": run.is_finished,
        "total_steps": run.total_steps,
        "series": series,
    }


def chart_metrics() -> list[dict[str, Any]]:
    """What each chart plots, for the page's chart configuration."""
    return [{"key": key, "title": title, "range": span} for key, title, span in PLOTTED]
