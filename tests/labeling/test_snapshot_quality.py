"""Snapshots that use quality control: filters, adjudications, exclusions, the evaluation
split, the reliability-weighted and raw-votes policies."""

import json

import pyarrow.parquet as pq
import pytest

from labeling.importers import ImportKind, import_file
from labeling.models import (
    RANKING_POLICIES,
    Adjudication,
    AnnotatorExclusion,
    Comparison,
    JobStatus,
    Prompt,
    PromptSplit,
    Round,
    RoundPurpose,
    SnapshotPolicy,
    Vote,
)
from labeling.quality.jobs import compute_quality_report, request_quality_report
from labeling.quality.reliability import fit_dawid_skene, soft_labels
from labeling.quality.votes import encode_votes
from labeling.snapshots import (
    RAW_COLUMNS,
    WEIGHTED_COLUMNS,
    build_snapshot,
    pseudonym,
    request_snapshot,
    snapshot_file,
)
from tests.conftest import pairs_jsonl
from tests.labeling.quality.db_crowd import BAD, quick_user, seed_crowd, vote_row

# The vote policies; ranking tasks' policies have their own tests (test_ranking_snapshots.py).
POLICIES = [p.value for p in SnapshotPolicy if p not in RANKING_POLICIES]


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def crowd(make_project):
    return seed_crowd(make_project, "Snapcrowd", pairs=24)


def built(project, policy, filters=None, min_agreement=0.5):
    snapshot = build_snapshot(request_snapshot(project, policy, min_agreement, filters=filters).pk)
    assert snapshot is not None and snapshot.status == JobStatus.SUCCEEDED, snapshot.error
    return snapshot


def rows(snapshot):
    return [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]


def manifest(snapshot):
    return json.loads(snapshot_file(snapshot, "manifest").read_text())


def add_round(crowd, count=3, prefix="Later"):
    import_file(crowd.project, pairs_jsonl(count, prefix), f"{prefix}.jsonl", ImportKind.PAIRS)
    number = crowd.project.rounds.order_by("-number").first().number
    new = list(
        Comparison.objects.filter(round__project=crowd.project, round__number=number)
        .select_related("completion_a", "completion_b")
        .order_by("id")
    )
    Vote.objects.bulk_create(vote_row(c, crowd.users["honest0"], "B", "A", 20_000) for c in new)
    return number, new


@pytest.mark.django_db
def test_the_round_filter_keeps_only_the_chosen_rounds(crowd):
    number, new = add_round(crowd)
    for policy in POLICIES:
        only = rows(built(crowd.project, policy, {"rounds": [number]}))
        assert only and {row["round"] for row in only} == {number}, policy
        assert {row["comparison_id"] for row in only} <= {c.pk for c in new}
    both = rows(built(crowd.project, "every_vote", {"rounds": [1, number]}))
    assert {row["round"] for row in both} == {1, number}
    snapshot = built(crowd.project, "majority", {"rounds": [number]})
    assert manifest(snapshot)["filters"]["rounds"] == [number]
    assert (
        f"rounds: [{number}]"
        in snapshot_file(snapshot, "manifest").parent.joinpath("README.md").read_text()
    )


@pytest.mark.django_db
def test_bad_filters_are_refused_naming_the_problem(crowd):
    with pytest.raises(ValueError, match="has no round 9"):
        request_snapshot(crowd.project, "majority", filters={"rounds": [9]})
    with pytest.raises(ValueError, match="list of round numbers"):
        request_snapshot(crowd.project, "majority", filters={"rounds": "1"})
    with pytest.raises(ValueError, match="Unknown filter"):
        request_snapshot(crowd.project, "majority", filters={"round": [1]})
    with pytest.raises(ValueError, match="quality figures"):
        request_snapshot(crowd.project, "majority", filters={"exclude_flagged": True})
    with pytest.raises(ValueError, match="sources must be"):
        request_snapshot(crowd.project, "majority", filters={"sources": ["robot"]})


