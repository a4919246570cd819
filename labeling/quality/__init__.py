"""Quality control statistics over preference votes: agreement, annotator reliability, bias
audits and soft labels (docs/quality.md). Pure numpy/pandas/scipy; imports no Django, so a
background job can run it on a vote table read from the database.

The names below load on first use (PEP 562): importing a submodule such as
``labeling.quality.jobs`` or ``labeling.quality.thresholds`` does not pay for scipy and pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import QualityReport, Section, compute_quality
    from .thresholds import Thresholds
    from .votes import CHOICES, REQUIRED_COLUMNS, SIDES, encode_votes

_EXPORTS = {
    "CHOICES": "votes",
    "REQUIRED_COLUMNS": "votes",
    "SIDES": "votes",
    "encode_votes": "votes",
    "QualityReport": "report",
    "Section": "report",
    "compute_quality": "report",
    "Thresholds": "thresholds",
}

__all__ = [
    "CHOICES",
    "REQUIRED_COLUMNS",
    "SIDES",
    "QualityReport",
    "Section",
    "Thresholds",
    "compute_quality",
    "encode_votes",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
