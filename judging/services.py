"""Judging: run a judge over comparisons in both orders and store what it concluded.

Public interface (docs/judges.md):
- add_judge(project, name, kind, config, created_by) -> Judge
- update_judge(judge, config=..., enabled=...) -> Judge (a config change raises its version)
- start_judging(judge, scope=..., round=..., created_by=...) -> JudgingJob, enqueued on commit
- judge_comparisons(job_id) -> JudgingJob: runs a queued job here and now, through the job
  wrapper (what the worker's task does; tests call it directly)
- run_judging(judge, comparisons) -> JudgingJob: queue and run at once, for scripts and tests
- request_cancel(job)

A comparison is asked in both orders (A first, then B first). Both verdicts are mapped back to
the comparison's A and B: when they agree, the verdict is stored as a Vote(source=judge) with
both raw outputs; when they disagree the result is "inconsistent", when either answer named
no side "unparseable", when a call failed "error"; none of those makes a vote. Judge votes
never touch Comparison.vote_count, so they never take a human's overlap slot.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from core.jobs import JobKind, Recovery, enqueue, run_job
from core.models import JobStatus
from judging.kinds import FIRST, SECOND, TIE, TIME_LIMIT, Kind, Pair, Verdict, build, clean_config
from judging.models import JudgeKindName, JudgeResult, JudgingJob, JudgingScope, Outcome
from judging.routing import update_routing
from labeling.models import Choice, Comparison, Judge, Project, Round, Side, Vote, VoteSource
from labeling.quality.jobs import request_quality_report

logger = logging.getLogger(__name__)

JUDGING_JOB = "judging_job"
JUDGE_TASK = "workers.tasks.judge_comparisons"
# The same task routed to the gpu queue (CELERY_TASK_ROUTES): reward-model judges start there.
# The watchdog re-sends a lost job through JUDGE_TASK (the job kind has one task), so a
# reward-model job resumed after a lost worker may run on a CPU worker.
JUDGE_GPU_TASK = "workers.tasks.judge_comparisons_gpu"
_BATCH = 32  # comparisons per round trip to the kind (64 ordered pairs)
_IN_AB = {FIRST: Choice.A, SECOND: Choice.B, TIE: Choice.TIE}
_IN_BA = {FIRST: Choice.B, SECOND: Choice.A, TIE: Choice.TIE}


class JudgingRefused(ValueError):
    """The judging cannot start as asked; the message says why."""


class JudgingTimeLimit(RuntimeError):
    """The job ran past PREFLAB_JUDGE_JOB_SECONDS; what was judged so far is kept."""


# --- judges -------------------------------------------------------------------------------


def add_judge(
    project: Project, name: str, kind: str, config: dict[str, Any], created_by: Any = None
) -> Judge:
    """A new judge; its config is validated (ValueError naming the key) and stored cleaned."""
    name = name.strip()
    if not name:
        raise JudgingRefused("A judge needs a name.")
    if kind not in JudgeKindName.values:
        raise JudgingRefused(f"Unknown judge kind {kind!r}; use {', '.join(JudgeKindName.values)}.")
    cleaned = clean_config(kind, config)
    with transaction.atomic():
        if Judge.objects.filter(project=project, name=name).exists():
            raise JudgingRefused(f"This project already has a judge named {name!r}.")
        return Judge.objects.create(
            project=project, name=name, kind=kind, config=cleaned, created_by=created_by
        )


def update_judge(
    judge: Judge, *, config: dict[str, Any] | None = None, enabled: bool | None = None
) -> Judge:
    """Change a judge; a new config raises its version (older votes keep theirs)."""
    with transaction.atomic():
        judge = Judge.objects.select_for_update().get(pk=judge.pk)
        if config is not None:
            cleaned = clean_config(judge.kind, config)
            if cleaned != judge.config:
                judge.config = cleaned
                judge.version += 1
        if enabled is not None:
            judge.enabled = enabled
        judge.save()
        # Routing counts enabled judges at their current version only.
        update_routing(
            JudgeResult.objects.filter(judge=judge)
            .values_list("comparison_id", flat=True)
            .distinct()
        )
    return judge


def public_config(judge: Judge) -> dict[str, Any]:
    """What may be shown of a judge's config: everything but secrets. The config never holds
    an API key (only the name of the variable that does), so this is the config itself;
    kept as one function so every page and the API show the same thing."""
    return dict(judge.config)


# --- jobs ---------------------------------------------------------------------------------


def scope_comparisons(project: Project, scope: str, round_: Round | None) -> QuerySet[Comparison]:
    comparisons = Comparison.objects.filter(project=project)
    if scope == JudgingScope.ROUND:
        if round_ is None:
            raise JudgingRefused("Judging a round needs the round.")
        return comparisons.filter(round=round_)
    if scope == JudgingScope.NEEDS_VOTES:
        return comparisons.filter(vote_count__lt=F("votes_target"))
    raise JudgingRefused(f"Unknown scope {scope!r}; use {', '.join(JudgingScope.values)}.")


def request_judging(
    judge: Judge,
    *,
    scope: str = JudgingScope.NEEDS_VOTES,
    round: Round | None = None,
    created_by: Any = None,
) -> JudgingJob:
    """A queued job row (the caller enqueues it after commit)."""
    if not judge.enabled:
        raise JudgingRefused(f"Judge {judge.name!r} is disabled.")
    if round is not None and round.project_id != judge.project_id:
        raise JudgingRefused("That round belongs to another project.")
    running = JudgingJob.objects.filter(
        judge=judge, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).first()
    if running is not None:
        raise JudgingRefused(
            f"Judge {judge.name!r} already has judging job {running.pk} {running.status}; "
            "wait for it or cancel it."
        )
    if scope == JudgingScope.NEEDS_VOTES:
        round = None
    total = scope_comparisons(judge.project, scope, round).count()
    return JudgingJob.objects.create(
        project_id=judge.project_id,
        judge=judge,
        judge_version=judge.version,
        scope=scope,
        round=round,
        total=total,
        created_by=created_by,
    )


def start_judging(
    judge: Judge,
    *,
    scope: str = JudgingScope.NEEDS_VOTES,
    round: Round | None = None,
    created_by: Any = None,
) -> JudgingJob:
    """Queue a judging job and send its task once the row is committed."""
    task = JUDGE_GPU_TASK if judge.kind == JudgeKindName.REWARD_MODEL else JUDGE_TASK
    with transaction.atomic():
        job = request_judging(judge, scope=scope, round=round, created_by=created_by)
        enqueue(task, job.pk)
    return job


def request_cancel(job: JudgingJob) -> JudgingJob:
    """Ask a job to stop: a queued one is cancelled at once, a running one after its batch."""
    with transaction.atomic():
        JudgingJob.objects.filter(
            pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).update(cancel_requested=True)
        JudgingJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
    job.refresh_from_db()
    return job


def judge_comparisons(job_id: int) -> JudgingJob | None:
    """Run a queued judging job in this process through the job wrapper; returns the row as
    it ended (None if it was not queued)."""
    return run_job(JUDGING_JOB, job_id)  # type: ignore[return-value]


def run_judging(
    judge: Judge,
    *,
    scope: str = JudgingScope.NEEDS_VOTES,
    round: Round | None = None,
    created_by: Any = None,
) -> JudgingJob:
    """Create a job and run it here at once (no worker): for scripts, benches and tests."""
    job = request_judging(judge, scope=scope, round=round, created_by=created_by)
    ended = judge_comparisons(job.pk)
    if ended is None:  # another process claimed the row we created a moment ago
        job.refresh_from_db()
        return job
    return ended


# --- the work -----------------------------------------------------------------------------


def prompt_text(comparison: Comparison) -> str:
    """A prompt as plain text: a chat's messages as "role: content" lines."""
    prompt = comparison.prompt
    if prompt.messages:
        return "\n\n".join(
            f"{message.get('role', 'user')}: {message.get('content', '')}"
            for message in prompt.messages
        )
    return prompt.text


