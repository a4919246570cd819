"""Routing: humans see judges' doubts first; judge-decided comparisons skip humans when the
project says so."""

from __future__ import annotations

from judging.services import (
    JUDGE_GPU_TASK,
    JUDGE_TASK,
    add_judge,
    run_judging,
    start_judging,
    update_judge,
)
from labeling.models import Comparison, Role
from labeling.services import VoteInput, cast_vote, lease_next_comparison


def leased_in_order(user, project):
    order = []
    while (comparison := lease_next_comparison(user, project)) is not None:
        order.append(comparison)
        cast_vote(user, project, comparison.id, VoteInput("A", "clear"))
    return order


def question(comparison) -> int:
    return int(comparison.prompt.text.split(":")[0].split()[-1])


def test_inconsistent_comparisons_come_first(make_project, annotator):
    project = make_project(pairs=6, members={annotator: Role.ANNOTATOR})
    judge = add_judge(
        project,
        "biased",
        "programmatic",
        {"callable": "tests.judging.callables.first_is_better_on_odd_questions"},
    )
    run_judging(judge)
    priorities = dict(Comparison.objects.values_list("id", "judge_priority"))
    assert sorted(priorities.values()) == [0, 0, 0, 3, 3, 3]

    order = [question(c) for c in leased_in_order(annotator, project)]
    assert len(order) == 6
    assert all(n % 2 for n in order[:3]) and not any(n % 2 for n in order[3:])


def test_judges_disagreeing_rank_above_a_small_margin(make_project, annotator):
    project = make_project(pairs=2, members={annotator: Role.ANNOTATOR})
    project.quality_settings = {"judge_small_margin": 0.9}
    project.save()
    add_judge(
        project, "short", "programmatic", {"callable": "tests.judging.callables.shorter_is_better"}
    )
    run_judging(project.judges.get(name="short"))
    assert set(Comparison.objects.values_list("judge_priority", "judge_decided")) == {(0, True)}
    scored = add_judge(
        project, "score", "programmatic", {"callable": "tests.judging.callables.score_by_length"}
    )
    run_judging(scored)
    # Same side, but the score's margin (a short relative length difference) is under 0.9.
    assert set(Comparison.objects.values_list("judge_priority", "judge_decided")) == {(1, False)}
    contrary = add_judge(
        project, "long", "programmatic", {"callable": "tests.judging.callables.longer_is_better"}
    )
    run_judging(contrary)
    assert set(Comparison.objects.values_list("judge_priority", "judge_decided")) == {(2, False)}


def test_judge_decided_comparisons_skip_humans_only_when_the_project_says_so(
    make_project, annotator
):
    project = make_project(pairs=4, members={annotator: Role.ANNOTATOR})
    run_judging(
        add_judge(
            project,
            "biased",
            "programmatic",
            {"callable": "tests.judging.callables.first_is_better_on_odd_questions"},
        )
    )
    project.judged_to_humans = False
    project.save()
    served = leased_in_order(annotator, project)
    assert sorted(question(c) for c in served) == [1, 3]  # the judge-inconsistent ones only
    assert Comparison.objects.filter(judge_decided=True).count() == 2


def test_disabling_a_judge_takes_its_doubts_out_of_the_routing(make_project):
    project = make_project(pairs=2)
    judge = add_judge(
        project,
        "biased",
        "programmatic",
        {"callable": "tests.judging.callables.first_is_better_on_odd_questions"},
    )
    run_judging(judge)
    assert sorted(Comparison.objects.values_list("judge_priority", flat=True)) == [0, 3]
    update_judge(judge, enabled=False)
    assert set(Comparison.objects.values_list("judge_priority", "judge_decided")) == {(0, False)}


def test_reward_model_jobs_are_sent_to_the_gpu_queue_others_to_default(
    make_project, django_capture_on_commit_callbacks, settings
):
    from tests.judging.test_reward_model_judge import build_tiny_reward_model

    project = make_project(pairs=1)
    check = add_judge(
        project, "check", "programmatic", {"callable": "tests.judging.callables.shorter_is_better"}
    )
    build_tiny_reward_model(settings.PREFLAB_JUDGE_MODELS_DIR / "rm")
    rm = add_judge(project, "rm", "reward_model", {"model": "rm"})
    with django_capture_on_commit_callbacks() as callbacks:
        start_judging(check)
        start_judging(rm)
    sent = [callback.args[0] for callback in callbacks]
    assert sent == [JUDGE_TASK, JUDGE_GPU_TASK]
    assert settings.CELERY_TASK_ROUTES[JUDGE_GPU_TASK] == {"queue": "gpu"}
    assert JUDGE_TASK not in settings.CELERY_TASK_ROUTES  # the default queue
