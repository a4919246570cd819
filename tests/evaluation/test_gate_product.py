"""The gate on real rows: promote, refuse with reasons, provisional refusal, overrides."""

from __future__ import annotations

import pytest

from evaluation.models import Decision, PromotionDecision
from evaluation.services import (
    EvaluationRefused,
    apply_gate,
    get_results,
    leaderboard,
    lineage,
    override_promotion,
    promoted_checkpoint,
)
from labeling.models import Project
from labeling.snapshots import build_snapshot, request_snapshot
from tests.conftest import make_user
from tests.evaluation.support import child_checkpoint, evaluated
from training.services import register_base_model


@pytest.fixture
def tree(db, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    project = Project.objects.create(name="Gate")
    snapshot = build_snapshot(request_snapshot(project, "every_vote").pk)
    base = register_base_model(project, "/models/base", "base")
    child = child_checkpoint(project, base, snapshot, "child")
    return project, base, child


def test_a_checkpoint_that_beats_its_parent_is_promoted(tree):
    project, base, child = tree
    evaluation = evaluated(project, child, base, win_share=0.85)
    results = get_results(evaluation)
    rate = results["opponents"][0]["win_rate"]
    assert rate["ci_low"] > 0.5 and results["gate"]["passed"], results["gate"]
    decision = apply_gate(evaluation)
    assert decision.decision == Decision.PROMOTED and decision.reasons == []
    child.refresh_from_db()
    assert child.promoted and child.promoted_at is not None
    assert promoted_checkpoint(project) == child


def test_a_checkpoint_no_better_than_its_parent_is_refused_with_reasons(tree):
    project, base, child = tree
    evaluation = evaluated(project, child, base, win_share=0.3)
    decision = apply_gate(evaluation)
    assert decision.decision == Decision.REFUSED
    assert any("lower end" in reason for reason in decision.reasons), decision.reasons
    assert any("length-controlled" in reason for reason in decision.reasons)
    child.refresh_from_db()
    assert not child.promoted and promoted_checkpoint(project) is None


def test_provisional_results_never_pass(tree):
    project, base, child = tree
    evaluation = evaluated(project, child, base, prompts=12, win_share=1.0, min_votes=30)
    results = get_results(evaluation)
    assert results["provisional"] and results["votes"] == 12
    decision = apply_gate(evaluation)
    assert decision.decision == Decision.REFUSED
    assert "provisional" in decision.reasons[0]


def test_the_project_rule_decides(tree):
    project, base, child = tree
    evaluation = evaluated(project, child, base, win_share=0.3)
    project.gate_rule = {"min_ci_low": None, "min_lc_win_rate": None, "min_votes": 0}
    project.save()
    evaluation.refresh_from_db()
    assert apply_gate(evaluation).decision == Decision.PROMOTED


def test_an_override_is_recorded_with_who_and_why(tree):
    _project, _base, child = tree
    admin = make_user("gatekeeper")
    with pytest.raises(EvaluationRefused, match="note"):
        override_promotion(child, promote=True, note="  ", decided_by=admin)
    assert not PromotionDecision.objects.exists()
    override_promotion(child, promote=True, note="Judged by hand", decided_by=admin)
    child.refresh_from_db()
    assert child.promoted
    override_promotion(child, promote=False, note="Regression found", decided_by=admin)
    child.refresh_from_db()
    assert not child.promoted
    decisions = list(PromotionDecision.objects.order_by("id"))
    assert [d.decision for d in decisions] == [
        Decision.OVERRIDE_PROMOTED,
        Decision.OVERRIDE_DEMOTED,
    ]
    assert all(d.decided_by == admin and d.is_override for d in decisions)
    assert decisions[1].note == "Regression found"


def test_results_follow_new_votes_and_the_leaderboard_ranks_the_winner(tree):
    project, base, child = tree
    evaluation = evaluated(project, child, base, prompts=30, win_share=0.9)
    first = get_results(evaluation)
    assert first["votes"] == 30
    evaluated(project, child, base, prompts=10, win_share=0.9, seed=1)
    board = leaderboard(project)
    assert [row["name"] for row in board["rows"]] == ["child", "base"]
    assert board["votes"] == 40
    assert board["rows"][0]["ci_low"] > board["rows"][1]["ci_high"]
    roots = lineage(project)
    assert [node.checkpoint.name for node in roots] == ["base"]
    assert [node.checkpoint.name for node in roots[0].children] == ["child"]
    assert roots[0].children[0].evaluations[0].pk == evaluation.pk
