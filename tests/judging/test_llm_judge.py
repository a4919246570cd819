"""The LLM judge against a real HTTP server on loopback speaking chat-completions."""

from __future__ import annotations

import pytest

from judging.models import JudgeResult, Outcome
from judging.services import add_judge, run_judging
from labeling.models import Choice, JobStatus, Vote, VoteSource
from tests.judging.conftest import completion, knows_the_answer, shown


def llm_judge(project, server, **config):
    return add_judge(
        project,
        "llm",
        "llm",
        {"base_url": server.url, "model": "judge-model", "concurrency": 2, **config},
    )


def test_consistent_answers_become_judge_votes_with_both_raw_outputs(make_project, fake_openai):
    project = make_project(pairs=3)
    server = fake_openai(knows_the_answer)
    job = run_judging(llm_judge(project, server))

    assert job.status == JobStatus.SUCCEEDED
    assert (job.total, job.done, job.consistent, job.inconsistent) == (3, 3, 3, 0)
    assert job.calls == 6 and job.tokens == 6 * 30
    assert len(server.requests) == 6  # each comparison in both orders
    assert all(request["path"] == "/v1/chat/completions" for request in server.requests)
    votes = Vote.objects.filter(source=VoteSource.JUDGE)
    assert votes.count() == 3
    for vote in votes:
        assert vote.choice == Choice.A and vote.chosen_id == vote.comparison.completion_a_id
        assert vote.annotator_id is None and vote.judge_version == 1
        assert vote.judge_output["ab"]["answer"].endswith("[[A]]")
        assert vote.judge_output["ba"]["answer"].endswith("[[B]]")
        assert vote.comparison.vote_count == 0  # no human overlap slot taken
    # The B/A order really showed B first.
    firsts = {shown(request["body"])[0] for request in server.requests}
    assert any("I think" in first for first in firsts) and any("I think" not in f for f in firsts)


def test_position_biased_answers_are_inconsistent_and_make_no_vote(make_project, fake_openai):
    project = make_project(pairs=2)
    server = fake_openai(lambda body, count: (200, {}, completion("Clearly [[A]]"), 0.0))
    job = run_judging(llm_judge(project, server))

    assert (job.consistent, job.inconsistent) == (0, 2)
    assert not Vote.objects.filter(source=VoteSource.JUDGE).exists()
    result = JudgeResult.objects.first()
    assert result.outcome == Outcome.INCONSISTENT
    assert (result.choice_ab, result.choice_ba) == (Choice.A, Choice.B)
    assert result.output_ab["answer"] == "Clearly [[A]]"
    assert result.comparison.judge_priority == 3  # humans see it first


@pytest.mark.parametrize(
    "answer", ["Both are fine.", "I prefer the first one.", "[[A]] or maybe [[B]]", "A or B"]
)
def test_answers_naming_neither_side_are_unparseable_never_guessed(
    make_project, fake_openai, answer
):
    project = make_project(pairs=1)
    server = fake_openai(lambda body, count: (200, {}, completion(answer), 0.0))
    job = run_judging(llm_judge(project, server))

    assert (job.unparseable, job.consistent) == (1, 0)
    result = JudgeResult.objects.get()
    assert result.outcome == Outcome.UNPARSEABLE and result.choice == ""
    assert result.output_ab["answer"] == answer
    assert not Vote.objects.filter(source=VoteSource.JUDGE).exists()


def test_429_with_retry_after_is_waited_out_then_succeeds(make_project, fake_openai):
    project = make_project(pairs=1)

    def reply(body, count):
        if count < 2:
            return 429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}, 0.0
        return knows_the_answer(body, count)

    server = fake_openai(reply)
    # No backoff of our own: only Retry-After can make the client wait.
    job = run_judging(llm_judge(project, server, backoff_seconds=0.0, max_retries=2))

    assert job.status == JobStatus.SUCCEEDED and job.consistent == 1
    assert len(server.requests) == 4 and job.calls == 4
    times = sorted(request["at"] for request in server.requests)
    assert times[2] - times[0] >= 0.9  # waited the second the server asked for


def test_a_timeout_is_an_error_and_the_job_still_ends(make_project, fake_openai):
    project = make_project(pairs=1)
    server = fake_openai(lambda body, count: (200, {}, completion("[[A]]"), 1.5))
    job = run_judging(llm_judge(project, server, timeout_seconds=0.2, max_retries=0))

    assert job.status == JobStatus.SUCCEEDED
    assert (job.errors, job.consistent) == (1, 0)
    result = JudgeResult.objects.get()
    assert result.outcome == Outcome.ERROR and "timed out" in result.error
    assert not Vote.objects.filter(source=VoteSource.JUDGE).exists()


def test_a_4xx_is_not_retried(make_project, fake_openai):
    project = make_project(pairs=1)
    server = fake_openai(lambda body, count: (401, {}, {"error": "bad key"}, 0.0))
    job = run_judging(llm_judge(project, server, backoff_seconds=0.0))

    assert job.errors == 1 and len(server.requests) == 2
    assert "HTTP 401" in JudgeResult.objects.get().error


def test_a_host_name_is_called_at_the_address_that_was_checked(make_project, fake_openai, settings):
    settings.PREFLAB_JUDGE_ALLOWED_HOSTS = ["localhost", "127.0.0.1", "::1"]
    project = make_project(pairs=1)
    server = fake_openai(knows_the_answer)
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    judge = add_judge(
        project, "llm", "llm", {"base_url": f"http://localhost:{port}/v1", "model": "judge-model"}
    )
    job = run_judging(judge)
    assert job.consistent == 1
    assert {request["host"] for request in server.requests} == {f"localhost:{port}"}
