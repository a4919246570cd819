"""Agreement over rankings: Kendall's W, ordinal Krippendorff's alpha, each annotator against the
others, position bias; the quality job, its freshness and the quality page's Rankings section."""

from __future__ import annotations

import math
import subprocess
import sys

import krippendorff
import numpy as np
import pytest
from django.urls import reverse
from scipy import stats

from labeling.models import JobStatus, QualityReport, Role
from labeling.quality.jobs import compute_quality_report, get_quality, request_quality_report
from labeling.quality.rankings import (
    RankingRecord,
    kendalls_w,
    leave_one_out_rho,
    ranking_agreement,
)
from labeling.services import add_member
from tests.labeling.quality.db_crowd import quick_user, seed_crowd
from tests.labeling.quality.ranking_data import add_ranking, make_ranking_tasks


def records(task: int, rankings: list[list], size: int = 4, round_: int = 1, first: int = 1):
    """One record per ranking of ``task``, annotators ``first``, ``first + 1``, ..."""
    return [
        RankingRecord(task, first + i, round_, size, ranking, list(range(size)))
        for i, ranking in enumerate(rankings)
    ]


def test_the_ranking_statistics_import_no_django():
    code = (
        "import sys; from labeling.quality.rankings import ranking_agreement, page_context; "
        "assert 'django' not in sys.modules, 'django imported'; "
        "assert 'krippendorff' not in sys.modules, 'krippendorff imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# Kendall's W


def test_w_is_one_when_every_annotator_gives_the_same_order():
    assert kendalls_w([[1, 2, 3, 4]] * 3).w == pytest.approx(1.0)
    # The same ties everywhere is perfect agreement too, thanks to the tie correction.
    assert kendalls_w([[1.5, 1.5, 3, 4]] * 4).w == pytest.approx(1.0)


def test_w_is_zero_for_two_annotators_in_exactly_reverse_order():
    result = kendalls_w([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    assert result.w == pytest.approx(0.0)
    assert result.chi_square == pytest.approx(0.0) and result.p_value == pytest.approx(1.0)


def test_w_with_ties_is_the_hand_computed_tie_corrected_value():
    # m = 3 annotators, n = 4 responses; the second ties responses 0 and 1 for first place.
    ranks = [[1, 2, 3, 4], [1.5, 1.5, 3, 4], [2, 1, 4, 3]]
    # Rank sums R = (4.5, 4.5, 10, 11), mean 30 / 4 = 7.5, deviations (-3, -3, 2.5, 3.5):
    # S = 9 + 9 + 6.25 + 12.25 = 36.5. Ties: one group of t = 2, T = 2^3 - 2 = 6.
    # W = 12 S / (m^2 (n^3 - n) - m T) = 438 / (9 * 60 - 3 * 6) = 438 / 522 = 73 / 87.
    result = kendalls_w(ranks)
    assert result.w == pytest.approx(73 / 87, abs=1e-12)
    assert result.w != pytest.approx(438 / 540)  # the uncorrected value
    # chi^2 = m (n - 1) W = 9 * 73 / 87 = 657 / 87 with n - 1 = 3 degrees of freedom.
    assert result.chi_square == pytest.approx(657 / 87) and result.dof == 3
    assert result.p_value == pytest.approx(stats.chi2.sf(657 / 87, 3))
    # Friedman's tie-corrected statistic is the same number (scipy, one sample per response).
    friedman = stats.friedmanchisquare(*np.array(ranks, dtype=float).T)
    assert friedman.statistic == pytest.approx(result.chi_square)


def test_w_refuses_a_single_annotator():
    with pytest.raises(ValueError, match="at least 2 raters"):
        kendalls_w([[1, 2, 3]])


def test_tasks_with_one_ranking_count_but_carry_no_agreement():
    figures = ranking_agreement(
        records(1, [[0, 1, 2, 3], [0, 1, 2, 3]]) + records(2, [[3, 2, 1, 0]], first=5)
    )
    section = figures.project
    assert (section.rankings, section.tasks, section.agreement_tasks) == (3, 2, 1)
    assert section.mean_w == pytest.approx(1.0)
    assert section.alpha_units == 4
    assert [t.task for t in figures.tasks] == [1]


def test_the_mean_w_and_least_agreed_tasks_first():
    figures = ranking_agreement(
        records(1, [[0, 1, 2, 3], [0, 1, 2, 3]])  # W = 1
        + records(2, [[0, 1, 2, 3], [3, 2, 1, 0]])  # W = 0
    )
    assert figures.project.mean_w == pytest.approx(0.5)
    assert [t.task for t in figures.tasks] == [2, 1]
    assert figures.tasks[0].w == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------------
# Krippendorff's alpha


def test_alpha_is_the_krippendorff_package_on_the_coders_by_units_matrix():
    # Three tasks of K = 4, annotators 1-4, not all on every task; ties included.
    data = (
        records(1, [[0, 1, 2, 3], [1, 0, 2, 3], [0, [1, 2], 3]], first=1)
        + records(2, [[2, 3, 0, 1], [[2, 3], 0, 1]], first=2)
        + records(3, [[3, 2, 1, 0], [3, 1, 2, 0], [1, 3, 2, 0]], first=1)
        + records(4, [[0, 1, 2, 3]], first=1)  # one ranking: not a unit
    )
    figures = ranking_agreement(data)
    # Reliability data: coders (annotators 1-4) x units (task x position), average ranks.
    matrix = np.full((4, 12), np.nan)
    rows = {
        # task 1: annotators 1, 2, 3
        (1, 1): [1, 2, 3, 4], (1, 2): [2, 1, 3, 4], (1, 3): [1, 2.5, 2.5, 4],
        # task 2: annotators 2, 3; ranking [2, 3, 0, 1] gives position 0 rank 3, ...
        (2, 2): [3, 4, 1, 2], (2, 3): [3, 4, 1.5, 1.5],
        # task 3: annotators 1, 2, 3
        (3, 1): [4, 3, 2, 1], (3, 2): [4, 2, 3, 1], (3, 3): [4, 1, 3, 2],
    }  # fmt: skip
    for (task, annotator), ranks in rows.items():
        matrix[annotator - 1, (task - 1) * 4 : task * 4] = ranks
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert figures.project.alpha == pytest.approx(expected, abs=1e-12)
    assert figures.project.alpha_units == 12
    assert 0 < expected < 1


def test_alpha_is_one_when_every_annotator_agrees():
    data = records(1, [[2, 0, 1, 3]] * 3) + records(2, [[[0, 1], 3, 2]] * 2, first=2)
    assert ranking_agreement(data).project.alpha == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# each annotator against the others


def test_leave_one_out_rho_is_spearman_against_the_others_mean_ranks():
    ranks = np.array([[1, 2, 3, 4, 5], [2, 1, 3, 5, 4], [1.5, 1.5, 4, 3, 5], [5, 4, 3, 2, 1]])
    rho = leave_one_out_rho(ranks)
    for j in range(len(ranks)):
        others = np.delete(ranks, j, axis=0).mean(axis=0)
        assert rho[j] == pytest.approx(stats.spearmanr(ranks[j], others).statistic)


def test_rho_is_undefined_where_the_others_cancel_out():
    rho = leave_one_out_rho([[1, 2, 3], [1, 2, 3], [3, 2, 1]])
    # For the first: the others (1,2,3) and (3,2,1) average to a constant.
    assert math.isnan(rho[0]) and math.isnan(rho[1])
    assert rho[2] == pytest.approx(-1.0)


def test_the_annotator_who_reverses_everyone_is_listed_first():
    data = []
    for task in range(1, 4):
        data += records(task, [[0, 1, 2, 3], [0, 1, 3, 2], [1, 0, 2, 3], [3, 2, 1, 0]])
    annotators = ranking_agreement(data).annotators
    assert annotators[0].annotator == 4
    assert annotators[0].mean_rho is not None and annotators[0].mean_rho < 0
    assert all(a.mean_rho > 0.5 for a in annotators[1:])
    assert annotators[0].tasks == annotators[0].scored == 3


# ----------------------------------------------------------------------------------------------
# position bias


def test_position_bias_counts_how_often_the_first_shown_is_ranked_best():
    data = []
    for task in range(1, 9):
        shown = [task % 4, (task + 1) % 4, (task + 2) % 4, (task + 3) % 4]
        # Always ranks the first response shown best.
        data.append(RankingRecord(task, 1, 1, 4, shown, shown))
        # Ranks canonical order: the first shown is best only when it is response 0.
        data.append(RankingRecord(task, 2, 1, 4, [0, 1, 2, 3], shown))
    data.append(RankingRecord(20, 3, 1, 4, [[0, 1], 2, 3], [0, 1, 2, 3]))  # tied best
    data.append(RankingRecord(21, 3, 1, 4, [0, 1, 2, 3], []))  # imported: no display order
    (row,) = ranking_agreement(data).project.position_bias
    assert row.size == 4 and row.tied_best == 1 and row.no_display_order == 1
    bias = row.first_ranked_best
    # 8 of the first annotator's, 2 of the second's (tasks 4 and 8 show response 0 first).
    assert (bias.successes, bias.trials) == (10, 16)
    assert bias.null == pytest.approx(0.25)
    assert bias.p_value == pytest.approx(stats.binomtest(10, 16, 0.25).pvalue)
    assert bias.ci_low < 10 / 16 < bias.ci_high


def test_position_bias_has_a_row_per_k_with_its_own_null():
    data = [
        RankingRecord(1, 1, 1, 3, [0, 1, 2], [0, 1, 2]),
        RankingRecord(2, 1, 1, 5, [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]),
    ]
    rows = ranking_agreement(data).project.position_bias
    assert [(r.size, r.first_ranked_best.null, r.first_ranked_best.successes) for r in rows] == [
        (3, pytest.approx(1 / 3), 1),
        (5, pytest.approx(1 / 5), 0),
    ]


def test_rounds_get_their_own_sections_and_a_malformed_ranking_is_left_out():
    data = records(1, [[0, 1, 2, 3]] * 2, round_=1) + records(
        2, [[0, 1, 2, 3], [3, 2, 1, 0]], round_=2
    )
    data.append(RankingRecord(3, 9, 2, 4, [0, 1, 1, 3], [0, 1, 2, 3]))
    figures = ranking_agreement(data)
    assert figures.invalid == 1
    assert figures.rounds[1].mean_w == pytest.approx(1.0)
    assert figures.rounds[2].mean_w == pytest.approx(0.0)
    assert figures.project.rankings == 4


# ----------------------------------------------------------------------------------------------
# the quality job, its freshness and the page


@pytest.fixture
def ranked(make_project):
    """A project with no pairs: three annotators rank two tasks of K = 4, one of them against
    the others; a reviewer looks."""
    project = make_project("Ranked", pairs=0, overlap=3)
    users = [quick_user(f"ranker{i}") for i in range(3)]
    for user in users:
        add_member(project, user, Role.ANNOTATOR)
    reviewer = quick_user("ranking-reviewer")
    add_member(project, reviewer, Role.REVIEWER)
    tasks = make_ranking_tasks(project, 2, 4)
    for task in tasks:
        add_ranking(task, users[0], [0, 1, 2, 3])
        add_ranking(task, users[1], [0, [1, 2], 3])
        add_ranking(task, users[2], [3, 2, 1, 0])
    return project, users, reviewer, tasks


def compute(project, round_=None):
    report = compute_quality_report(request_quality_report(project, round_).pk)
    assert report is not None and report.status == JobStatus.SUCCEEDED
    return report


@pytest.mark.django_db
def test_the_quality_job_stores_the_ranking_figures(ranked):
    project, users, _, tasks = ranked
    figures = compute(project).data["rankings"]
    assert figures["rankings"] == 6
    assert figures["project"]["agreement_tasks"] == 2
    assert figures["annotator_names"][str(users[2].pk)] == "ranker2"
    assert figures["annotators"][0]["annotator"] == users[2].pk  # the reverser first
    assert figures["project"]["position_bias"][0]["first_ranked_best"]["trials"] == 6
    assert {t["task"] for t in figures["tasks"]} == {t.pk for t in tasks}


@pytest.mark.django_db
def test_a_new_ranking_makes_the_figures_stale_and_queues_new_ones(ranked):
    project = ranked[0]
    compute(project)
    assert not get_quality(project).stale
    extra = quick_user("late-ranker")
    add_member(project, extra, Role.ANNOTATOR)
    (task,) = make_ranking_tasks(project, 1, 3, round_number=1)
    add_ranking(task, extra, [2, 1, 0])
    cached = get_quality(project)
    assert cached.stale and cached.current_rankings == 7
    assert cached.computing is not None and cached.computing.status == JobStatus.QUEUED


@pytest.mark.django_db
def test_the_quality_page_shows_the_rankings_section(client, ranked):
    project, _, reviewer, _ = ranked
    compute(project)
    client.force_login(reviewer)
    html = client.get(reverse("labeling:quality", args=[project.pk])).content.decode()
    assert 'data-testid="rankings-quality"' in html
    assert "and <strong>6</strong> human rankings" in html
    section = html.split('data-testid="rankings-quality"')[1]
    assert "Kendall" in section and "ranker2" in section
    annotators = section.split('data-testid="ranking-annotators"')[1].split("</table>")[0]
    assert annotators.index("ranker2") < annotators.index("ranker0")
    assert 'data-testid="ranking-position-bias"' in section


@pytest.mark.django_db
def test_a_project_without_rankings_has_no_rankings_section(client, make_project):
    crowd = seed_crowd(make_project)
    checker = quick_user("checker")
    add_member(crowd.project, checker, Role.REVIEWER)
    report = compute(crowd.project)
    assert "rankings" not in report.data
    client.force_login(checker)
    html = client.get(reverse("labeling:quality", args=[crowd.project.pk])).content.decode()
    assert "Krippendorff" in html and 'data-testid="rankings-quality"' not in html
    assert not get_quality(crowd.project).stale
    assert QualityReport.objects.filter(project=crowd.project).count() == 1


@pytest.mark.django_db
def test_a_rounds_report_covers_that_rounds_rankings_only(client, ranked):
    project, users, reviewer, _ = ranked
    (later,) = make_ranking_tasks(project, 1, 4, round_number=2)
    add_ranking(later, users[0], [0, 1, 2, 3])
    add_ranking(later, users[1], [0, 1, 2, 3])
    round_2 = project.rounds.get(number=2)
    figures = compute(project, round_2).data["rankings"]
    assert figures["rankings"] == 2 and figures["project"]["mean_w"] == pytest.approx(1.0)
    client.force_login(reviewer)
    page = client.get(reverse("labeling:quality", args=[project.pk]) + "?round=2")
    section = page.content.decode().split('data-testid="rankings-quality"')[1]
    assert "Round 2" in section and "All rounds" not in section
