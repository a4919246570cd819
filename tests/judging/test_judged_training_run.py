"""Issue 12's end to end: a project, a sampled round, a programmatic judge over it through the
job core, a judges-only snapshot, and a DPO training run on it (the tiny model, the engine as a
child process, as a worker runs it)."""

from __future__ import annotations

import json

import pytest

from core.jobs import run_job
from judging.models import JudgingScope
from judging.services import add_judge, request_judging
from labeling.importers import ImportKind, import_file
from labeling.models import JobStatus, Project, Vote, VoteSource
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file
from training.defaults import suggested_run_values
from training.models import RunStatus, SamplingJob
from training.services import register_base_model, start_run, start_sampling

pytestmark = [pytest.mark.slow]

GENERATION = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 3}


@pytest.mark.django_db
def test_a_judged_round_trains_a_checkpoint(tiny_model):
    project = Project.objects.create(name="Judged loop", overlap=2)
    prompts = "\n".join(json.dumps({"prompt": f"Question {i}: say hi."}) for i in range(12))
    import_file(project, prompts.encode(), "prompts.jsonl", ImportKind.PROMPTS)
    base = register_base_model(project, str(tiny_model), "tiny-base")
    sampling = start_sampling(project, base, generation=GENERATION)
    run_job("sampling_job", sampling.pk)
    sampling = SamplingJob.objects.get(pk=sampling.pk)
    assert sampling.status == RunStatus.SUCCEEDED, sampling.error

    judge = add_judge(
        project,
        "shorter",
        "programmatic",
        {"callable": "tests.judging.callables.shorter_is_better"},
    )
    job = run_job(
        "judging_job",
        request_judging(judge, scope=JudgingScope.ROUND, round=sampling.round).pk,
    )
    assert job.status == JobStatus.SUCCEEDED and job.done == sampling.comparisons_created
    decisive = Vote.objects.filter(source=VoteSource.JUDGE, choice__in=["A", "B"])
    assert decisive.count() >= 4

    snapshot = build_snapshot(
        request_snapshot(project, "every_vote", filters={"sources": ["judge"]}).pk
    )
    assert snapshot.status == JobStatus.SUCCEEDED and snapshot.row_count == decisive.count()
    rows = [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]
    assert all(len(row["chosen"]) <= len(row["rejected"]) for row in rows)

    run = start_run(snapshot, base, suggested_run_values(snapshot, base))
    run_job("training_run", run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    assert run.checkpoints.filter(is_final=True).exists()
