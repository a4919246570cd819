"""The vote table every quality figure is computed from, and its validation.

One row per vote. The values mirror ``labeling.models.Choice`` and ``Side`` (a test checks they
stay equal); this module does not import Django so a background job can run it anywhere.

=============  ===============================================================================
column         meaning
=============  ===============================================================================
comparison     comparison id (any hashable; one vote per annotator and comparison)
annotator      annotator id (any hashable)
choice         ``A``, ``B``, ``tie`` or ``both_bad``
left_side      which response was shown on the left: ``A`` or ``B``
seconds        seconds the vote took; NaN when unknown (imported votes)
len_a, len_b   length of response A and B in characters
model_a/b      name of the model that wrote response A / B; empty or missing when unknown
round          the comparison's round (an integer)
gold           the known answer of a gold comparison (``A``, ``B``, ``tie``); missing otherwise
=============  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

CHOICES: tuple[str, ...] = ("A", "B", "tie", "both_bad")
"""Choice values, in the order of their integer codes (0..3)."""
A, B, TIE, BOTH_BAD = range(4)
SIDES: tuple[str, ...] = ("A", "B")
GOLD_CHOICES: tuple[str, ...] = ("A", "B", "tie")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "comparison",
    "annotator",
    "choice",
    "left_side",
    "seconds",
    "len_a",
    "len_b",
    "model_a",
    "model_b",
    "round",
    "gold",
)


@dataclass(frozen=True)
class EncodedVotes:
    """The validated votes as integer codes, one entry per vote (arrays of equal length).

    ``comparison`` and ``annotator`` index into ``comparison_ids`` / ``annotator_ids``;
    ``choice`` into ``CHOICES``; ``left`` is 0 when A was on the left, 1 when B was; ``gold``
    is the gold choice code or -1. ``round`` is per vote (constant within a comparison).
    ``model_a``/``model_b`` index into ``model_names``, -1 where the model is unknown.
    """

    comparison: npt.NDArray[np.int64]
    annotator: npt.NDArray[np.int64]
    choice: npt.NDArray[np.int64]
    left: npt.NDArray[np.int64]
    seconds: npt.NDArray[np.float64]
    len_a: npt.NDArray[np.float64]
    len_b: npt.NDArray[np.float64]
    model_a: npt.NDArray[np.int64]
    model_b: npt.NDArray[np.int64]
    round: npt.NDArray[np.int64]
    gold: npt.NDArray[np.int64]
    comparison_ids: pd.Index
    annotator_ids: pd.Index
    model_names: pd.Index

    @property
    def n_votes(self) -> int:
        return len(self.choice)

    @property
    def n_comparisons(self) -> int:
        return len(self.comparison_ids)

    @property
    def n_annotators(self) -> int:
        return len(self.annotator_ids)

    def subset(self, mask: npt.NDArray[np.bool_]) -> EncodedVotes:
        """The votes where ``mask`` holds, with comparison and annotator codes renumbered."""
        comp_codes, comp_uniques = pd.factorize(self.comparison[mask], sort=True)
        ann_codes, ann_uniques = pd.factorize(self.annotator[mask], sort=True)
        return EncodedVotes(
            comparison=comp_codes.astype(np.int64),
            annotator=ann_codes.astype(np.int64),
            choice=self.choice[mask],
            left=self.left[mask],
            seconds=self.seconds[mask],
            len_a=self.len_a[mask],
            len_b=self.len_b[mask],
            model_a=self.model_a[mask],
            model_b=self.model_b[mask],
            round=self.round[mask],
            gold=self.gold[mask],
            comparison_ids=self.comparison_ids[comp_uniques],
            annotator_ids=self.annotator_ids[ann_uniques],
            model_names=self.model_names,
        )


def _remap(codes: npt.NDArray[np.intp], lookup: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
    """``lookup[codes]``, keeping -1 (missing) as -1."""
    if len(lookup) == 0:
        return np.full(len(codes), -1, dtype=np.int64)
    return np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1).astype(np.int64)


def _codes(column: pd.Series, allowed: tuple[str, ...], name: str) -> npt.NDArray[np.int64]:
    """Codes into ``allowed``, -1 where missing; factorising first keeps string hashing to the
    column's own (Arrow) implementation and maps only its few distinct values."""
    codes, uniques = pd.factorize(column)
    lookup = pd.Index(allowed, dtype=object).get_indexer(pd.Index(uniques, dtype=object))
    if (lookup < 0).any():
        examples = sorted(repr(v) for v in list(pd.Index(uniques, dtype=object)[lookup < 0])[:5])
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {', '.join(examples)}")
    return _remap(codes, lookup)


