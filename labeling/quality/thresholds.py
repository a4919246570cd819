"""The thresholds that flag an annotator (``Project.quality_settings`` overrides the defaults).

Its own module, with no numpy or scipy import, so forms and pages can use it cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# The thresholds that are shares (0 to 1): checked here and bounded in the settings form.
SHARE_THRESHOLDS = frozenset(
    {
        "position_max_p_value",
        "position_min_deviation",
        "max_fast_share",
        "min_consensus_agreement",
        "min_reliability",
        "max_tie_rate",
        "max_both_bad_rate",
        "min_gold_accuracy",
    }
)


@dataclass(frozen=True)
class Thresholds:
    """When an annotator is flagged. Every rule except gold needs ``min_votes`` votes first."""

    # Fewer votes than this are too little evidence to flag on (gold has its own minimum).
    min_votes: int = 20
    # Position bias: flagged when the binomial test against 0.5 gives p below this ...
    position_max_p_value: float = 0.001
    # ... and the share of left choices is at least this far from 0.5.
    position_min_deviation: float = 0.15
    # Reading-time floor of a vote: max(reading_min_seconds, (len_a + len_b) / this rate).
    reading_chars_per_second: float = 40.0
    reading_min_seconds: float = 2.0
    # Flagged when more than this share of an annotator's timed votes beat the floor.
    max_fast_share: float = 0.3
    # Flagged below this agreement with the other annotators' majority (leave-one-out).
    min_consensus_agreement: float = 0.5
    # Flagged below this Dawid-Skene reliability.
    min_reliability: float = 0.5
    # Flagged above these shares of tie / both-bad votes.
    max_tie_rate: float = 0.5
    max_both_bad_rate: float = 0.5
    # Gold: flagged when, with at least min_gold_votes gold votes, the whole 95% Wilson interval
    # of the gold accuracy lies below min_gold_accuracy.
    min_gold_votes: int = 5
    min_gold_accuracy: float = 0.6

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field.name} must be a finite number at least 0, got {value}")
        for name in (field.name for field in fields(self) if field.name in SHARE_THRESHOLDS):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} is a share and must be at most 1")
        if self.position_min_deviation > 0.5:
            raise ValueError("position_min_deviation must be at most 0.5")
        if self.reading_chars_per_second == 0:
            raise ValueError("reading_chars_per_second must be more than 0")
        if self.min_votes < 1 or self.min_gold_votes < 1:
            raise ValueError("min_votes and min_gold_votes must be at least 1")


# Help text of each threshold, for the settings form and the docs (one definition).
THRESHOLD_HELP: dict[str, str] = {
    "min_votes": "Votes an annotator needs before any rule but gold can flag them.",
    "position_max_p_value": "Position bias: binomial test p-value against 50% below this ...",
    "position_min_deviation": "... and the share of left choices at least this far from 0.5.",
    "reading_chars_per_second": "Reading speed of the time floor: (length A + B) / this rate.",
    "reading_min_seconds": "The time floor is never below this many seconds.",
    "max_fast_share": "Flag above this share of timed votes faster than the floor.",
    "min_consensus_agreement": "Flag below this agreement with the other annotators' majority.",
    "min_reliability": "Flag below this Dawid-Skene reliability.",
    "max_tie_rate": "Flag above this share of tie votes.",
    "max_both_bad_rate": "Flag above this share of both-bad votes.",
    "min_gold_votes": "Gold votes needed before gold accuracy can flag.",
    "min_gold_accuracy": "Flag when the whole 95% interval of gold accuracy is below this.",
}
