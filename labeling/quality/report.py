"""The whole quality computation over a vote table: project, per round, per annotator."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .agreement import Agreement, agreement, pairwise_agreement, vote_pairs
from .bias import LengthBias, length_bias, model_win_rates, position_bias
from .reliability import (
    DawidSkeneFit,
    Thresholds,
    annotator_table,
    fit_dawid_skene,
    soft_labels,
)
from .stats import Proportion
from .votes import EncodedVotes, encode_votes


@dataclass(frozen=True)
class Section:
    """The figures over one set of votes: the project's, or one round's."""

    agreement: Agreement
    pairs: pd.DataFrame
    position_bias: Proportion
    length_bias: LengthBias
    model_win_rates: pd.DataFrame


@dataclass(frozen=True)
class QualityReport:
    project: Section
    rounds: dict[int, Section]
    annotators: pd.DataFrame
    soft_labels: pd.DataFrame
    thresholds: Thresholds
    dawid_skene_iterations: int

    @property
    def flagged(self) -> list[Any]:
        """Ids of the flagged annotators."""
        return list(self.annotators.loc[self.annotators["flagged"], "annotator"])

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready builtins (NaN becomes None); the later API and cache use it."""
        return {
            "project": _section_dict(self.project),
            "rounds": {str(r): _section_dict(s) for r, s in self.rounds.items()},
            "annotators": _records(self.annotators),
            "soft_labels": _records(self.soft_labels),
            "thresholds": dataclasses.asdict(self.thresholds),
            "dawid_skene_iterations": self.dawid_skene_iterations,
        }


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(row) for row in frame.to_dict("records")]


def _section_dict(section: Section) -> dict[str, Any]:
    return {
        "agreement": _clean(dataclasses.asdict(section.agreement)),
        "pairs": _records(section.pairs),
        "position_bias": _clean(dataclasses.asdict(section.position_bias)),
        "length_bias": _clean(dataclasses.asdict(section.length_bias)),
        "model_win_rates": _records(section.model_win_rates),
    }


def compute_quality(
    votes: pd.DataFrame,
    thresholds: Thresholds | None = None,
    *,
    dawid_skene_iterations: int = 100,
    dawid_skene_tol: float = 1e-5,
) -> QualityReport:
    """Validate ``votes`` (see ``labeling.quality.votes``) and compute every figure.

    Raises ``ValueError`` for a malformed or empty table. The Dawid-Skene model is fitted once
    over all rounds (an annotator's ability does not change with the round); agreement, pairs
    and the bias audit are computed for the project and for each round.
    """
    thresholds = thresholds if thresholds is not None else Thresholds()
    encoded = encode_votes(votes)
    # The Dawid-Skene fit (crowd-kit, most of the time) runs in a second thread while this one
    # computes everything that does not need it: agreement, pairs and the bias audit. numpy and
    # pandas release the GIL in their loops, so on two cores the two overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dawid-skene") as pool:
        fitting = pool.submit(
            fit_dawid_skene, encoded, n_iter=dawid_skene_iterations, tol=dawid_skene_tol
        )
        project, rounds = _sections(encoded)
        fit: DawidSkeneFit = fitting.result()
    return QualityReport(
        project=project,
        rounds=rounds,
        annotators=annotator_table(encoded, fit, thresholds),
        soft_labels=soft_labels(encoded, fit),
        thresholds=thresholds,
        dawid_skene_iterations=fit.iterations,
    )


def _sections(encoded: EncodedVotes) -> tuple[Section, dict[int, Section]]:
    """The project's section and one per round."""
    pairs = vote_pairs(encoded)

    def section(mask: np.ndarray | None, round_number: int | None) -> Section:
        subset = encoded if mask is None else encoded.subset(mask)
        # Pairs carry annotator codes of the whole table, so pairwise_agreement names them
        # through ``encoded``; restricting the pairs to the round is enough.
        round_pairs = pairs if round_number is None else pairs[pairs["round"] == round_number]
        return Section(
            agreement=agreement(subset),
            pairs=pairwise_agreement(encoded, round_pairs),
            position_bias=position_bias(subset),
            length_bias=length_bias(subset),
            model_win_rates=model_win_rates(subset),
        )

    rounds = {
        int(r): section(encoded.round == r, int(r)) for r in np.unique(encoded.round).tolist()
    }
    return section(None, None), rounds
