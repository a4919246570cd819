"""Training runs and sampling rounds: queue, claim, execute through the engine, record.

Runs execute the engine as a child process (training.runner); this module only writes
configs, follows the metrics stream into the database and turns exit statuses into states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import OuterRef
from django.utils import timezone

from core.artifacts import get_store, is_key, stage
from core.jobs import JobKind, Recovery, enqueue, get_kind, queue_again, run_job
from labeling.models import (
    RANKING_K_RANGE,
    Comparison,
    Completion,
    JobStatus,
    Judge,
    Project,
    Prompt,
    PromptSplit,
    Ranking,
    Round,
    Snapshot,
    SnapshotPolicy,
    Vote,
)
from labeling.ranking_snapshots import is_listwise
from labeling.rankings import TaskSpec, create_ranking_tasks
from labeling.services import count_of
from labeling.snapshots import snapshot_file
from training.engine import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_DIVERGED
from training.engine.config import (
    WORKER_MANAGED_KEYS,
    ConfigError,
    DPOConfig,
    config_from_dict,
)
from training.models import (
    Checkpoint,
    PairingMode,
    PromptSelection,
    RunMetric,
    RunStatus,
    SamplingJob,
    TrainingRun,
)
from training.pairing import (
    BEST_WORST_DEFAULT_K,
    BEST_WORST_K_RANGE,
    Candidates,
    best_worst_selector,
)
from training.params import (
    RUN_PARAMS_BY_NAME,
    ParamError,
    check_loss_for_data,
    check_prompt_limit,
    check_run_params,
    check_sampling_params,
    check_saves_for_steps,
)
from training.runner import EngineProcess, MetricsFollower, engine_command, follow

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 1.0
LOG_TAIL_SECONDS = 2.0
TRAINING_JOB = "training_run"
SAMPLING_JOB = "sampling_job"
TRAIN_TASK = "workers.tasks.train_run"
SAMPLE_TASK = "workers.tasks.sample_round"
GENERATION_KEYS = ("temperature", "top_p", "max_new_tokens", "seed", "finish_reason")
# engine config keys only the worker sets (paths, the reference cache); never from run.config
_MANAGED_KEYS = WORKER_MANAGED_KEYS | {"trust_remote_code"}
REFERENCE_CACHE_PREFIX = "refcache"
REFERENCE_CACHE_ENTRIES = "reference-*.safetensors"  # training.engine.refcache's file names


class SamplingFailed(RuntimeError):
    """The sampling engine process did not exit cleanly; the message says how it ended."""


class RunRefused(ValueError):
    """The run cannot start as asked; the message says why, ``key`` names the parameter."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


def model_reference(checkpoint: Checkpoint) -> str:
    """What to pass to from_pretrained.

    A checkpoint in the artifact store (a run's, under a key like runs/12/checkpoint-000040)
    is staged to a local directory: on the local store the artifact itself, on S3 a copy in
    the worker's cache. Anything else (a base model's absolute directory, a hub id) is passed
    as it was given.
    """
    path = checkpoint.path
    if checkpoint.run_id is not None or (is_key(path) and get_store().exists(path)):
        return str(stage(path))
    return path


def register_base_model(project: Project, path: str, name: str = "") -> Checkpoint:
    checkpoint, _ = Checkpoint.objects.get_or_create(
        project=project, path=path, defaults={"name": name or Path(path).name or path}
    )
    return checkpoint


def run_key(run: TrainingRun) -> str:
    """The artifact store key under which a run's checkpoints are published: runs/<id>."""
    return f"runs/{run.pk}"


def run_out_dir(run: TrainingRun) -> Path:
    """The engine's out_dir on this worker: the run's directory in the local store (so
    publishing a checkpoint costs nothing), or a worker-local directory with S3."""
    return get_store().work_dir(run.out_dir or run_key(run))