@pytest.mark.django_db
def test_evaluation_rounds_and_held_out_prompts_never_reach_a_snapshot(crowd):
    number, new = add_round(crowd, prefix="Eval")
    Round.objects.filter(project=crowd.project, number=number).update(
        purpose=RoundPurpose.EVALUATION
    )
    held_out = crowd.comparisons[0]
    Prompt.objects.filter(pk=held_out.prompt_id).update(split=PromptSplit.EVAL)
    banned = {c.pk for c in new} | {held_out.pk}
    for policy in POLICIES:
        exported = {row["comparison_id"] for row in rows(built(crowd.project, policy))}
        assert exported and not exported & banned, policy
    with pytest.raises(ValueError, match="evaluation round"):
        request_snapshot(crowd.project, "every_vote", filters={"rounds": [number]})


@pytest.mark.django_db
def test_an_adjudication_wins_over_the_votes_in_every_export(crowd):
    reviewer = quick_user("judge-judy")
    decided, tied = crowd.comparisons[0], crowd.comparisons[1]
    # The crowd's honest majority says A on every comparison; the reviewer says B and tie.
    Adjudication.objects.create(comparison=decided, reviewer=reviewer, choice="B")
    Adjudication.objects.create(comparison=tied, reviewer=reviewer, choice="tie")
    for policy in ("every_vote", "majority", "reliability_weighted"):
        exported = rows(built(crowd.project, policy))
        mine = [row for row in exported if row["comparison_id"] == decided.pk]
        assert len(mine) == 1, policy
        assert mine[0]["chosen"] == decided.completion_b.text
        assert mine[0]["rejected"] == decided.completion_a.text
        assert mine[0]["adjudicated"] is True and mine[0]["vote_id"] is None
        assert not [row for row in exported if row["comparison_id"] == tied.pk], policy
        others = [row for row in exported if row["comparison_id"] != decided.pk]
        assert all(row["adjudicated"] is False for row in others)
        if policy == "reliability_weighted":
            assert mine[0]["p_chosen"] == 1.0 and mine[0]["weight"] == 1.0
    raw = rows(built(crowd.project, "raw_votes"))
    assert {row["adjudication"] for row in raw if row["comparison_id"] == decided.pk} == {"B"}
    assert len([row for row in raw if row["comparison_id"] == decided.pk]) == 6
    only = rows(built(crowd.project, "every_vote", {"adjudicated_only": True}))
    assert [row["comparison_id"] for row in only] == [decided.pk]


@pytest.mark.django_db
def test_a_reviewers_exclusion_always_applies_and_lifting_it_restores_the_votes(crowd):
    from django.utils import timezone

    lefty = crowd.users["lefty"]
    exclusion = AnnotatorExclusion.objects.create(
        project=crowd.project, annotator=lefty, reason="clicks left", created_by=lefty
    )
    lefty_votes = set(Vote.objects.filter(annotator=lefty).values_list("id", flat=True))
    snapshot = built(crowd.project, "every_vote")
    assert not {row["vote_id"] for row in rows(snapshot)} & lefty_votes
    assert manifest(snapshot)["filters"]["annotators_excluded_by_reviewers"] == 1
    raw = rows(built(crowd.project, "raw_votes"))
    assert pseudonym(crowd.project.pk, lefty.pk) not in {row["annotator"] for row in raw}
    exclusion.lifted_at = timezone.now()
    exclusion.save()
    again = {row["vote_id"] for row in rows(built(crowd.project, "every_vote"))}
    assert lefty_votes & again


@pytest.mark.django_db
def test_exclude_flagged_drops_the_quality_reports_flagged_annotators(crowd):
    compute_quality_report(request_quality_report(crowd.project).pk)
    snapshot = built(crowd.project, "raw_votes", {"exclude_flagged": True})
    who = {row["annotator"] for row in rows(snapshot)}
    assert who == {
        pseudonym(crowd.project.pk, uid) for uid in crowd.ids(("honest0", "honest1", "honest2"))
    }
    assert manifest(snapshot)["filters"]["flagged_annotators_excluded"] == len(BAD)
    assert snapshot.filters["flagged_annotators"] == sorted(crowd.ids(BAD))


