"""Gold items: imported with a known answer, served blind at the project's gold rate, each
annotator at most once, never counted toward vote_count and never in the review's splits."""

import json

import pytest

from labeling import review, services
from labeling.importers import ImportFailed, ImportKind, import_file
from labeling.models import Choice, Comparison, Role
from labeling.services import VoteInput, cast_vote, lease_next_comparison, undo_last_vote
from tests.conftest import make_user, pairs_jsonl


def gold_jsonl(count: int, answer: str = "a") -> bytes:
    return "\n".join(
        json.dumps(
            {
                "prompt": f"Known answer {i}: 2 + 2?",
                "response_a": "4",
                "response_b": f"{5 + i}",
                "gold": answer,
            }
        )
        for i in range(count)
    ).encode()


def test_pairs_with_a_gold_field_become_gold_items(make_project):
    project = make_project("Gold import", pairs=0)
    import_file(
        project, gold_jsonl(2, "b") + b"\n" + pairs_jsonl(1), "mixed.jsonl", ImportKind.PAIRS
    )
    gold = Comparison.objects.filter(project=project, is_gold=True)
    assert gold.count() == 2 and set(gold.values_list("gold_choice", flat=True)) == {Choice.B}
    assert Comparison.objects.filter(project=project, is_gold=False).count() == 1


def test_csv_gold_column_and_a_bad_gold_value_names_its_line(make_project):
    project = make_project("Gold csv", pairs=0)
    data = b"prompt,response_a,response_b,gold\nQ1,x,y,TIE\nQ2,x,y,\nQ3,x,y,maybe\n"
    with pytest.raises(ImportFailed) as failed:
        import_file(project, data, "gold.csv", ImportKind.PAIRS)
    assert failed.value.errors == [
        'line 4: field \'gold\' must be "a", "b" or "tie", not \'maybe\''
    ]
    assert not Comparison.objects.filter(project=project).exists()
    import_file(project, data.rsplit(b"Q3", 1)[0], "gold.csv", ImportKind.PAIRS)
    assert list(
        Comparison.objects.filter(project=project).values_list("is_gold", "gold_choice")
    ) == [
        (True, Choice.TIE),
        (False, ""),
    ]


def test_gold_is_served_blind_at_the_configured_rate_and_once_per_annotator(make_project, client):
    annotator = make_user("blind_annotator")
    project = make_project("Rate project", pairs=0, members={annotator: Role.ANNOTATOR})
    project.gold_rate = 0.25
    project.save()
    import_file(project, pairs_jsonl(80), "pairs.jsonl", ImportKind.PAIRS)
    import_file(project, gold_jsonl(40), "gold.jsonl", ImportKind.PAIRS)
    services.gold_draws.seed(20261202)
    served_gold = 0
    for _ in range(80):
        comparison = lease_next_comparison(annotator, project)
        served_gold += comparison.is_gold
        cast_vote(annotator, project, comparison.id, VoteInput("tie"))
    # 80 draws at 0.25: mean 20, sd 3.9; the fixed seed makes it repeatable, the bounds
    # (3 sd) say what any seed gives.
    assert 8 <= served_gold <= 32, served_gold
    votes = annotator.votes.filter(comparison__is_gold=True)
    assert votes.count() == served_gold
    assert votes.values("comparison").distinct().count() == served_gold  # once each
    # Gold votes never count, so the constraint never_over_voted is untouched.
    assert set(Comparison.objects.filter(is_gold=True).values_list("vote_count", flat=True)) == {0}
    # Blind: the page shows a gold item like any other comparison.
    gold = (
        Comparison.objects.filter(project=project, is_gold=True)
        .exclude(votes__annotator=annotator)
        .first()
    )
    Comparison.objects.filter(id=gold.id).update(
        leased_to=annotator, leased_at=gold.created_at, lease_expires_at="2999-01-01T00:00:00Z"
    )
    client.force_login(annotator)
    page = client.get(f"/projects/{project.id}/annotate/").content.decode()
    assert f'data-comparison="{gold.id}"' in page and "gold" not in page.lower()


def test_gold_rate_zero_never_serves_gold(make_project):
    annotator = make_user("no_gold")
    project = make_project("No gold", pairs=0, members={annotator: Role.ANNOTATOR})
    project.gold_rate = 0.0
    project.save()
    import_file(project, gold_jsonl(3), "gold.jsonl", ImportKind.PAIRS)
    assert lease_next_comparison(annotator, project) is None


def test_two_annotators_answer_the_same_gold_item_and_undo_keeps_the_count(make_project):
    first, second = make_user("gold_one"), make_user("gold_two")
    project = make_project(
        "Gold twice", pairs=0, members={first: Role.ANNOTATOR, second: Role.ANNOTATOR}
    )
    project.gold_rate = 0.5
    project.save()
    import_file(project, gold_jsonl(1, "a"), "gold.jsonl", ImportKind.PAIRS)
    gold = Comparison.objects.get(project=project)
    cast_vote(first, project, gold.id, VoteInput("B", "clear"))
    cast_vote(second, project, gold.id, VoteInput("A", "clear"))
    gold.refresh_from_db()
    assert gold.vote_count == 0 and gold.votes.count() == 2
    failures = list(review.gold_failures(project))
    assert [vote.annotator for vote in failures] == [first]
    undo_last_vote(second, project)
    gold.refresh_from_db()
    assert gold.vote_count == 0 and gold.votes.count() == 1


def test_reviewer_marks_a_decided_comparison_gold_and_it_is_served_to_others(make_project):
    voter, newcomer = make_user("decider"), make_user("newcomer")
    project = make_project(
        "Mark gold", pairs=1, members={voter: Role.ANNOTATOR, newcomer: Role.ANNOTATOR}
    )
    comparison = Comparison.objects.get(project=project)
    cast_vote(voter, project, comparison.id, VoteInput("A", "clear"))
    project.gold_rate = 0.5
    project.save()
    assert lease_next_comparison(newcomer, project) is None  # complete: nothing to serve
    review.mark_gold(comparison, Choice.A)
    services.gold_draws.seed(1)
    served = None
    for _ in range(20):  # each lease draws; a gold draw serves it
        served = lease_next_comparison(newcomer, project)
        if served is not None:
            break
    assert served is not None and served.id == comparison.id
    review.unmark_gold(comparison)
    comparison.refresh_from_db()
    assert not comparison.is_gold and comparison.vote_count == 1


def test_gold_items_are_not_counted_as_work(client, make_project):
    annotator = make_user("counting_cat")
    project = make_project("Counting", pairs=2, members={annotator: Role.ANNOTATOR})
    import_file(project, gold_jsonl(3), "gold.jsonl", ImportKind.PAIRS)
    assert services.get_annotator_progress(annotator, project).remaining == 2
    assert services.get_project_stats(project).comparisons == 2
    client.force_login(annotator)
    assert b"0 / 2" in client.get("/").content