def pairs_of(comparison: Comparison) -> tuple[Pair, Pair]:
    """The comparison in both orders: (A first, B first)."""
    prompt = prompt_text(comparison)
    guidelines = comparison.project.guidelines
    metadata = dict(comparison.prompt.metadata or {})
    a, b = comparison.completion_a.text, comparison.completion_b.text
    return (
        Pair(prompt, a, b, guidelines, metadata),
        Pair(prompt, b, a, guidelines, metadata),
    )


@dataclass(frozen=True)
class Combined:
    outcome: str
    choice: str
    choice_ab: str
    choice_ba: str
    margin: float | None
    error: str


def combine(ab: Verdict, ba: Verdict, kind: str) -> Combined:
    """Both orders' verdicts in the comparison's terms, and what they add up to."""
    choice_ab = _IN_AB[ab.winner] if ab.winner and not ab.error else ""
    choice_ba = _IN_BA[ba.winner] if ba.winner and not ba.error else ""
    margin = None
    if ab.score is not None and ba.score is not None:
        # ab.score prefers A; ba.score prefers B (shown first there).
        preference = (ab.score - ba.score) / 2
        margin = (
            min(1.0, abs(preference))
            if kind == JudgeKindName.PROGRAMMATIC
            else abs(math.tanh(preference / 2))  # |2 sigmoid(d) - 1|, a BT win probability
        )
    if ab.error or ba.error:
        error = "; ".join(
            f"{order}: {v.error}" for order, v in (("A/B", ab), ("B/A", ba)) if v.error
        )
        return Combined(Outcome.ERROR, "", choice_ab, choice_ba, margin, error)
    if not choice_ab or not choice_ba:
        return Combined(Outcome.UNPARSEABLE, "", choice_ab, choice_ba, margin, "")
    if choice_ab != choice_ba:
        return Combined(Outcome.INCONSISTENT, "", choice_ab, choice_ba, margin, "")
    return Combined(Outcome.CONSISTENT, choice_ab, choice_ab, choice_ba, margin, "")


