"""Quality control statistics over preference votes: agreement, annotator reliability, bias
audits and soft labels (docs/quality.md). Pure numpy/pandas/scipy; imports no Django, so a
background job can run it on a vote table read from the database."""

from .reliability import Thresholds
from .report import QualityReport, Section, compute_quality
from .votes import CHOICES, REQUIRED_COLUMNS, SIDES, encode_votes

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