@pytest.mark.django_db
def test_reliability_weighted_rows_carry_the_fitted_p_chosen_and_weight(crowd):
    snapshot = built(crowd.project, "reliability_weighted")
    exported = rows(snapshot)
    assert len(exported) == len(crowd.comparisons)
    assert manifest(snapshot)["columns"] == WEIGHTED_COLUMNS
    # The fit, called directly on the same votes (raters by id), gives the same soft labels.
    votes = list(
        Vote.objects.filter(comparison__project=crowd.project)
        .order_by("comparison_id", "id")
        .values_list("comparison_id", "annotator_id", "choice", "left_side")
    )
    import pandas as pd

    table = pd.DataFrame(votes, columns=["comparison", "annotator", "choice", "left_side"])
    table["annotator"] = "u" + table["annotator"].astype(str)
    table = table.assign(seconds=float("nan"), len_a=0.0, len_b=0.0, model_a="", model_b="")
    table = table.assign(round=1, gold=None)
    encoded = encode_votes(table)
    direct = soft_labels(encoded, fit_dawid_skene(encoded)).set_index("comparison")
    for row in exported:
        p_a = direct.loc[row["comparison_id"], "p_chosen"]
        comparison = next(c for c in crowd.comparisons if c.pk == row["comparison_id"])
        a_won = row["chosen"] == comparison.completion_a.text
        assert a_won == (p_a > 0.5)
        assert row["p_chosen"] == pytest.approx(max(p_a, 1 - p_a), abs=1e-6)
        assert row["weight"] == pytest.approx(direct.loc[row["comparison_id"], "weight"], abs=1e-6)
        assert 0.5 < row["p_chosen"] <= 1.0
    # The honest majority (A) wins everywhere.
    assert all(row["chosen_model"] == "good-model" for row in exported)
    table = pq.read_table(snapshot_file(snapshot, "parquet"))
    assert table.column_names == WEIGHTED_COLUMNS
    assert table.column("p_chosen").to_pylist() == [row["p_chosen"] for row in exported]
    assert table.column("weight").to_pylist() == [row["weight"] for row in exported]
    again = built(crowd.project, "reliability_weighted")
    assert again.sha256 == snapshot.sha256 and again.parquet_sha256 == snapshot.parquet_sha256


@pytest.mark.django_db
def test_raw_votes_export_every_vote_with_pseudonymised_annotators(crowd, make_project):
    snapshot = built(crowd.project, "raw_votes")
    exported = rows(snapshot)
    assert len(exported) == Vote.objects.filter(comparison__project=crowd.project).count()
    assert {row["choice"] for row in exported} == {"A", "B", "tie", "both_bad"}
    assert list(exported[0]) == RAW_COLUMNS
    names = {user.username for user in crowd.users.values()}
    ids = {str(user.pk) for user in crowd.users.values()}
    who = {row["annotator"] for row in exported}
    assert len(who) == 6 and not who & names and not who & ids
    assert all(w.startswith("a-") and len(w) == 18 for w in who)
    text = snapshot_file(snapshot).read_text()
    assert not any(name in text for name in names)
    assert all(row["seconds"] > 0 for row in exported)
    # Stable across snapshots of the project, different in another project.
    again = built(crowd.project, "raw_votes")
    assert again.sha256 == snapshot.sha256
    user = crowd.users["honest0"]
    assert pseudonym(crowd.project.pk, user.pk) != pseudonym(crowd.project.pk + 1, user.pk)
    assert manifest(snapshot)["trainable"] is False
    table = pq.read_table(snapshot_file(snapshot, "parquet"))
    assert table.column_names == RAW_COLUMNS


@pytest.mark.django_db
def test_a_raw_votes_snapshot_cannot_be_trained_on(crowd):
    from training.forms import RunForm
    from training.services import RunRefused, register_base_model, start_run

    raw = built(crowd.project, "raw_votes")
    triples = built(crowd.project, "majority")
    form = RunForm(crowd.project)
    choices = set(form.fields["snapshot"].queryset.values_list("id", flat=True))
    assert triples.pk in choices and raw.pk not in choices
    checkpoint = register_base_model(crowd.project, "models/base")
    with pytest.raises(RunRefused, match="raw_votes"):
        start_run(raw, checkpoint, {})