def _store(
    job: JudgingJob,
    judge: Judge,
    comparison: Comparison,
    ab: Verdict,
    ba: Verdict,
    seconds: float,
) -> str:
    combined = combine(ab, ba, judge.kind)
    JudgeResult.objects.create(
        comparison=comparison,
        judge=judge,
        judge_version=job.judge_version,
        job=job,
        outcome=combined.outcome,
        choice=combined.choice,
        choice_ab=combined.choice_ab,
        choice_ba=combined.choice_ba,
        output_ab=ab.raw,
        output_ba=ba.raw,
        margin=combined.margin,
        error=combined.error[:2000],
        calls=ab.calls + ba.calls,
        tokens=ab.tokens + ba.tokens,
        seconds=seconds,
    )
    # A new verdict of this judge replaces its older vote, whatever the outcome now.
    Vote.objects.filter(comparison=comparison, judge=judge).delete()
    if combined.outcome == Outcome.CONSISTENT:
        decisive = combined.choice in (Choice.A, Choice.B)
        chosen = rejected = None
        if decisive:
            a, b = comparison.completion_a_id, comparison.completion_b_id
            chosen, rejected = (a, b) if combined.choice == Choice.A else (b, a)
        # No vote_count change: a judge vote never takes a human's overlap slot.
        Vote.objects.create(
            comparison=comparison,
            annotator=None,
            source=VoteSource.JUDGE,
            judge=judge,
            judge_version=job.judge_version,
            choice=combined.choice,
            chosen_id=chosen,
            rejected_id=rejected,
            left_side=Side.A,
            judge_output={
                "ab": ab.raw,
                "ba": ba.raw,
                "margin": combined.margin,
            },
        )
    return combined.outcome


def _cancelled(job: JudgingJob) -> bool:
    return bool(
        JudgingJob.objects.filter(pk=job.pk).values_list("cancel_requested", flat=True).first()
    )


def _time_limit_message() -> str:
    return (
        f"The job ran past PREFLAB_JUDGE_JOB_SECONDS ({settings.PREFLAB_JUDGE_JOB_SECONDS}s); "
        "what was judged is kept, start the job again to judge the rest."
    )