def validate_run_config(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Check hyperparameters against what a user may set (training.params), then with the
    engine's own validation, before anything is queued. Returns every parameter, with the
    defaults filled in: the config the run is stored and trained with."""
    try:
        checked = check_run_params(hyperparameters)
    except ParamError as exc:
        raise RunRefused(str(exc), key=exc.key) from None
    placeholder = {"data": "-", "model": "-", "out_dir": "-", **checked}
    if placeholder["processes"] is None:  # the worker's count (run_processes)
        placeholder["processes"] = max(1, settings.PREFLAB_TRAIN_PROCESSES)
    try:
        config_from_dict(DPOConfig, placeholder)
    except ConfigError as exc:
        # The engine's messages start with the setting's name ("beta: must be positive").
        key = str(exc).split(":", 1)[0]
        raise RunRefused(str(exc), key=key if key in RUN_PARAMS_BY_NAME else None) from None
    return checked


def check_loss_for_snapshot(snapshot: Snapshot, loss_type: str | list[str]) -> None:
    """plackett_luce on a listwise snapshot (rankings, ranking_consensus), pair losses on any
    other; ParamError names loss_type. The engine reads a listwise snapshot's data.jsonl as it
    is (training.engine.listwise: prompt, responses, ranking)."""
    listwise = is_listwise(snapshot.policy)
    kind = f"snapshot {snapshot.pk} ({snapshot.policy})"
    check_loss_for_data(loss_type, listwise, kind[0].upper() + kind[1:])


def estimated_total_steps(config: dict[str, Any], pairs: int) -> int:
    """Optimizer steps a run of this config takes on a snapshot of this many pairs."""
    if config.get("max_steps"):
        return int(config["max_steps"])
    train_pairs = max(1, pairs - int(pairs * config["eval_fraction"]))
    return math.ceil(train_pairs / config["batch_size"]) * config["epochs"]


def start_run(
    snapshot: Snapshot,
    start_checkpoint: Checkpoint,
    hyperparameters: dict[str, Any],
    reference_checkpoint: Checkpoint | None = None,
    created_by: User | None = None,
) -> TrainingRun:
    """Queue a training run; the train task is sent after the transaction commits."""
    if snapshot.status != JobStatus.SUCCEEDED:
        raise RunRefused(f"Snapshot {snapshot.pk} is {snapshot.status}; wait until it is ready.")
    if snapshot.policy == SnapshotPolicy.RAW_VOTES:
        raise RunRefused(
            f"Snapshot {snapshot.pk} is a raw_votes export (every vote, for analysis), not "
            "preference triples: export one with another policy to train."
        )
    if not snapshot.row_count:
        raise RunRefused(f"Snapshot {snapshot.pk} has no rows to train on.")
    for checkpoint in (start_checkpoint, reference_checkpoint):
        if checkpoint is not None and checkpoint.project_id != snapshot.project_id:
            raise RunRefused("Checkpoints must belong to the snapshot's project.")
    config = validate_run_config(hyperparameters)
    try:
        check_loss_for_snapshot(snapshot, config["loss_type"])
        check_saves_for_steps(config, estimated_total_steps(config, snapshot.row_count))
    except ParamError as exc:
        raise RunRefused(str(exc), key=exc.key) from None
    if config["reference_free"] and reference_checkpoint is not None:
        raise RunRefused(
            "reference_free: a reference-free run takes no reference checkpoint",
            key="reference_free",
        )
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project_id=snapshot.project_id,
            snapshot=snapshot,
            start_checkpoint=start_checkpoint,
            reference_checkpoint=reference_checkpoint,
            config=config,
            created_by=created_by,
        )
        run.out_dir = run_key(run)
        run.save(update_fields=["out_dir"])
        enqueue(TRAIN_TASK, run.pk)
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


def reference_cache_key(run: TrainingRun) -> str:
    """The artifact store key of the reference log-prob cache for the run's snapshot:
    refcache/<the snapshot's data.jsonl SHA-256>.

    Every entry the engine writes there (``reference-<key>.safetensors``, training.engine.
    refcache) is for that data file; the engine's own key also covers the reference weights,
    the tokenizer and the length settings, so runs on the same snapshot with another reference
    keep apart entries in the same directory, and a worker fetches only its snapshot's entries.
    """
    digest = run.snapshot.sha256
    if not digest:  # a snapshot built before its hash was recorded
        sha = hashlib.sha256()
        with snapshot_file(run.snapshot, "jsonl").open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                sha.update(block)
        digest = sha.hexdigest()
    return f"{REFERENCE_CACHE_PREFIX}/{digest}"


def reference_cache_dir(run: TrainingRun) -> Path:
    """The engine's reference_cache_dir: the store's own directory when it is local (shared by
    every run and worker of this machine, nothing to copy), else this worker's persistent copy
    under PREFLAB_WORK_DIR, which _stage_reference_cache fills and _publish_reference_cache
    uploads from."""
    return get_store().work_dir(reference_cache_key(run))


def _stage_reference_cache(run: TrainingRun, cache_dir: Path) -> set[str]:
    """S3: copy the snapshot's cache entries from the store into cache_dir (entries already
    there are kept) and return the names the store holds. A failure costs only a recomputed
    reference pass, so it is logged, not raised."""
    store = get_store()
    if store.is_local:
        return set()
    key = reference_cache_key(run)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".staging-", suffix=".tmp", dir=cache_dir))
    names: set[str] = set()
    try:
        if store.exists(key):
            store.fetch(key, temp / "entries")
            for path in (temp / "entries").glob(REFERENCE_CACHE_ENTRIES):
                names.add(path.name)
                if not (cache_dir / path.name).exists():
                    os.replace(path, cache_dir / path.name)  # atomic: readers see whole files
    except Exception:
        logger.warning("run %s: could not stage the reference cache %s", run.pk, key, exc_info=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    if names:
        logger.info("run %s: staged %d reference cache entries of %s", run.pk, len(names), key)
    return names


def _publish_reference_cache(run: TrainingRun, cache_dir: Path, in_store: set[str]) -> None:
    """S3: upload the entries of cache_dir that the store does not hold yet. An existing key is
    never overwritten (a conditional PUT; a concurrent writer of the same key wrote the same
    bytes)."""
    store = get_store()
    if store.is_local or not cache_dir.is_dir():
        return
    key = reference_cache_key(run)
    for path in sorted(cache_dir.glob(REFERENCE_CACHE_ENTRIES)):
        if path.name in in_store:
            continue
        try:
            store.publish(path, f"{key}/{path.name}", immutable=True)
        except FileExistsError:
            continue
        except Exception:
            logger.warning("run %s: could not publish %s", run.pk, path, exc_info=True)
            continue
        logger.info("run %s: published reference cache entry %s/%s", run.pk, key, path.name)


def _engine_config(run: TrainingRun) -> dict[str, Any]:
    out_dir = run_out_dir(run)
    config: dict[str, Any] = {
        # run.config holds only training.params keys; the worker-managed ones are set here
        **{k: v for k, v in run.config.items() if k not in _MANAGED_KEYS},
        "data": str(snapshot_file(run.snapshot, "jsonl")),
        "model": model_reference(run.start_checkpoint),
        "out_dir": str(out_dir),
        "metrics_file": str(out_dir / "metrics.jsonl"),
        "reference_cache_dir": str(reference_cache_dir(run)),
        # Staff decide per checkpoint (Django admin) whether a model's own code may run; both
        # the policy and the reference model must allow it, as the engine loads both.
        "trust_remote_code": run.start_checkpoint.trust_remote_code
        and (run.reference_checkpoint is None or run.reference_checkpoint.trust_remote_code),
        # the count the worker launches (engine_command) and the engine checks it runs in
        "processes": run_processes(run),
    }
    if run.reference_checkpoint is not None:
        config["reference_model"] = model_reference(run.reference_checkpoint)
    return config


def run_processes(run: TrainingRun) -> int:
    """The run's training processes: its own `processes` (at most PREFLAB_TRAIN_PROCESSES,
    training.params), else the worker's PREFLAB_TRAIN_PROCESSES."""
    return int(run.config.get("processes") or max(1, settings.PREFLAB_TRAIN_PROCESSES))


