"""Judges' agreement figures (labeling/quality/judges.py with judging's order statistics)."""

from __future__ import annotations

import pytest

from judging.services import add_judge, run_judging
from labeling.models import Choice, Comparison, Role
from labeling.quality.judges import judge_agreement
from labeling.services import VoteInput, cast_vote, lease_next_comparison


def programmatic(project, name, function):
    return add_judge(
        project, name, "programmatic", {"callable": f"tests.judging.callables.{function}"}
    )


@pytest.fixture
def judged_project(make_project, annotator):
    project = make_project(pairs=4, members={annotator: Role.ANNOTATOR})
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput(Choice.A, "clear"))
    Comparison.objects.filter(pk=Comparison.objects.order_by("id").first().pk).update(
        is_gold=True, gold_choice=Choice.B
    )
    round_ = project.rounds.get()  # every comparison has its human vote: judge the round
    run_judging(programmatic(project, "short", "shorter_is_better"), scope="round", round=round_)
    run_judging(
        programmatic(project, "biased", "first_is_better_on_odd_questions"),
        scope="round",
        round=round_,
    )
    return project


def by_judge(report, round_id=None):
    return {entry["judge"]: entry for entry in report if entry["round_id"] == round_id}


def test_agreement_with_humans_and_gold_with_intervals(judged_project):
    report = by_judge(judge_agreement(judged_project))
    short = report["short"]
    assert short["agreement_with_humans"]["successes"] == 4
    assert short["agreement_with_humans"]["trials"] == 4
    assert (
        0 < short["agreement_with_humans"]["ci_low"] < 1 == short["agreement_with_humans"]["share"]
    )
    assert (short["agreement_with_gold"]["successes"], short["agreement_with_gold"]["trials"]) == (
        0,
        1,
    )
    assert short["length_bias"]["share"] == 0.0  # always the shorter response
    assert short["humans_length_bias"]["share"] == 0.0
    biased = report["biased"]
    assert biased["agreement_with_humans"]["trials"] == 2  # it decided the even questions only


def test_position_consistency_bias_and_cost_come_from_every_verdict(judged_project):
    report = by_judge(judge_agreement(judged_project))
    short, biased = report["short"], report["biased"]
    assert short["position_consistency"]["share"] == 1.0
    assert short["position_bias"]["share"] == 0.5
    assert (biased["consistent"], biased["inconsistent"]) == (2, 2)
    assert biased["position_consistency"]["share"] == 0.5
    # odd questions: the first shown both times (4 of 4); even: once of 2 each (2 of 4)
    assert (biased["position_bias"]["successes"], biased["position_bias"]["trials"]) == (6, 8)
    assert biased["cost"]["calls"] == 8


def test_figures_per_round(judged_project):
    round_id = judged_project.rounds.get().pk
    report = judge_agreement(judged_project)
    per_round = by_judge(report, round_id)
    assert per_round["short"]["round"] == 1
    assert (
        per_round["short"]["agreement_with_humans"]
        == by_judge(report)["short"]["agreement_with_humans"]
    )
    only = judge_agreement(judged_project, round_id)
    assert by_judge(only, round_id)["biased"]["position_bias"]["trials"] == 8
