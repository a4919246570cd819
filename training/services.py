"""Training runs and sampling rounds: queue, claim, execute through the engine, record.

Runs execute the engine as a child process (training.runner); this module only writes
configs, follows the metrics stream into the database and turns exit statuses into states.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from labeling.models import (
    Comparison,
    Completion,
    JobStatus,
    Project,
    Prompt,
    Round,
    Snapshot,
)
from labeling.snapshots import snapshot_file
from training.engine import EXIT_BAD_INPUT, EXIT_CANCELLED
from training.engine.config import ConfigError, DPOConfig, config_from_dict
from training.models import (
    Checkpoint,
    PairingMode,
    PromptSelection,
    RunMetric,
    RunStatus,
    SamplingJob,
    TrainingRun,
)
from training.runner import EngineProcess, MetricsFollower, engine_command, follow

logger = logging.getLogger(__name__)

# Keys the engine fills in from the run's rows; a user-supplied config may not set them.
_MANAGED_KEYS = {"data", "model", "reference_model", "out_dir", "metrics_file", "eval_data"}
HEARTBEAT_INTERVAL_SECONDS = 2.0
GENERATION_KEYS = ("temperature", "top_p", "max_new_tokens", "seed", "finish_reason")


class RunRefused(ValueError):
    """The run cannot start as asked; the message says why."""


def artifact_path(path: str) -> Path:
    """Checkpoint paths are stored relative to ARTIFACT_ROOT when they live under it."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(settings.ARTIFACT_ROOT) / candidate


def model_reference(checkpoint: Checkpoint) -> str:
    """What to pass to from_pretrained: a local directory if it exists, else the hub id."""
    local = artifact_path(checkpoint.path)
    return str(local) if local.exists() else checkpoint.path


def register_base_model(project: Project, path: str, name: str = "") -> Checkpoint:
    checkpoint, _ = Checkpoint.objects.get_or_create(
        project=project, path=path, defaults={"name": name or Path(path).name or path}
    )
    return checkpoint


def run_out_dir(run: TrainingRun) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "runs" / str(run.pk)