@pytest.mark.django_db
def test_the_export_form_passes_rounds_and_filters(client, crowd):
    from django.urls import reverse

    from labeling.models import Role, Snapshot
    from labeling.services import add_member

    boss = quick_user("snap-boss")
    add_member(crowd.project, boss, Role.ADMIN)
    client.force_login(boss)
    target = reverse("training:snapshot_create", args=[crowd.project.pk])
    data = {"policy": "reliability_weighted", "min_agreement": "0.5", "rounds": "1"}
    response = client.post(target, {**data, "adjudicated_only": "on"})
    assert response.status_code == 303
    snapshot = Snapshot.objects.get()
    assert snapshot.policy == "reliability_weighted"
    assert snapshot.filters["rounds"] == [1] and snapshot.filters["adjudicated_only"] is True
    for rounds, message in (("x", "whole numbers"), ("4", "has no round 4")):
        response = client.post(target, {**data, "rounds": rounds})
        assert response.status_code == 303
        page = client.get(response["Location"])
        assert message in page.content.decode()
    assert Snapshot.objects.count() == 1


@pytest.mark.django_db
def test_the_api_starts_a_filtered_snapshot(client, crowd):
    from api.tokens import create_token
    from labeling.models import Role
    from labeling.services import add_member

    boss = quick_user("api-snap-boss")
    add_member(crowd.project, boss, Role.ADMIN)
    secret = create_token(boss, "t", ["export", "read"], [crowd.project]).secret
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    body = {"policy": "raw_votes", "filters": {"rounds": [1], "adjudicated_only": False}}
    answer = client.post(
        f"/api/v1/projects/{crowd.project.pk}/snapshots",
        body,
        content_type="application/json",
        **headers,
    )
    assert answer.status_code == 202, answer.content
    assert answer.json()["snapshot"]["filters"]["rounds"] == [1]
    refused = client.post(
        f"/api/v1/projects/{crowd.project.pk}/snapshots",
        {"policy": "majority", "filters": {"rounds": [7]}},
        content_type="application/json",
        **headers,
    )
    assert refused.status_code == 422
    assert "has no round 7" in refused.json()["error"]["message"]


def test_the_flip_rate_inverts_the_agreement_of_two_noisy_votes():
    from training.defaults import _flip_rate, _majority_flip

    assert _flip_rate(1.0) == 0.0
    assert _flip_rate(0.5) == 0.5 and _flip_rate(0.3) == 0.5
    e = 0.1
    assert _flip_rate((1 - e) ** 2 + e**2) == pytest.approx(e)
    # A majority of 3: wrong when 2 or 3 of them are, 3 e^2 (1 - e) + e^3.
    assert _majority_flip(e, 3) == pytest.approx(3 * e**2 * (1 - e) + e**3)


@pytest.mark.django_db
def test_the_run_form_suggests_label_smoothing_from_the_measured_agreement(client, crowd):
    from django.urls import reverse

    from labeling.models import Role
    from labeling.services import add_member
    from training.defaults import _flip_rate, _majority_flip
    from training.services import register_base_model

    boss = quick_user("run-boss")
    add_member(crowd.project, boss, Role.ADMIN)
    register_base_model(crowd.project, "models/base")
    snapshot = built(crowd.project, "majority")
    client.force_login(boss)
    target = reverse("training:run_create", args=[crowd.project.pk])
    before = client.get(target)
    assert before.context["form"].initial.get("label_smoothing") in (None, 0.0)
    report = compute_quality_report(request_quality_report(crowd.project).pk)
    page = client.get(target)
    agreement = report.data["project"]["agreement"]["percent_agreement"]
    want = round(_majority_flip(_flip_rate(agreement), 6), 3)
    assert page.context["form"].initial["label_smoothing"] == want
    assert f"Label smoothing {want:g} from the measured agreement" in page.content.decode()
    assert f"quality report {report.pk}" in page.content.decode()
    assert page.context["form"].initial["snapshot"] == snapshot.pk


@pytest.mark.django_db
def test_the_snapshot_page_says_what_the_filters_left_out(client, crowd):
    from django.urls import reverse

    from labeling.models import Role
    from labeling.services import add_member

    boss = quick_user("page-boss")
    add_member(crowd.project, boss, Role.REVIEWER)
    snapshot = built(crowd.project, "every_vote", {"rounds": [1], "adjudicated_only": True})
    client.force_login(boss)
    page = client.get(reverse("training:snapshot", args=[crowd.project.pk, snapshot.pk]))
    assert "rounds 1; adjudicated comparisons only; no evaluation rounds" in page.content.decode()
