"""Input validation and prompt-level bootstrap resampling shared by the statistics modules.

Every statistic here is computed from votes that compare a response of model A with a response
of model B to the same prompt. An outcome is read from A's side: ``"win"`` (A preferred),
``"loss"`` (B preferred) or ``"tie"``. Bootstrap intervals resample prompts, not votes: all
comparisons of a drawn prompt enter the resample together, as many times as it was drawn, so
that votes on one prompt, which are correlated, are not treated as independent.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Resample count matrices are built this many cells (resamples x prompts) at a time, which keeps
# the memory of 10,000 resamples over 10,000 prompts to tens of megabytes.
_CHUNK_CELLS = 2_000_000


class Outcome(StrEnum):
    """The result of one comparison, read from the side of its first model (A)."""

    WIN = "win"
    LOSS = "loss"
    TIE = "tie"


# A's score for each outcome: a tie counts as half a win.
_SCORES = {Outcome.WIN: 1.0, Outcome.LOSS: 0.0, Outcome.TIE: 0.5}


def outcome_scores(outcomes: Sequence[str]) -> FloatArray:
    """A's score per comparison: 1 for a win, 0 for a loss, 0.5 for a tie.

    Raises ``ValueError`` when ``outcomes`` is empty or holds anything but win, loss or tie.
    """
    if len(outcomes) == 0:
        raise ValueError("no comparisons: the outcomes are empty")
    scores = np.empty(len(outcomes), dtype=np.float64)
    for k, outcome in enumerate(outcomes):
        try:
            scores[k] = _SCORES[Outcome(outcome)]
        except (ValueError, KeyError):
            raise ValueError(
                f"outcome {k} is {outcome!r}; each outcome must be 'win', 'loss' or 'tie'"
            ) from None
    return scores


def check_same_length(n: int, **sequences: Sequence[object]) -> None:
    """Raise ``ValueError`` naming every sequence whose length is not ``n``."""
    wrong = [f"{name} has {len(seq)}" for name, seq in sequences.items() if len(seq) != n]
    if wrong:
        raise ValueError(f"expected {n} entries, one per comparison, but {', '.join(wrong)}")


def group_codes(groups: Sequence[Hashable]) -> tuple[IntArray, int]:
    """Map prompt ids to codes ``0..G-1`` in order of first appearance: ``(codes, G)``."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter(
        (index.setdefault(g, len(index)) for g in groups), dtype=np.intp, count=len(groups)
    )
    return codes, len(index)


def check_bootstrap_arguments(n_resamples: int, confidence: float) -> None:
    """Raise ``ValueError`` unless ``n_resamples >= 1`` and ``0 < confidence < 1``."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")


def resampled_group_counts(
    n_groups: int, n_resamples: int, rng: np.random.Generator
) -> Iterator[FloatArray]:
    """Yield prompt-level bootstrap resamples as count matrices, a chunk of rows at a time.

    Each row is one resample: ``n_groups`` prompts drawn uniformly with replacement, and entry
    ``[r, g]`` is how many times prompt ``g`` was drawn in resample ``r`` (each row sums to
    ``n_groups``). Rows over all chunks number ``n_resamples``.
    """
    rows_per_chunk = max(1, _CHUNK_CELLS // n_groups)
    done = 0
    while done < n_resamples:
        rows = min(rows_per_chunk, n_resamples - done)
        # int32 draws are cheaper to generate; rows * n_groups stays far below 2**31.
        draws = rng.integers(0, n_groups, size=(rows, n_groups), dtype=np.int32)
        draws += np.arange(rows, dtype=np.int32)[:, None] * np.int32(n_groups)
        counts = np.bincount(draws.ravel(), minlength=rows * n_groups)
        yield counts.reshape(rows, n_groups).astype(np.float64)
        done += rows


def percentile_interval(samples: FloatArray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``samples`` (percentile method)."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)