def _model_codes(frame: pd.DataFrame) -> tuple[npt.NDArray[np.int64], ...]:
    """Codes of model_a and model_b into one sorted vocabulary; -1 for a missing or empty name."""
    factorized = [pd.factorize(frame[name]) for name in ("model_a", "model_b")]
    names = sorted({str(v) for _, uniques in factorized for v in uniques} - {""})
    vocabulary = pd.Index(names, dtype=object)
    codes = []
    for values, uniques in factorized:
        lookup = vocabulary.get_indexer(pd.Index([str(v) for v in uniques], dtype=object))
        codes.append(_remap(values, lookup))
    return codes[0], codes[1], vocabulary


def _numbers(frame: pd.DataFrame, name: str, *, allow_missing: bool) -> npt.NDArray[np.float64]:
    try:
        values = pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    missing = np.isnan(values)
    if missing.any() and not allow_missing:
        raise ValueError(f"{name} is missing in {int(missing.sum())} votes")
    if (values[~missing] < 0).any() or np.isinf(values).any():
        raise ValueError(f"{name} must be a finite number at least 0")
    return values


def encode_votes(frame: pd.DataFrame) -> EncodedVotes:
    """Validate a vote table (see the module docstring) and encode it; ``ValueError`` if bad."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"votes must be a pandas DataFrame, not {type(frame).__name__}")
    missing_columns = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing_columns:
        raise ValueError(f"votes lack the column(s): {', '.join(missing_columns)}")
    if frame.empty:
        raise ValueError("there are no votes")
    for name in ("comparison", "annotator", "choice", "left_side", "round"):
        n_missing = int(frame[name].isna().sum())
        if n_missing:
            raise ValueError(f"{name} is missing in {n_missing} votes")

    comparison, comparison_ids = pd.factorize(frame["comparison"], sort=True)
    annotator, annotator_ids = pd.factorize(frame["annotator"], sort=True)
    comparison = comparison.astype(np.int64)
    annotator = annotator.astype(np.int64)
    key = np.sort(comparison * len(annotator_ids) + annotator)
    if (key[1:] == key[:-1]).any():
        raise ValueError("an annotator voted more than once on the same comparison")

    choice = _codes(frame["choice"], CHOICES, "choice")
    left = _codes(frame["left_side"], SIDES, "left_side")
    gold = _codes(frame["gold"], GOLD_CHOICES, "gold")

    rounds = _numbers(frame, "round", allow_missing=False)
    if (rounds != np.floor(rounds)).any():
        raise ValueError("round must be a whole number")
    round_codes = rounds.astype(np.int64)
    for name, values in (("round", round_codes), ("gold", gold)):
        # One value per comparison (any vote's); a vote that differs from it shows a conflict.
        per_comparison = np.empty(len(comparison_ids), dtype=np.int64)
        per_comparison[comparison] = values
        conflicts = per_comparison[comparison] != values
        if conflicts.any():
            example = comparison_ids[int(comparison[np.argmax(conflicts)])]
            raise ValueError(f"comparison {example!r} has votes with different {name} values")

    model_a, model_b, model_names = _model_codes(frame)

    return EncodedVotes(
        comparison=comparison,
        annotator=annotator,
        choice=choice,
        left=left,
        seconds=_numbers(frame, "seconds", allow_missing=True),
        len_a=_numbers(frame, "len_a", allow_missing=False),
        len_b=_numbers(frame, "len_b", allow_missing=False),
        model_a=model_a,
        model_b=model_b,
        round=round_codes,
        gold=gold,
        comparison_ids=pd.Index(comparison_ids),
        annotator_ids=pd.Index(annotator_ids),
        model_names=model_names,
    )


def value_counts(votes: EncodedVotes) -> npt.NDArray[np.int64]:
    """Votes per comparison and choice, shape ``(n_comparisons, 4)``."""
    counts = np.bincount(
        votes.comparison * len(CHOICES) + votes.choice, minlength=votes.n_comparisons * 4
    )
    return counts.reshape(votes.n_comparisons, len(CHOICES)).astype(np.int64)
