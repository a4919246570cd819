import subprocess
import sys

import numpy as np
import pytest

from labeling.models import Choice, Side
from labeling.quality import CHOICES, SIDES, compute_quality, encode_votes
from tests.labeling.quality.hand_example import hand_votes


def test_values_mirror_the_django_choices():
    assert tuple(Choice.values) == CHOICES
    assert tuple(Side.values) == SIDES


def test_the_quality_package_does_not_import_django():
    code = (
        "import sys; from labeling.quality import compute_quality, Thresholds; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_quality_job_module_loads_no_scipy_or_pandas():
    """The app registry imports labeling.quality.jobs in every process; pandas, crowd-kit and
    krippendorff load only when a report is computed. (scipy is not checked: other apps'
    start-up imports labeling.quality.stats.)"""
    code = (
        "import sys, django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings_test'; "
        "django.setup(); import labeling.quality.jobs, labeling.quality.thresholds; "
        "heavy = [m for m in ('pandas', 'crowdkit', 'krippendorff') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_encoding_keeps_ids_and_codes():
    votes = encode_votes(hand_votes())
    assert list(votes.comparison_ids) == ["c1", "c2", "c3", "c4"]
    assert list(votes.annotator_ids) == ["x", "y", "z"]
    assert votes.n_votes == 9
    assert np.isnan(votes.seconds[4])
    assert list(votes.gold[:4]) == [0, 0, 0, -1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["left_side", "gold"]), "lack the column.*left_side, gold"),
        (lambda f: f.iloc[0:0], "no votes"),
        (lambda f: f.assign(choice=["A"] * 8 + ["maybe"]), "choice must be one of.*'maybe'"),
        (lambda f: f.assign(left_side=["left"] * 9), "left_side must be one of"),
        (lambda f: f.assign(gold=["both_bad"] + [None] * 8), "gold must be one of"),
        (lambda f: f.assign(annotator=["x"] * 9), "more than once on the same comparison"),
        (lambda f: f.assign(round=[1, 2] + [1] * 7), "'c1' has votes with different round"),
        (lambda f: f.assign(round=[1.5] * 9), "round must be a whole number"),
        (lambda f: f.assign(seconds=[-1.0] * 9), "seconds must be a finite number at least 0"),
        (lambda f: f.assign(len_a=["long"] * 9), "len_a must be numeric"),
        (lambda f: f.assign(len_b=[None] * 9), "len_b is missing in 9 votes"),
        (lambda f: f.assign(annotator=[None] * 9), "annotator is missing in 9 votes"),
        (lambda f: f.assign(gold=["A"] + [None] * 8), "'c1' has votes with different gold"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        compute_quality(change(hand_votes()))


def test_a_table_that_is_not_a_data_frame_is_refused():
    with pytest.raises(ValueError, match="pandas DataFrame, not list"):
        encode_votes([{"comparison": 1}])  # type: ignore[arg-type]
