import json

import pytest

from labeling.quality import compute_quality
from labeling.quality.agreement import agreement
from labeling.quality.bias import position_bias
from labeling.quality.votes import encode_votes
from tests.labeling.quality.crowd import simulate_crowd


@pytest.fixture(scope="module")
def crowd():
    return simulate_crowd(seed=3, comparisons=120)


def test_each_round_has_its_own_figures(crowd):
    report = compute_quality(crowd)
    assert sorted(report.rounds) == [1, 2]
    for number, section in report.rounds.items():
        alone = crowd[crowd["round"] == number]
        assert section.agreement == agreement(encode_votes(alone))
        assert section.position_bias == position_bias(encode_votes(alone))
        # Pairs are those within the round only.
        pairs_alone = compute_quality(alone).project.pairs
        assert section.pairs.reset_index(drop=True).equals(pairs_alone.reset_index(drop=True))
    assert sum(s.agreement.n_votes for s in report.rounds.values()) == len(crowd)
    assert report.project.agreement.n_votes == len(crowd)


def test_report_is_json_ready(crowd):
    data = compute_quality(crowd).to_dict()
    text = json.dumps(data, allow_nan=False)
    loaded = json.loads(text)
    assert set(loaded) == {
        "project",
        "rounds",
        "annotators",
        "soft_labels",
        "thresholds",
        "dawid_skene_iterations",
    }
    assert set(loaded["rounds"]) == {"1", "2"}
    assert len(loaded["soft_labels"]) == crowd["comparison"].nunique()
    annotator = loaded["annotators"][0]
    assert isinstance(annotator["reasons"], list) and isinstance(annotator["flagged"], bool)