def validate_run_config(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Check hyperparameters with the engine's own validation before anything is queued."""
    managed = sorted(_MANAGED_KEYS & hyperparameters.keys())
    if managed:
        raise RunRefused(f"These keys are set by PrefLab, not by hand: {', '.join(managed)}.")
    placeholder = {"data": "-", "model": "-", "out_dir": "-", **hyperparameters}
    try:
        config_from_dict(DPOConfig, placeholder)
    except ConfigError as exc:
        raise RunRefused(str(exc)) from None
    return hyperparameters


def start_run(
    snapshot: Snapshot,
    start_checkpoint: Checkpoint,
    hyperparameters: dict[str, Any],
    reference_checkpoint: Checkpoint | None = None,
    created_by: User | None = None,
) -> TrainingRun:
    """Queue a training run; the train task is sent after the transaction commits."""
    if snapshot.status != JobStatus.READY:
        raise RunRefused(f"Snapshot {snapshot.pk} is {snapshot.status}; wait until it is ready.")
    if not snapshot.row_count:
        raise RunRefused(f"Snapshot {snapshot.pk} has no rows to train on.")
    for checkpoint in (start_checkpoint, reference_checkpoint):
        if checkpoint is not None and checkpoint.project_id != snapshot.project_id:
            raise RunRefused("Checkpoints must belong to the snapshot's project.")
    validate_run_config(hyperparameters)
    from workers.tasks import train_run

    with transaction.atomic():
        run = TrainingRun.objects.create(
            project_id=snapshot.project_id,
            snapshot=snapshot,
            start_checkpoint=start_checkpoint,
            reference_checkpoint=reference_checkpoint,
            config=hyperparameters,
            created_by=created_by,
        )
        run.out_dir = str(run_out_dir(run))
        run.save(update_fields=["out_dir"])
        transaction.on_commit(lambda: train_run.delay(run.pk))
    return run


def request_cancel(run: TrainingRun) -> bool:
    """Ask a run to stop. A queued run is cancelled at once; a running one at its next tick."""
    if TrainingRun.objects.filter(id=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    ):
        return True
    return bool(
        TrainingRun.objects.filter(id=run.pk, status=RunStatus.RUNNING).update(
            cancel_requested=True
        )
    )


def _engine_config(run: TrainingRun) -> dict[str, Any]:
    out_dir = Path(run.out_dir)
    config: dict[str, Any] = {
        **run.config,
        "data": str(snapshot_file(run.snapshot, "jsonl")),
        "model": model_reference(run.start_checkpoint),
        "out_dir": str(out_dir),
        "metrics_file": str(out_dir / "metrics.jsonl"),
    }
    if run.reference_checkpoint is not None:
        config["reference_model"] = model_reference(run.reference_checkpoint)
    return config


def _record_event(run: TrainingRun, event: dict[str, Any]) -> None:
    kind = event.get("event")
    if kind in {"train", "eval"}:
        step = int(event.get("step", 0))
        values = {k: v for k, v in event.items() if k not in {"event", "time"}}
        RunMetric.objects.update_or_create(
            run=run, split=kind, step=step, defaults={"values": values}
        )
        if kind == "train":
            updates: dict[str, Any] = {
                "latest_metrics": values,
                "step": step,
                "eta_seconds": event.get("eta_seconds"),
            }
            if event.get("total_steps"):
                updates["total_steps"] = int(event["total_steps"])
            TrainingRun.objects.filter(id=run.pk).update(**updates)
    elif kind == "start" and event.get("total_steps"):
        TrainingRun.objects.filter(id=run.pk).update(total_steps=int(event["total_steps"]))
    elif kind == "checkpoint" and event.get("path"):
        _register_checkpoint(run, event)
    elif kind == "done":
        summary_path = Path(str(event.get("summary", "")))
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else dict(event)
        TrainingRun.objects.filter(id=run.pk).update(summary=summary)
        if event.get("final_checkpoint"):
            final = {"path": event["final_checkpoint"], "step": event.get("step"), "final": True}
            _register_checkpoint(run, final)


def _register_checkpoint(run: TrainingRun, event: dict[str, Any]) -> Checkpoint:
    path = Path(str(event["path"]))
    try:
        stored = str(path.relative_to(settings.ARTIFACT_ROOT))
    except ValueError:
        stored = str(path)
    final = bool(event.get("final"))
    defaults: dict[str, Any] = {
        "run": run,
        "name": f"run {run.pk} step {event.get('step')}" + (" (final)" if final else ""),
        "step": event.get("step"),
        "metrics": TrainingRun.objects.filter(id=run.pk).values_list("latest_metrics", flat=True)[
            0
        ],
    }
    if final:
        defaults["is_final"] = True
    checkpoint, _ = Checkpoint.objects.update_or_create(
        project_id=run.project_id, path=stored, defaults=defaults
    )
    return checkpoint


def claim_run(run_id: int) -> TrainingRun | None:
    """queued -> running, or None when another worker owns the run or it is finished."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(id=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, error=""
    )
    if not claimed:
        return None
    return TrainingRun.objects.select_related(
        "snapshot", "start_checkpoint", "reference_checkpoint"
    ).get(id=run_id)


def execute_run(run_id: int, poll_interval: float = 1.0) -> TrainingRun | None:
    """Claim a queued run, train it in a child process, and record how it ended."""
    run = claim_run(run_id)
    if run is None:
        logger.info("run %s is not queued; another worker owns it or it has ended", run_id)
        return None
    TrainingRun.objects.filter(id=run.pk).update(attempts=run.attempts + 1)
    out_dir = Path(run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "run.json"
    config_path.write_text(json.dumps(_engine_config(run), indent=2))
    resume = any(out_dir.glob("checkpoint-*"))
    args = ["train", "--config", str(config_path)] + (["--resume"] if resume else [])
    engine = EngineProcess(engine_command(*args), out_dir / "engine.log")
    follower = MetricsFollower(out_dir / "metrics.jsonl")
    last_beat = 0.0

    def tick() -> bool:
        nonlocal last_beat
        for event in follower.read_new():
            _record_event(run, event)
        now = timezone.now()
        if now.timestamp() - last_beat >= HEARTBEAT_INTERVAL_SECONDS:
            last_beat = now.timestamp()
            TrainingRun.objects.filter(id=run.pk).update(
                heartbeat_at=now, log_tail=engine.log_tail()
            )
        return TrainingRun.objects.filter(id=run.pk, cancel_requested=True).exists()

    try:
        engine.start()
        code = follow(engine, tick, interval=poll_interval)
    except BaseException:
        engine.terminate()
        raise
    return _finish_run(run, code, engine.log_tail())


def _finish_run(run: TrainingRun, code: int, log_tail: str) -> TrainingRun:
    if code == 0:
        status, error = RunStatus.SUCCEEDED, ""
    elif code == EXIT_CANCELLED:
        status, error = RunStatus.CANCELLED, ""
    else:
        kind = "bad input" if code == EXIT_BAD_INPUT else f"exit status {code}"
        status, error = (
            RunStatus.FAILED,
            f"The engine stopped with {kind}.\n{_last_error(log_tail)}",
        )
    TrainingRun.objects.filter(id=run.pk, status=RunStatus.RUNNING).update(
        status=status,
        error=error,
        log_tail=log_tail,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    run.refresh_from_db()
    logger.info("run %s ended %s (exit %s)", run.pk, run.status, code)
    return run


def _last_error(log_tail: str) -> str:
    lines = [line for line in log_tail.strip().splitlines() if line.strip()]
    return "\n".join(lines[-8:])


def recover_lost_runs(now: Any = None) -> list[tuple[int, str]]:
    """Find running runs whose heartbeat stopped; resume them from their last checkpoint or
    mark them failed, as PREFLAB_LOST_RUN_POLICY says. Returns (run id, new status) pairs."""
    from workers.tasks import train_run

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PREFLAB_HEARTBEAT_TIMEOUT_SECONDS)
    outcomes: list[tuple[int, str]] = []
    status: str
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    for run in stale:
        resumable = (
            settings.PREFLAB_LOST_RUN_POLICY == "resume"
            and not run.cancel_requested
            and run.attempts < settings.PREFLAB_MAX_RUN_ATTEMPTS
        )
        seen = run.heartbeat_at.isoformat() if run.heartbeat_at else "never"
        if resumable:
            with transaction.atomic():
                moved = TrainingRun.objects.filter(
                    id=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at
                ).update(
                    status=RunStatus.QUEUED,
                    error=f"Worker lost (last heartbeat {seen}); resuming.",
                )
                if moved:
                    transaction.on_commit(partial(train_run.delay, run.pk))
                    outcomes.append((run.pk, RunStatus.QUEUED))
        else:
            status = RunStatus.CANCELLED if run.cancel_requested else RunStatus.FAILED
            moved = TrainingRun.objects.filter(
                id=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(
                status=status,
                error=f"Worker lost: no heartbeat since {seen}.",
                finished_at=now,
            )
            if moved:
                outcomes.append((run.pk, status))
    for run_id, outcome in outcomes:
        logger.warning("run %s had a stale heartbeat; now %s", run_id, outcome)
    return outcomes


def fail_lost_sampling_jobs(now: Any = None) -> list[int]:
    """Mark sampling jobs whose heartbeat stopped as failed; there is nothing to resume from,
    and nothing of them was written (a round is created in one transaction at the end)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PREFLAB_HEARTBEAT_TIMEOUT_SECONDS)
    stale = list(
        SamplingJob.objects.filter(status=RunStatus.RUNNING)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
        .values_list("id", "heartbeat_at")
    )
    failed = []
    for job_id, heartbeat_at in stale:
        seen = heartbeat_at.isoformat() if heartbeat_at else "never"
        if SamplingJob.objects.filter(
            id=job_id, status=RunStatus.RUNNING, heartbeat_at=heartbeat_at
        ).update(
            status=RunStatus.FAILED,
            error=f"Worker lost: no heartbeat since {seen}. Start the sampling again.",
            finished_at=now,
        ):
            failed.append(job_id)
            logger.warning("sampling job %s had a stale heartbeat; now failed", job_id)
    return failed


