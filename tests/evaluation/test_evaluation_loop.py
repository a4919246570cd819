"""One turn of the loop on the tiny model, judged by a known rule, measured by the product.

Prompts are imported, 30% held out; the base model samples round 1 on the training prompts;
a programmatic judge (judging app) following a rule (more lowercase letters wins:
tests/evaluation/rules.py) votes it;
a snapshot is built and a run trains on it with the run form's fitted defaults; an evaluation
of the new checkpoint against its parent samples both on the held-out prompts and opens a
blind round; the same judge votes it; and the product's own results must report a win-rate
whose interval lies above 0.5, which the default gate then promotes. (Human-only evaluation,
votes through labeling.services.cast_vote, is tested in test_gate_product.py.)

Every job runs in this process through the job wrapper (core.jobs.run_job), the engine as a
child process, exactly as a worker runs them; only the Celery hop is left out.
"""

from __future__ import annotations

import json
import resource
import time

import pytest

from core.jobs import run_job
from evaluation.models import Decision, Evaluation
from evaluation.services import (
    apply_gate,
    get_results,
    hold_out_prompts,
    promoted_checkpoint,
    start_evaluation,
)
from judging.services import add_judge, run_judging
from labeling.importers import ImportKind, import_file
from labeling.models import Comparison, JobStatus, Project, PromptSplit, RoundPurpose, Vote
from labeling.snapshots import build_snapshot, request_snapshot
from training.defaults import suggested_run_values
from training.models import Checkpoint, RunStatus, SamplingJob
from training.services import register_base_model, start_run, start_sampling

pytestmark = [pytest.mark.slow]

GENERATION = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "seed": 1}


def children_cpu(before: resource.struct_rusage) -> float:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


@pytest.mark.django_db
def test_a_trained_checkpoint_beats_its_parent_on_held_out_prompts(settings, tmp_path, tiny_model):
    started, cpu_started = time.monotonic(), time.process_time()
    children_started = resource.getrusage(resource.RUSAGE_CHILDREN)
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.PREFLAB_JUDGE_CALLABLE_MODULES = ["tests.evaluation.rules"]
    project = Project.objects.create(name="Evaluation loop", overlap=1)
    judge = add_judge(
        project, "lowercase", "programmatic",
        {"callable": "tests.evaluation.rules.prefer_more_lowercase"},
    )  # fmt: skip
    prompts = "\n".join(
        json.dumps({"prompt": f"Question {i}: write something."}) for i in range(140)
    )
    import_file(project, prompts.encode(), "prompts.jsonl", ImportKind.PROMPTS)
    held = hold_out_prompts(project, 30, seed=7)
    assert held.held_out == 42 and held.kept == 98
    base = register_base_model(project, str(tiny_model), "tiny-base")

    # Round 1: two samples of the base model per training prompt.
    job = start_sampling(project, base, generation=GENERATION)
    run_job("sampling_job", job.pk)
    job = SamplingJob.objects.get(id=job.pk)
    assert job.status == RunStatus.SUCCEEDED, job.error
    sampled = Comparison.objects.filter(round=job.round)
    assert not sampled.filter(prompt__split=PromptSplit.EVAL).exists()
    judging = run_judging(judge, scope="round", round=job.round)
    assert judging.status == JobStatus.SUCCEEDED, judging.error
    assert Vote.objects.filter(comparison__round=job.round, judge=judge).count() == (
        job.comparisons_created
    )

    # Train with the run form's defaults, fitted to the snapshot.
    snapshot = build_snapshot(request_snapshot(project, "every_vote").pk)
    assert snapshot.status == JobStatus.SUCCEEDED and snapshot.row_count > 50
    defaults = suggested_run_values(snapshot, base)
    run = start_run(snapshot, base, defaults)
    run_job("training_run", run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    final = Checkpoint.objects.get(run=run, is_final=True)

    # Evaluate against the parent (the default opponent) on the held-out prompts.
    evaluation = start_evaluation(project, final, generation=GENERATION, min_votes=30)
    assert list(evaluation.opponents.all()) == [base]
    run_job("evaluation", evaluation.pk)
    evaluation = Evaluation.objects.get(id=evaluation.pk)
    assert evaluation.status == JobStatus.SUCCEEDED, (evaluation.error, evaluation.traceback)
    assert evaluation.round.purpose == RoundPurpose.EVALUATION
    judged = Comparison.objects.filter(round=evaluation.round)
    assert judged.count() + evaluation.dropped_identical == 42
    assert not judged.exclude(prompt__split=PromptSplit.EVAL).exists()
    # the same seed per prompt for both models, recorded on their completions
    for comparison in judged[:5]:
        assert (
            comparison.completion_a.generation_params["seed"]
            == (comparison.completion_b.generation_params["seed"])
        )
    judging = run_judging(judge, scope="round", round=evaluation.round)
    assert judging.status == JobStatus.SUCCEEDED, judging.error

    results = get_results(evaluation)
    assert results["votes_by_source"] == {"judge": judged.count()}
    against_parent = results["opponents"][0]
    rate = against_parent["win_rate"]
    print(
        f"\nwin-rate {rate['estimate']:.3f} [{rate['ci_low']:.3f}, {rate['ci_high']:.3f}] "
        f"over {rate['n']} votes; LC {against_parent['length_controlled']}; "
        f"lengths {results['lengths']}; run config {run.config}; "
        f"wall {time.monotonic() - started:.0f} s, CPU {time.process_time() - cpu_started:.0f} s "
        f"in the test process + {children_cpu(children_started):.0f} s in engine processes"
    )
    assert rate["ci_low"] > 0.5, rate
    assert not results["provisional"]
    decision = apply_gate(evaluation)
    assert decision.decision == Decision.PROMOTED, decision.reasons
    assert promoted_checkpoint(project) == final
