"""A simulated crowd for the quality tests: honest annotators who follow a latent truth with
noise, and three bad ones (always the left response, uniformly random, too fast to read)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CHOICES = ("A", "B", "tie", "both_bad")
ALWAYS_LEFT = "always-left"
RANDOM = "random"
FAST = "fast-clicker"
BAD = (ALWAYS_LEFT, RANDOM, FAST)


def simulate_crowd(
    seed: int = 7,
    honest: int = 10,
    comparisons: int = 300,
    votes_per_comparison: int = 5,
    accuracy: float = 0.8,
    gold: int = 30,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    annotators = [f"honest-{i}" for i in range(honest)] + list(BAD)
    truth = rng.choice(4, size=comparisons, p=[0.4, 0.4, 0.15, 0.05])
    len_a = rng.integers(200, 1200, size=comparisons)
    len_b = rng.integers(200, 1200, size=comparisons)
    rows = []
    for c in range(comparisons):
        for who in rng.choice(annotators, size=votes_per_comparison, replace=False):
            left = "A" if rng.random() < 0.5 else "B"
            seconds = float(rng.lognormal(np.log(60), 0.3))
            if who == ALWAYS_LEFT:
                choice = left
            elif who == RANDOM:
                choice = CHOICES[rng.integers(4)]
            else:
                if rng.random() < accuracy:
                    choice = CHOICES[truth[c]]
                else:
                    choice = CHOICES[rng.choice([k for k in range(4) if k != truth[c]])]
                if who == FAST:
                    seconds = float(rng.uniform(0.5, 3.0))
            rows.append(
                {
                    "comparison": c,
                    "annotator": who,
                    "choice": choice,
                    "left_side": left,
                    "seconds": seconds,
                    "len_a": int(len_a[c]),
                    "len_b": int(len_b[c]),
                    "model_a": "small",
                    "model_b": "large",
                    "round": 1 + c % 2,
                    "gold": CHOICES[truth[c]] if c < gold and truth[c] != 3 else None,
                }
            )
    return pd.DataFrame(rows)