# --- sampling -----------------------------------------------------------------------------


def start_sampling(
    project: Project,
    checkpoint: Checkpoint,
    *,
    pairing: str = PairingMode.TWO_SAMPLES,
    selection: str = PromptSelection.ALL,
    prompt_limit: int | None = None,
    generation: dict[str, Any] | None = None,
    previous_checkpoint: Checkpoint | None = None,
    created_by: User | None = None,
) -> SamplingJob:
    if pairing == PairingMode.VERSUS_PREVIOUS and previous_checkpoint is None:
        raise RunRefused("Pairing against the previous checkpoint needs a previous checkpoint.")
    if selection != PromptSelection.ALL and not prompt_limit:
        raise RunRefused("Say how many prompts to sample.")
    if not project.prompts.exists():
        raise RunRefused("The project has no prompts to sample.")
    from workers.tasks import sample_round

    with transaction.atomic():
        job = SamplingJob.objects.create(
            project=project,
            checkpoint=checkpoint,
            previous_checkpoint=previous_checkpoint,
            pairing=pairing,
            selection=selection,
            prompt_limit=prompt_limit,
            generation=generation or {},
            created_by=created_by,
        )
        transaction.on_commit(lambda: sample_round.delay(job.pk))
    return job


def select_prompts(job: SamplingJob) -> list[Prompt]:
    prompts = Prompt.objects.filter(project=job.project).order_by("id")
    if job.selection == PromptSelection.FEWEST_VOTES:
        prompts = prompts.annotate(votes=Count("comparisons__votes")).order_by("votes", "id")
        return list(prompts[: job.prompt_limit])
    if job.selection == PromptSelection.RANDOM:
        ids = list(prompts.values_list("id", flat=True))
        seed = int(job.generation.get("seed", 0))
        chosen = sorted(random.Random(seed).sample(ids, min(job.prompt_limit or 0, len(ids))))
        return list(Prompt.objects.filter(id__in=chosen).order_by("id"))
    return list(prompts)