def _record_event(run: TrainingRun, event: dict[str, Any]) -> None:
    kind = event.get("event")
    if kind in {"train", "eval"}:
        step = int(event.get("step", 0))
        values = {k: v for k, v in event.items() if k not in {"event", "time"}}
        # One INSERT ... ON CONFLICT statement: no read-then-write transaction, which SQLite
        # refuses ("database is locked") when the heartbeat thread wrote in between.
        RunMetric.objects.bulk_create(
            [RunMetric(run=run, split=kind, step=step, values=values)],
            update_conflicts=True,
            unique_fields=["run", "split", "step"],
            update_fields=["values"],
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
    """Publish a checkpoint the engine reported to the artifact store, then register its row
    (so a row always names a complete artifact). The engine writes under the run's out_dir:
    checkpoint-000040 there is published as runs/<id>/checkpoint-000040."""
    path = Path(str(event["path"]))
    stored = f"{run.out_dir}/{path.relative_to(run_out_dir(run)).as_posix()}"
    if not Checkpoint.objects.filter(project_id=run.project_id, path=stored).exists():
        # Local store: the path already is the artifact and this returns at once. S3: the
        # files go up (a final checkpoint that was reported as a checkpoint first is not
        # uploaded twice).
        get_store().publish(path, stored, immutable=False)
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


def execute_run(run_id: int) -> TrainingRun | None:
    """Run a queued training run through the job wrapper (core.jobs.run_job); returns the row
    as it ended, or None when it was not queued."""
    return run_job(TRAINING_JOB, run_id)  # type: ignore[return-value]


def _train(claimed: TrainingRun) -> None:
    """Train a claimed run in a child process and record how it ended."""
    run = TrainingRun.objects.select_related(
        "snapshot", "start_checkpoint", "reference_checkpoint"
    ).get(id=claimed.pk)
    out_dir = run_out_dir(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    _restore_last_checkpoint(run, out_dir)
    cache_dir = reference_cache_dir(run)
    in_store = _stage_reference_cache(run, cache_dir)
    config_path = out_dir / "run.json"
    config_path.write_text(json.dumps(_engine_config(run), indent=2))
    resume = any(out_dir.glob("checkpoint-*"))
    args = ["train", "--config", str(config_path)] + (["--resume"] if resume else [])
    engine = EngineProcess(
        engine_command(*args, processes=run_processes(run)), out_dir / "engine.log"
    )
    follower = MetricsFollower(out_dir / "metrics.jsonl")
    last_log = 0.0

    def tick() -> bool:
        # The job wrapper's thread keeps the heartbeat; this records progress and the log.
        nonlocal last_log
        for event in follower.read_new():
            _record_event(run, event)
        if time.monotonic() - last_log >= LOG_TAIL_SECONDS:
            last_log = time.monotonic()
            TrainingRun.objects.filter(id=run.pk).update(log_tail=engine.log_tail())
        return TrainingRun.objects.filter(id=run.pk, cancel_requested=True).exists()

    try:
        engine.start()
        code = follow(engine, tick, interval=POLL_INTERVAL_SECONDS)
    except BaseException:
        engine.terminate()
        raise
    # The last metrics lines (the final checkpoint, the summary) land before the status does.
    for event in follower.read_new():
        _record_event(run, event)
    # Entries are complete files (written and renamed), so even a failed run's are sound.
    _publish_reference_cache(run, cache_dir, in_store)
    _finish_run(run, code, engine.log_tail())
    _release_out_dir(run, out_dir)


def _release_out_dir(run: TrainingRun, out_dir: Path) -> None:
    """With S3, an ended run's checkpoints are all in the store: the worker's copy goes. (A
    run queued again to resume keeps it, to resume from here without a download.)"""
    run.refresh_from_db(fields=["status"])
    if not get_store().is_local and run.is_finished:
        shutil.rmtree(out_dir, ignore_errors=True)


def _restore_last_checkpoint(run: TrainingRun, out_dir: Path) -> None:
    """A run resumed on another machine (S3 store) finds no checkpoint of its own on disk:
    fetch its last published one, so the engine resumes from it as it would locally."""
    if any(out_dir.glob("checkpoint-*")):
        return
    last = (
        Checkpoint.objects.filter(run=run, step__isnull=False)
        .exclude(path__endswith="/merged")
        .order_by("-step")
        .first()
    )
    store = get_store()
    if last is None or store.is_local or not store.exists(last.path):
        return
    store.fetch(last.path, out_dir / PurePosixPath(last.path).name)
    logger.info("run %s: fetched %s from the artifact store to resume from", run.pk, last.path)


def engine_exit_message(code: int) -> str:
    """How the engine process ended, in words."""
    if code == EXIT_BAD_INPUT:
        return "The engine refused its input (exit status 2, bad input)."
    if code == EXIT_DIVERGED:
        return (
            "The engine stopped the run because training diverged (the loss or gradient norm "
            "became non-finite, or the loss grew far past its start); no checkpoint after that "
            "step was kept."
        )
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return (
                "The engine process was killed by SIGKILL, probably out of memory "
                "(the kernel's OOM killer) while the worker survived."
            )
        return f"The engine process was killed by {name}."
    return f"The engine stopped with exit status {code}."


def _finish_run(run: TrainingRun, code: int, log_tail: str) -> None:
    if code == 0:
        status, error = RunStatus.SUCCEEDED, ""
    elif code == EXIT_CANCELLED:
        status, error = RunStatus.CANCELLED, ""
    else:
        message = engine_exit_message(code)
        cancelled = TrainingRun.objects.filter(id=run.pk, cancel_requested=True).exists()
        attempts = TrainingRun.objects.values_list("attempts", flat=True).get(id=run.pk)
        if code == -signal.SIGKILL and not cancelled and _may_resume(attempts):
            # Only the engine died: continue from its last checkpoint, as for a lost worker.
            TrainingRun.objects.filter(id=run.pk).update(log_tail=log_tail)
            if queue_again(
                run,
                get_kind(TRAINING_JOB),
                f"{message} Resuming from its last checkpoint (attempt {attempts + 1}).",
            ):
                logger.warning("run %s: engine killed by SIGKILL; queued to resume", run.pk)
                return
        status = RunStatus.CANCELLED if cancelled and code < 0 else RunStatus.FAILED
        detail = _last_error(log_tail)
        error = f"{message}\n{detail}" if detail else message
    TrainingRun.objects.filter(id=run.pk, status=RunStatus.RUNNING, worker=run.worker).update(
        status=status,
        error=error,
        log_tail=log_tail,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    logger.info("run %s ended %s (exit %s)", run.pk, status, code)


def _last_error(log_tail: str) -> str:
    lines = [line for line in log_tail.strip().splitlines() if line.strip()]
    return "\n".join(lines[-8:])


def _may_resume(attempts: int) -> bool:
    return (
        settings.PREFLAB_LOST_RUN_POLICY == "resume"
        and attempts < settings.PREFLAB_MAX_RUN_ATTEMPTS
    )


def training_job_kind() -> JobKind:
    """Registered by TrainingConfig.ready(): a lost run resumes from its last checkpoint
    (PREFLAB_LOST_RUN_POLICY=resume, up to PREFLAB_MAX_RUN_ATTEMPTS attempts) or fails."""
    return JobKind(
        name=TRAINING_JOB,
        model=TrainingRun,
        task_name=TRAIN_TASK,
        execute=_train,
        recovery=Recovery.RESUME,
        may_retry=lambda run: _may_resume(run.attempts),
    )


def sampling_job_kind() -> JobKind:
    """Registered by TrainingConfig.ready(): a lost sampling job fails (nothing of it was
    written: a round is created in one transaction at the end); start it again."""
    return JobKind(
        name=SAMPLING_JOB,
        model=SamplingJob,
        task_name=SAMPLE_TASK,
        execute=_sample_round,
        recovery=Recovery.FAIL,
        lost_hint="Start the sampling again.",
    )


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
    keep_empty: bool = True,
    samples_per_prompt: int | None = None,
    judge: Judge | None = None,
) -> SamplingJob:
    if pairing == PairingMode.VERSUS_PREVIOUS and previous_checkpoint is None:
        raise RunRefused("Pairing against the previous checkpoint needs a previous checkpoint.")
    samples = 2
    if pairing == PairingMode.BEST_WORST:
        samples = BEST_WORST_DEFAULT_K if samples_per_prompt is None else samples_per_prompt
        check_best_worst(project, samples, judge)
    elif pairing == PairingMode.RANKING:
        samples = BEST_WORST_DEFAULT_K if samples_per_prompt is None else samples_per_prompt
        check_samples_per_prompt(samples, RANKING_K_RANGE)
        judge = None
    else:
        judge = None
    if selection != PromptSelection.ALL and not prompt_limit:
        raise RunRefused("Say how many prompts to sample.", key="prompt_limit")
    # Held-out (eval) prompts are never sampled into a training round.
    prompt_count = project.prompts.filter(split=PromptSplit.TRAIN).count()
    if not prompt_count:
        raise RunRefused("The project has no training prompts to sample (held-out ones never are).")
    try:
        prompt_limit = check_prompt_limit(prompt_limit, prompt_count)
        generation = check_sampling_params(generation or {})
    except ParamError as exc:
        raise RunRefused(str(exc), key=exc.key) from None
    with transaction.atomic():
        job = SamplingJob.objects.create(
            project=project,
            checkpoint=checkpoint,
            previous_checkpoint=previous_checkpoint,
            pairing=pairing,
            selection=selection,
            prompt_limit=prompt_limit,
            generation=generation,
            created_by=created_by,
            keep_empty=keep_empty,
            samples_per_prompt=samples,
            judge=judge,
        )
        enqueue(SAMPLE_TASK, job.pk)
    return job


def check_samples_per_prompt(samples: int | None, k_range: tuple[int, int]) -> None:
    """Refuse a K outside k_range (RunRefused naming samples_per_prompt)."""
    low, high = k_range
    if isinstance(samples, bool) or not isinstance(samples, int) or not low <= samples <= high:
        raise RunRefused(
            f"samples_per_prompt must be a whole number from {low} to {high}, not {samples!r}.",
            key="samples_per_prompt",
        )


def check_best_worst(project: Project, samples: int | None, judge: Judge | None) -> None:
    """Why best_worst pairing cannot run as asked (RunRefused naming the field), or nothing."""
    check_samples_per_prompt(samples, BEST_WORST_K_RANGE)
    if best_worst_selector() is None:
        raise RunRefused(
            "Best-versus-worst pairing needs the judging app (none is installed to pick the "
            "best and the worst).",
            key="judge",
        )
    if judge is None:
        raise RunRefused(
            "Best-versus-worst pairing needs a judge: pick one in the judge field.", key="judge"
        )
    if judge.project_id != project.pk:
        raise RunRefused("That judge belongs to another project.", key="judge")
    if not judge.enabled:
        raise RunRefused(f"Judge {judge.name!r} is disabled.", key="judge")


def select_prompts(job: SamplingJob) -> list[Prompt]:
    prompts = Prompt.objects.filter(project=job.project, split=PromptSplit.TRAIN).order_by("id")
    if job.selection == PromptSelection.FEWEST_VOTES:
        # A ranking is one judgment of its prompt, as a vote is; counted in separate subqueries
        # because one COUNT over both joins would multiply them.
        votes = count_of(Vote.objects.filter(comparison__prompt=OuterRef("pk")))
        rankings = count_of(Ranking.objects.filter(task__prompt=OuterRef("pk")))
        prompts = prompts.annotate(votes=votes + rankings).order_by("votes", "id")
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
    if model.trust_remote_code:  # a staff-only setting on the checkpoint
        args.append("--trust-remote-code")
    engine = EngineProcess(engine_command(*args), out_path.with_suffix(".log"))
    engine.start()
    code = follow(engine, on_tick)
    if code != 0:
        raise SamplingFailed(f"{engine_exit_message(code)}\n{_last_error(engine.log_tail())}")
    with out_path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def execute_sampling(job_id: int) -> SamplingJob | None:
    """Run a queued sampling job through the job wrapper (core.jobs.run_job); returns the row
    as it ended, or None when it was not queued."""
    return run_job(SAMPLING_JOB, job_id)  # type: ignore[return-value]


def _sample_round(claimed: SamplingJob) -> None:
    """Generate with a claimed job's checkpoint(s) and open the new round in one transaction.
    An exception leaves nothing written; the job wrapper marks the job failed."""
    job = SamplingJob.objects.select_related(
        "project", "checkpoint", "previous_checkpoint", "judge"
    ).get(id=claimed.pk)
    work_dir = get_store().work_dir(f"sampling/{job.pk}")
    work_dir.mkdir(parents=True, exist_ok=True)

    def tick() -> bool:
        return SamplingJob.objects.filter(id=job.pk, cancel_requested=True).exists()

    prompts = select_prompts(job)
    prompts_path = work_dir / "prompts.jsonl"
    with prompts_path.open("w", encoding="utf-8") as handle:
        for prompt in prompts:
            content: Any = prompt.messages if prompt.is_chat else prompt.text
            handle.write(json.dumps({"id": prompt.id, "prompt": content}) + "\n")
    extra: dict[int, list[dict[str, Any]]] = {}
    best_worst: dict[str, int] = {}
    if job.pairing == PairingMode.RANKING:
        rows = _sample(
            job.checkpoint, prompts_path, work_dir / "new.jsonl", job.samples_per_prompt, job, tick
        )
        tasks, counts, round_ = _open_ranking_round(job, prompts, rows)
        SamplingJob.objects.filter(
            id=job.pk, status=RunStatus.RUNNING, worker=claimed.worker
        ).update(
            status=RunStatus.SUCCEEDED,
            round=round_,
            ranking_tasks_created=tasks,
            finished_at=timezone.now(),
            **counts,
        )
        return
    if job.pairing == PairingMode.TWO_SAMPLES:
        rows = _sample(job.checkpoint, prompts_path, work_dir / "new.jsonl", 2, job, tick)
        sides = [(job.checkpoint, rows[0::2]), (job.checkpoint, rows[1::2])]
    elif job.pairing == PairingMode.BEST_WORST:
        rows = _sample(
            job.checkpoint, prompts_path, work_dir / "new.jsonl", job.samples_per_prompt, job, tick
        )
        best_rows, worst_rows, extra, best_worst = _pick_best_worst(job, prompts, rows)
        sides = [(job.checkpoint, best_rows), (job.checkpoint, worst_rows)]
    else:
        assert job.previous_checkpoint is not None
        new = _sample(job.checkpoint, prompts_path, work_dir / "new.jsonl", 1, job, tick)
        old = _sample(job.previous_checkpoint, prompts_path, work_dir / "old.jsonl", 1, job, tick)
        sides = [(job.checkpoint, new), (job.previous_checkpoint, old)]
    created, dropped, round_ = _open_round(job, prompts, sides, extra)
    counts = {
        "dropped_identical": dropped["identical"],
        "dropped_empty": dropped["empty"],
        "dropped_missing": dropped["missing"],
    }
    for key, value in best_worst.items():  # prompts dropped before pairing, judge spending
        counts[key] = counts.get(key, 0) + value
    SamplingJob.objects.filter(id=job.pk, status=RunStatus.RUNNING, worker=claimed.worker).update(
        status=RunStatus.SUCCEEDED,
        round=round_,
        comparisons_created=created,
        finished_at=timezone.now(),
        **counts,
    )


def _pick_best_worst(
    job: SamplingJob, prompts: list[Prompt], rows: list[dict[str, Any]]
) -> tuple[
    list[dict[str, Any]], list[dict[str, Any]], dict[int, list[dict[str, Any]]], dict[str, int]
]:
    """The judge's best and worst of each prompt's K samples, as two sides for _open_round
    (the best on side A or B at random, seeded per prompt), the other samples to store as
    completions too, and the counts of prompts dropped before pairing and of judge calls.

    Dropped before the judge: fewer than two samples (missing), all samples identical, fewer
    than two distinct non-empty samples when keep_empty is off (empty). Dropped after it:
    best and worst tied on wins (judge_tie), the judge failed (judge_error)."""
    selector = best_worst_selector()
    if selector is None or job.judge is None:
        raise SamplingFailed("Best-versus-worst pairing needs the judging app and a judge.")
    if not job.judge.enabled:
        raise SamplingFailed(f"Judge {job.judge.name!r} was disabled after this job was queued.")
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        row["completion"] = clean_model_output(row["completion"])
        by_prompt.setdefault(row["id"], []).append(row)
    counts = {
        "dropped_missing": 0, "dropped_identical": 0, "dropped_empty": 0, "dropped_judge_tie": 0,
        "dropped_judge_error": 0, "judge_calls": 0, "judge_tokens": 0,
    }  # fmt: skip
    judged: list[tuple[Prompt, list[dict[str, Any]]]] = []
    extra: dict[int, list[dict[str, Any]]] = {}
    for prompt in prompts:
        candidates = by_prompt.get(prompt.id, [])
        if len(candidates) < 2:
            counts["dropped_missing"] += 1
            continue
        if len({row["completion"].strip() for row in candidates}) < 2:
            counts["dropped_identical"] += 1
            continue
        if not job.keep_empty:
            candidates = [row for row in candidates if row["completion"].strip()]
            if len({row["completion"].strip() for row in candidates}) < 2:
                counts["dropped_empty"] += 1
                continue
        judged.append((prompt, candidates))
    selections = selector(
        job.judge,
        [Candidates(prompt, [row["completion"] for row in rows]) for prompt, rows in judged],
    )
    best_rows, worst_rows = [], []
    for (prompt, candidates), selection in zip(judged, selections, strict=True):
        counts["judge_calls"] += selection.calls
        counts["judge_tokens"] += selection.tokens
        if selection.error:
            counts["dropped_judge_error"] += 1
            continue
        if selection.best is None or selection.worst is None:
            counts["dropped_judge_tie"] += 1
            continue
        best, worst = candidates[selection.best], candidates[selection.worst]
        for index, row in enumerate(candidates):
            role = "best" if row is best else "worst" if row is worst else "candidate"
            row["best_of"] = {
                "k": len(by_prompt[prompt.id]),
                "index": index,  # in wins: the judged samples' order
                "role": role,
                "wins": selection.wins,
                "judge": job.judge.pk,
                "judge_version": job.judge.version,
                **selection.evidence,
            }
        # Every sample of the prompt is stored, the empty ones left out of the judging too.
        unjudged = [row for row in by_prompt[prompt.id] if "best_of" not in row]
        for row in unjudged:
            row["best_of"] = {"k": len(by_prompt[prompt.id]), "role": "empty, not judged"}
        extra[prompt.id] = [
            row for row in by_prompt[prompt.id] if row is not best and row is not worst
        ]
        seed = int(job.generation.get("seed", 0))
        if random.Random(f"{seed}:{prompt.id}").random() < 0.5:
            best_rows.append(best)
            worst_rows.append(worst)
        else:
            best_rows.append(worst)
            worst_rows.append(best)
    return best_rows, worst_rows, extra, counts


def _ranking_candidates(
    job: SamplingJob, prompts: list[Prompt], rows: list[dict[str, Any]]
) -> tuple[list[tuple[Prompt, list[dict[str, Any]]]], dict[str, int]]:
    """Each prompt's distinct samples in the order drawn, and the counts of prompts dropped.

    A sample identical to an earlier one of its prompt (after stripping whitespace) is left
    out: a ranking needs distinct responses. With keep_empty off the empty samples are left
    out too. Dropped, and counted by why, when fewer than 3 remain: the engine returned fewer
    than 3 samples (missing), fewer than 3 distinct ones (identical), fewer than 3 distinct
    non-empty ones with keep_empty off (empty)."""
    low = RANKING_K_RANGE[0]
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        row["completion"] = clean_model_output(row["completion"])
        by_prompt.setdefault(row["id"], []).append(row)
    counts = {"dropped_missing": 0, "dropped_identical": 0, "dropped_empty": 0}
    kept: list[tuple[Prompt, list[dict[str, Any]]]] = []
    for prompt in prompts:
        samples = by_prompt.get(prompt.id, [])
        if len(samples) < low:
            counts["dropped_missing"] += 1
            continue
        distinct: dict[str, dict[str, Any]] = {}
        for row in samples:
            distinct.setdefault(row["completion"].strip(), row)
        if len(distinct) < low:
            counts["dropped_identical"] += 1
            continue
        if not job.keep_empty:
            distinct.pop("", None)
            if len(distinct) < low:
                counts["dropped_empty"] += 1
                continue
        for index, row in enumerate(samples):
            row["sample_of"] = {"k": len(samples), "index": index}
        kept.append((prompt, list(distinct.values())))
    return kept, counts


def _open_ranking_round(
    job: SamplingJob, prompts: list[Prompt], rows: list[dict[str, Any]]
) -> tuple[int, dict[str, int], Round | None]:
    """Ranking pairing: each prompt's distinct samples (3 to K of them, in the order drawn, the
    canonical order its rankings index into) become one ranking task of a new round, created
    with their completions in one transaction. Only the task's samples are stored."""
    kept, counts = _ranking_candidates(job, prompts, rows)
    if not kept:
        return 0, counts, None
    project = job.project
    with transaction.atomic():
        round_ = _new_round(job)
        specs = [
            TaskSpec(
                prompt=prompt,
                completions=[_store_completion(prompt, job.checkpoint, row) for row in samples],
                votes_target=project.overlap,
            )
            for prompt, samples in kept
        ]
        tasks = create_ranking_tasks(round_, specs)
    return len(tasks), counts, round_


def _new_round(job: SamplingJob) -> Round:
    """The project's next round, made by this job's checkpoint (inside the caller's
    transaction; the unique round number refuses a concurrent one)."""
    project = job.project
    latest = project.rounds.order_by("-number").values_list("number", flat=True).first() or 0
    return Round.objects.create(
        project=project,
        number=latest + 1,
        source=f"sampling job {job.pk}: {job.checkpoint.name}",
        checkpoint=job.checkpoint,
    )


_CONTROL_CHARACTERS = dict.fromkeys(c for c in range(32) if chr(c) not in "\t\n\r")


def clean_model_output(text: str) -> str:
    """Model output is untrusted: drop NUL and other control characters before storing it."""
    return text.translate(_CONTROL_CHARACTERS)


def _open_round(
    job: SamplingJob,
    prompts: list[Prompt],
    sides: list[tuple[Checkpoint, list[dict[str, Any]]]],
    extra: dict[int, list[dict[str, Any]]] | None = None,
) -> tuple[int, dict[str, int], Round | None]:
    """Pairs the two sides' rows by prompt. Dropped, and counted by why: two identical
    responses (nothing to prefer), a pair with an empty side when the job's keep_empty is off
    (both empty counts as identical), and a prompt the engine returned only one side for.
    `extra` holds more samples per prompt (best_worst pairing's other candidates): stored as
    completions of the prompt, in no comparison."""
    by_id = {prompt.id: prompt for prompt in prompts}
    (model_a, rows_a), (model_b, rows_b) = sides
    rows_b_by_prompt = {row["id"]: row for row in rows_b}
    pairs = []
    dropped = {"identical": 0, "empty": 0, "missing": 0}
    for row_a in rows_a:
        row_b = rows_b_by_prompt.get(row_a["id"])
        if row_b is None:
            dropped["missing"] += 1
            continue
        for row in (row_a, row_b):
            row["completion"] = clean_model_output(row["completion"])
        if row_a["completion"].strip() == row_b["completion"].strip():
            dropped["identical"] += 1
            continue
        if not job.keep_empty and not (row_a["completion"].strip() and row_b["completion"].strip()):
            dropped["empty"] += 1
            continue
        pairs.append((by_id[row_a["id"]], row_a, row_b))
    if not pairs:
        return 0, dropped, None
    project = job.project
    with transaction.atomic():
        round_ = _new_round(job)
        comparisons = []
        for prompt, row_a, row_b in pairs:
            completion_a, completion_b = (
                _store_completion(prompt, checkpoint, row)
                for checkpoint, row in ((model_a, row_a), (model_b, row_b))
            )
            for row in (extra or {}).get(prompt.id, []):
                _store_completion(prompt, model_a, row)
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


def _store_completion(prompt: Prompt, checkpoint: Checkpoint, row: dict[str, Any]) -> Completion:
    params = {key: row.get(key) for key in GENERATION_KEYS}
    for key in ("best_of", "sample_of"):  # where the sample stood among the prompt's K
        if key in row:
            params[key] = row[key]
    return Completion.objects.create(
        prompt=prompt,
        text=row["completion"],
        model_name=checkpoint.name,
        checkpoint=checkpoint,
        generation_params=params,
    )
