"""The checkpoint gate: a promotion rule checked against an evaluation's statistics.

A rule holds optional thresholds; a checkpoint passes when every set threshold is met, and each
failed condition gives one reason in plain words, so that a refused checkpoint says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluation.stats import LengthControlledWinRate, WinRate


@dataclass(frozen=True)
class GateRule:
    """A promotion rule. ``None`` switches a condition off; the bounds are strict ("above")."""

    # The lower end of the win-rate interval must lie above this (0.5: better than the parent).
    min_ci_low: float | None = 0.5
    # The length-controlled win-rate (at equal length) must lie above this.
    min_lc_win_rate: float | None = 0.5
    # The raw win-rate must lie above this; off by default, the interval is the stronger test.
    min_win_rate: float | None = None
    # At least this many votes must be in before anything is promoted.
    min_votes: int = 0

    def __post_init__(self) -> None:
        for name in ("min_ci_low", "min_lc_win_rate", "min_win_rate"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a win-rate and must lie in [0, 1], not {value}")
        if self.min_votes < 0:
            raise ValueError(f"min_votes must not be negative, not {self.min_votes}")


@dataclass(frozen=True)
class GateDecision:
    """Whether the checkpoint passed, and one plain-words reason per failed condition."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def evaluate_gate(
    rule: GateRule,
    win_rate: WinRate,
    length_controlled: LengthControlledWinRate | None = None,
) -> GateDecision:
    """Check ``rule`` against an evaluation's win-rate and length-controlled win-rate.

    ``length_controlled`` may be omitted only when the rule has no ``min_lc_win_rate``;
    otherwise its absence is itself a reason to refuse.
    """
    reasons: list[str] = []
    if win_rate.n < rule.min_votes:
        reasons.append(f"only {win_rate.n} votes are in; the rule needs at least {rule.min_votes}")
    if rule.min_ci_low is not None and not win_rate.ci_low > rule.min_ci_low:
        reasons.append(
            f"the lower end of the {win_rate.confidence:.0%} interval of the win-rate, "
            f"{win_rate.ci_low:.3f}, is not above {rule.min_ci_low:g}"
        )
    if rule.min_win_rate is not None and not win_rate.estimate > rule.min_win_rate:
        reasons.append(f"the win-rate, {win_rate.estimate:.3f}, is not above {rule.min_win_rate:g}")
    if rule.min_lc_win_rate is not None:
        if length_controlled is None:
            reasons.append(
                "no length-controlled win-rate was computed, and the rule needs one above "
                f"{rule.min_lc_win_rate:g}"
            )
        elif not length_controlled.estimate > rule.min_lc_win_rate:
            reasons.append(
                f"the length-controlled win-rate, {length_controlled.estimate:.3f}, is not "
                f"above {rule.min_lc_win_rate:g} (raw win-rate {win_rate.estimate:.3f}: "
                "the wins may come from longer answers)"
            )
    return GateDecision(passed=not reasons, reasons=reasons)