def _batches(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _execute(claimed: JudgingJob) -> None:
    job = JudgingJob.objects.select_related("judge", "project", "round").get(pk=claimed.pk)
    judge = job.judge
    if not judge.enabled:
        raise JudgingRefused(f"Judge {judge.name!r} was disabled after this job was queued.")
    if judge.version != job.judge_version:
        raise JudgingRefused(
            f"Judge {judge.name!r} changed (version {job.judge_version} -> {judge.version}) "
            "since this job was queued; start a new job."
        )
    scope = scope_comparisons(job.project, job.scope, job.round)
    already = JudgeResult.objects.filter(judge=judge, judge_version=job.judge_version)
    # Ids first, texts a batch at a time: memory stays flat however large the scope.
    todo = list(
        scope.exclude(id__in=already.values("comparison_id"))
        .order_by("id")
        .values_list("id", flat=True)
    )
    total = len(todo) + scope.filter(id__in=already.values("comparison_id")).count()
    JudgingJob.objects.filter(pk=job.pk).update(total=total, done=total - len(todo))
    deadline = time.monotonic() + settings.PREFLAB_JUDGE_JOB_SECONDS
    kind: Kind = build(judge)
    started = time.monotonic()
    try:
        for batch_ids in _batches(todo, _BATCH):
            if _cancelled(job):
                _end_cancelled(claimed)
                return
            if time.monotonic() >= deadline:
                raise JudgingTimeLimit(_time_limit_message())
            batch = list(
                Comparison.objects.filter(id__in=batch_ids)
                .select_related("prompt", "completion_a", "completion_b", "project")
                .order_by("id")
            )
            pairs = [pair for comparison in batch for pair in pairs_of(comparison)]
            t0 = time.monotonic()
            verdicts = kind.judge(pairs, deadline)
            elapsed = time.monotonic() - t0
            counts = dict.fromkeys(Outcome.values, 0)
            calls = tokens = stored = 0
            out_of_time = False
            with transaction.atomic():
                for index, comparison in enumerate(batch):
                    ab, ba = verdicts[2 * index], verdicts[2 * index + 1]
                    if TIME_LIMIT in (ab.error, ba.error):
                        out_of_time = True  # left unjudged: a rerun takes it up
                        calls += ab.calls + ba.calls
                        continue
                    outcome = _store(job, judge, comparison, ab, ba, elapsed / len(batch))
                    counts[outcome] += 1
                    calls += ab.calls + ba.calls
                    tokens += ab.tokens + ba.tokens
                    stored += 1
                update_routing([comparison.pk for comparison in batch])
                JudgingJob.objects.filter(pk=job.pk).update(
                    done=F("done") + stored,
                    consistent=F("consistent") + counts[Outcome.CONSISTENT],
                    inconsistent=F("inconsistent") + counts[Outcome.INCONSISTENT],
                    unparseable=F("unparseable") + counts[Outcome.UNPARSEABLE],
                    errors=F("errors") + counts[Outcome.ERROR],
                    calls=F("calls") + calls,
                    tokens=F("tokens") + tokens,
                    seconds=F("seconds") + elapsed,
                )
            if out_of_time:
                raise JudgingTimeLimit(_time_limit_message())
    finally:
        kind.close()
    # The quality figures cache the judges' agreement; their recompute follows human votes
    # only, so a judging job asks for one itself.
    request_quality_report(job.project)
    logger.info(
        "judging job %s (judge %s) judged %s comparisons in %.1fs",
        job.pk,
        judge.pk,
        len(todo),
        time.monotonic() - started,
    )


def _end_cancelled(claimed: JudgingJob) -> None:
    JudgingJob.objects.filter(
        pk=claimed.pk, status=JobStatus.RUNNING, worker=claimed.worker
    ).update(status=JobStatus.CANCELLED, finished_at=timezone.now())
    logger.info("judging job %s cancelled", claimed.pk)


def judging_job_kind() -> JobKind:
    """Registered by JudgingConfig.ready(): a lost job is resumed; every judged comparison
    is stored as it finishes, so the rerun judges only what is left."""
    return JobKind(
        name=JUDGING_JOB,
        model=JudgingJob,
        task_name=JUDGE_TASK,
        execute=_execute,
        recovery=Recovery.RESUME,
        may_retry=lambda job: job.attempts < settings.PREFLAB_MAX_RUN_ATTEMPTS,
        lost_hint="Start the judging again; comparisons already judged are kept.",
    )
