"""The demo seed prints where the demo is really served."""

from io import StringIO

import pytest
from django.core.management import call_command

from labeling.models import Project, RankingTask


@pytest.mark.django_db
def test_seed_demo_prints_the_url_it_is_given_and_is_idempotent():
    out = StringIO()
    call_command("seed_demo", url="http://127.0.0.1:8100/", stdout=out)
    call_command("seed_demo", url="http://127.0.0.1:8100/", stdout=StringIO())
    assert "Log in at http://127.0.0.1:8100/ with any of:" in out.getvalue()
    assert "8000" not in out.getvalue()
    project = Project.objects.get()
    assert project.comparisons.count() == 60
    tasks = RankingTask.objects.filter(project=project)
    assert tasks.count() == 8  # the second run added none
    assert {(t.size, t.votes_target, t.vote_count) for t in tasks} == {(4, 2, 0)}
    assert tasks.first().round.number == 2  # after the pairs' round
    assert "Imported 8 prompts, 8 ranking tasks in round 2." in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_adds_the_ranking_round_to_a_demo_seeded_before_rankings():
    call_command("seed_demo", stdout=StringIO())
    RankingTask.objects.all().delete()  # as a database seeded before ranking tasks existed
    call_command("seed_demo", stdout=StringIO())
    assert Project.objects.get().comparisons.count() == 60
    assert RankingTask.objects.count() == 8
