"""A vote table small enough to work every figure out by hand (the numbers are in the tests).

comparison  x        y        z
c1          A        A        A      unanimous
c2          A        B        -      split
c3          B        B        tie    majority
c4          -        -        tie    one vote
"""

from __future__ import annotations

import pandas as pd

VOTES = [
    # comparison, annotator, choice, left_side, seconds, gold
    ("c1", "x", "A", "A", 30.0, "A"),
    ("c1", "y", "A", "B", 40.0, "A"),
    ("c1", "z", "A", "A", 1.0, "A"),
    ("c2", "x", "A", "A", 50.0, None),
    ("c2", "y", "B", "B", float("nan"), None),
    ("c3", "x", "B", "B", 20.0, None),
    ("c3", "y", "B", "A", 60.0, None),
    ("c3", "z", "tie", "A", 2.0, None),
    ("c4", "z", "tie", "B", 3.0, None),
]


def hand_votes() -> pd.DataFrame:
    frame = pd.DataFrame(
        VOTES, columns=["comparison", "annotator", "choice", "left_side", "seconds", "gold"]
    )
    frame["len_a"] = 400
    frame["len_b"] = 200
    frame["model_a"] = "m1"
    frame["model_b"] = "m2"
    frame["round"] = 1
    return frame