def _sample(
    model: Checkpoint, prompts_path: Path, out_path: Path, samples: int, job: SamplingJob,
    on_tick: Callable[[], bool],
) -> list[dict[str, Any]]:  # fmt: skip
    generation = job.generation
    args = [
        "sample", "--model", model_reference(model), "--prompts", str(prompts_path),
        "--out", str(out_path), "--num-samples", str(samples),
        "--temperature", str(generation.get("temperature", 1.0)),
        "--top-p", str(generation.get("top_p", 1.0)),
        "--max-new-tokens", str(generation.get("max_new_tokens", 128)),
        "--seed", str(generation.get("seed", 0)),
    ]  # fmt: skip
    engine = EngineProcess(engine_command(*args), out_path.with_suffix(".log"))
    engine.start()
    code = follow(engine, on_tick)
    if code != 0:
        raise RuntimeError(f"sampling exited with status {code}:\n{_last_error(engine.log_tail())}")
    with out_path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def execute_sampling(job_id: int) -> SamplingJob | None:
    """Claim a queued sampling job, generate, and open the new round in one transaction."""
    now = timezone.now()
    if not SamplingJob.objects.filter(id=job_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
    ):
        return None
    job = SamplingJob.objects.select_related("project", "checkpoint", "previous_checkpoint").get(
        id=job_id
    )
    work_dir = Path(settings.ARTIFACT_ROOT) / "sampling" / str(job.pk)
    work_dir.mkdir(parents=True, exist_ok=True)

    def tick() -> bool:
        SamplingJob.objects.filter(id=job.pk).update(heartbeat_at=timezone.now())
        return False

    try:
        prompts = select_prompts(job)
        prompts_path = work_dir / "prompts.jsonl"
        with prompts_path.open("w", encoding="utf-8") as handle:
            for prompt in prompts:
                content: Any = prompt.messages if prompt.is_chat else prompt.text
                handle.write(json.dumps({"id": prompt.id, "prompt": content}) + "\n")
        if job.pairing == PairingMode.TWO_SAMPLES:
            rows = _sample(job.checkpoint, prompts_path, work_dir / "new.jsonl", 2, job, tick)
            sides = [(job.checkpoint, rows[0::2]), (job.checkpoint, rows[1::2])]
        else:
            assert job.previous_checkpoint is not None
            new = _sample(job.checkpoint, prompts_path, work_dir / "new.jsonl", 1, job, tick)
            old = _sample(
                job.previous_checkpoint, prompts_path, work_dir / "old.jsonl", 1, job, tick
            )
            sides = [(job.checkpoint, new), (job.previous_checkpoint, old)]
        created, dropped, round_ = _open_round(job, prompts, sides)
    except Exception as exc:
        SamplingJob.objects.filter(id=job.pk).update(
            status=RunStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        logger.exception("sampling job %s failed", job.pk)
        raise
    SamplingJob.objects.filter(id=job.pk).update(
        status=RunStatus.SUCCEEDED,
        round=round_,
        comparisons_created=created,
        dropped_identical=dropped,
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


_CONTROL_CHARACTERS = dict.fromkeys(c for c in range(32) if chr(c) not in "\t\n\r")


def clean_model_output(text: str) -> str:
    """Model output is untrusted: drop NUL and other control characters before storing it."""
    return text.translate(_CONTROL_CHARACTERS)


def _open_round(
    job: SamplingJob,
    prompts: list[Prompt],
    sides: list[tuple[Checkpoint, list[dict[str, Any]]]],
) -> tuple[int, int, Round | None]:
    by_id = {prompt.id: prompt for prompt in prompts}
    (model_a, rows_a), (model_b, rows_b) = sides
    rows_b_by_prompt = {row["id"]: row for row in rows_b}
    pairs = []
    dropped = 0
    for row_a in rows_a:
        row_b = rows_b_by_prompt.get(row_a["id"])
        if row_b is None:
            continue
        for row in (row_a, row_b):
            row["completion"] = clean_model_output(row["completion"])
        if row_a["completion"].strip() == row_b["completion"].strip() or not (
            row_a["completion"].strip() and row_b["completion"].strip()
        ):
            dropped += 1
            continue
        pairs.append((by_id[row_a["id"]], row_a, row_b))
    if not pairs:
        return 0, dropped, None
    project = job.project
    with transaction.atomic():
        latest = project.rounds.order_by("-number").values_list("number", flat=True).first() or 0
        round_ = Round.objects.create(
            project=project,
            number=latest + 1,
            source=f"sampling job {job.pk}: {job.checkpoint.name}",
            checkpoint=job.checkpoint,
        )
        comparisons = []
        for prompt, row_a, row_b in pairs:
            completion_a, completion_b = (
                Completion.objects.create(
                    prompt=prompt,
                    text=row["completion"],
                    model_name=checkpoint.name,
                    checkpoint=checkpoint,
                    generation_params={
                        key: row.get(key)
                        for key in (
                            "temperature",
                            "top_p",
                            "max_new_tokens",
                            "seed",
                            "finish_reason",
                        )
                    },
                )
                for checkpoint, row in ((model_a, row_a), (model_b, row_b))
            )
            comparisons.append(
                Comparison(
                    project=project,
                    round=round_,
                    prompt=prompt,
                    completion_a=completion_a,
                    completion_b=completion_b,
                    votes_target=project.overlap,
                )
            )
        Comparison.objects.bulk_create(comparisons)
    return len(comparisons), dropped, round_
