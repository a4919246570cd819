"""One way to run, watch and recover every background job.

- ``register(JobKind(...))``: a domain app names its job model, the Celery task (by name) that
  runs it, the function that does the work, and how a job whose worker died is recovered.
- ``enqueue(task_name, *ids)``: send a task by name once the current transaction commits, so
  domain code never imports the Celery task module and a worker never sees an uncommitted row.
- ``run_job(kind, job_id)``: the one task wrapper. It claims the row with a conditional update
  (queued -> running; zero rows means another worker owns it or it has ended), heartbeats from a
  background thread while the work runs, stores the traceback and marks the row failed on any
  exception (and re-raises), and marks it succeeded when the work returns without ending it.
- ``watchdog()``: for every registered kind, a running job whose heartbeat is older than
  PREFLAB_HEARTBEAT_TIMEOUT_SECONDS is queued again (resumed or re-run, as its kind says) or
  failed; a job queued for longer than PREFLAB_REQUEUE_AFTER_SECONDS has its message sent
  again (the claim makes a duplicate harmless).

Core knows no domain: kinds register themselves from their app's ``ready()``.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from core.models import Job, JobStatus

logger = logging.getLogger(__name__)

_ERROR_LIMIT = 10_000
_TRACEBACK_LIMIT = 50_000


class Recovery(enum.Enum):
    """What the watchdog does with a running job whose worker is gone."""

    RESUME = "resume"  # queue it again; the work continues from state it saved (a checkpoint)
    RERUN = "rerun"  # queue it again; the work starts over after cleanup() removed its leftovers
    FAIL = "fail"  # mark it failed (cleanup() still runs)


def _always(job: Any) -> bool:
    return True


def _nothing(job: Any) -> None:
    return None


@dataclass(frozen=True)
class JobKind:
    name: str
    model: type[Job]
    task_name: str
    execute: Callable[[Any], object]
    recovery: Recovery = Recovery.FAIL
    # For RESUME/RERUN: whether this job may be queued again (policy, attempts so far);
    # when it returns False the job is failed instead.
    may_retry: Callable[[Any], bool] = _always
    # Removes what a dead worker left behind (temporary files); runs before a retry or a fail.
    cleanup: Callable[[Any], None] = _nothing
    # Appended to the error of a job failed as lost: what the user can do next.
    lost_hint: str = ""


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    existing = _KINDS.get(kind.name)
    if existing is not None and existing.model is not kind.model:
        raise ValueError(f"job kind {kind.name!r} is already registered for {existing.model}")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise LookupError(
            f"no job kind {name!r}; registered: {', '.join(sorted(_KINDS))}"
        ) from None


def kinds() -> list[JobKind]:
    return list(_KINDS.values())


# --- sending ------------------------------------------------------------------------------


def _send(task_name: str, args: tuple[Any, ...]) -> None:
    from celery import current_app

    current_app.send_task(task_name, args=args)


def enqueue(task_name: str, *args: Any) -> None:
    """Send the task by name after the current transaction commits (at once in autocommit)."""
    transaction.on_commit(partial(_send, task_name, args))


def queue_again(job: Job, kind: JobKind, error: str) -> bool:
    """running -> queued for a job this process owns, and send its task again; for a job that
    decides itself to continue later (an engine killed alone). Returns whether it moved."""
    with transaction.atomic():
        moved = (
            type(job)
            ._default_manager.filter(pk=job.pk, status=JobStatus.RUNNING, worker=job.worker)
            .update(status=JobStatus.QUEUED, queued_at=timezone.now(), worker="", error=error)
        )
        if moved:
            enqueue(kind.task_name, job.pk)
    return bool(moved)


# --- running ------------------------------------------------------------------------------


def worker_name() -> str:
    """host:pid, with the Celery node name as host when running inside a worker."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    host = getattr(request, "hostname", None) or socket.gethostname()
    return f"{host}:{os.getpid()}"[:255]


class Heartbeat(threading.Thread):
    """Sets heartbeat_at every PREFLAB_HEARTBEAT_SECONDS while the job's row stays running and
    owned by this worker, whatever the work does meanwhile (it may block for hours)."""

    def __init__(self, model: type[Job], job_id: int, worker: str, interval: float) -> None:
        super().__init__(name=f"heartbeat-{model._meta.label_lower}-{job_id}", daemon=True)
        self.model = model
        self.job_id = job_id
        self.worker = worker
        self.interval = interval
        self._stopped = threading.Event()
        self.lost_ownership = False

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    owned = self.model._default_manager.filter(
                        pk=self.job_id, status=JobStatus.RUNNING, worker=self.worker
                    ).update(heartbeat_at=timezone.now())
                except DatabaseError:
                    logger.warning("heartbeat of %s %s failed", self.model.__name__, self.job_id)
                    continue
                if not owned:
                    self.lost_ownership = True
                    logger.warning(
                        "%s %s is no longer running under %s; heartbeat stops",
                        self.model.__name__,
                        self.job_id,
                        self.worker,
                    )
                    return
        finally:
            connections.close_all()  # this thread's connections only

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=self.interval + 30)


def claim(kind: JobKind, job_id: int, worker: str) -> Job | None:
    now = timezone.now()
    claimed = kind.model._default_manager.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        attempts=F("attempts") + 1,
        error="",
        traceback="",
    )
    if not claimed:
        return None
    return kind.model._default_manager.get(pk=job_id)


def run_job(kind_name: str, job_id: int) -> Job | None:
    """Claim the job, run its kind's work with a heartbeat, record how it ended.

    Returns the row as it ended, or None when it was not queued (another worker owns it, or
    it has ended: a redelivered or re-sent message). Exceptions are re-raised after the row is
    marked failed with the traceback. A BaseException that is not an Exception (the worker
    process being stopped) leaves the row running: its heartbeat stops and the watchdog
    recovers it.
    """
    kind = get_kind(kind_name)
    model = kind.model
    worker = worker_name()
    job = claim(kind, job_id, worker)
    if job is None:
        status = model._default_manager.filter(pk=job_id).values_list("status", flat=True).first()
        logger.info(
            "%s %s is %s, not queued: another worker owns it or it has ended; nothing to do",
            kind.name,
            job_id,
            status or "gone",
        )
        return None
    # Inside a caller's transaction (tests, a management command in atomic) the claim is not
    # visible to another connection, and a second connection's update would wait on our row
    # lock: nobody else can see the job, so it needs no heartbeat.
    heartbeat: Heartbeat | None = None
    if not transaction.get_connection().in_atomic_block:
        heartbeat = Heartbeat(model, job_id, worker, settings.PREFLAB_HEARTBEAT_SECONDS)
        heartbeat.start()
    logger.info("%s %s claimed by %s (attempt %s)", kind.name, job_id, worker, job.attempts)
    try:
        kind.execute(job)
    except Exception as exc:
        _record_failure(model, job_id, worker, exc)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    model._default_manager.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).update(
        status=JobStatus.SUCCEEDED, finished_at=timezone.now(), heartbeat_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _record_failure(model: type[Job], job_id: int, worker: str, exc: Exception) -> None:
    text = traceback.format_exc()[-_TRACEBACK_LIMIT:]
    error = f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT]
    logger.error("%s %s failed: %s", model.__name__, job_id, error)
    try:
        model._default_manager.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).update(
            status=JobStatus.FAILED,
            error=error,
            traceback=text,
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
    except DatabaseError:
        # The database itself failed; the watchdog fails or resumes the row once its
        # heartbeat is stale.
        logger.exception("could not record the failure of %s %s", model.__name__, job_id)


# --- watching -----------------------------------------------------------------------------


class Outcome(NamedTuple):
    kind: str
    job_id: int
    status: str  # the new status; "resent" for a queued job whose message was sent again


def _seen(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"


def recover_stale(kind: JobKind, now: datetime | None = None) -> list[Outcome]:
    """Running jobs of this kind whose heartbeat is stale: queue again or fail."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PREFLAB_HEARTBEAT_TIMEOUT_SECONDS)
    stale = kind.model._default_manager.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    outcomes: list[Outcome] = []
    for job in stale:
        # Conditional on the heartbeat we read: a worker that beat meanwhile keeps its job.
        same = kind.model._default_manager.filter(
            pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at
        )
        lost = (
            f"Worker {job.worker or 'unknown'} lost: no heartbeat since {_seen(job.heartbeat_at)}"
        )
        retry = (
            kind.recovery is not Recovery.FAIL and not job.cancel_requested and kind.may_retry(job)
        )
        if retry:
            how = (
                "resuming from its last checkpoint"
                if kind.recovery is Recovery.RESUME
                else "running it again from scratch"
            )
            with transaction.atomic():
                moved = same.update(
                    status=JobStatus.QUEUED,
                    queued_at=now,
                    worker="",
                    error=f"{lost}; {how} (attempt {job.attempts + 1}).",
                )
                if moved:
                    enqueue(kind.task_name, job.pk)
            status = JobStatus.QUEUED
        else:
            status = JobStatus.CANCELLED if job.cancel_requested else JobStatus.FAILED
            error = f"{lost}." + (f" {kind.lost_hint}" if kind.lost_hint else "")
            moved = same.update(status=status, error=error, finished_at=now)
        if moved:
            _cleanup(kind, job)
            logger.warning("%s %s: %s; now %s", kind.name, job.pk, lost, status)
            outcomes.append(Outcome(kind.name, job.pk, str(status)))
    return outcomes


def _cleanup(kind: JobKind, job: Job) -> None:
    try:
        kind.cleanup(job)
    except Exception:
        logger.exception("cleaning up after %s %s failed", kind.name, job.pk)


def resend_queued(kind: JobKind, now: datetime | None = None) -> list[Outcome]:
    """Jobs queued longer than PREFLAB_REQUEUE_AFTER_SECONDS: send their message again.

    A queued row has no worker (a claim makes it running). If its message was lost (a broker
    restarted without persistence) this is what runs it; if the message is only waiting behind
    other work, the duplicate finds the row claimed and does nothing.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PREFLAB_REQUEUE_AFTER_SECONDS)
    waiting = kind.model._default_manager.filter(status=JobStatus.QUEUED, queued_at__lt=cutoff)
    outcomes: list[Outcome] = []
    for job_id, queued_at in waiting.values_list("pk", "queued_at"):
        moved = kind.model._default_manager.filter(
            pk=job_id, status=JobStatus.QUEUED, queued_at=queued_at
        ).update(queued_at=now)
        if moved:
            enqueue(kind.task_name, job_id)
            logger.warning(
                "%s %s queued since %s with no worker; message sent again",
                kind.name,
                job_id,
                _seen(queued_at),
            )
            outcomes.append(Outcome(kind.name, job_id, "resent"))
    return outcomes


def watchdog(now: datetime | None = None) -> list[Outcome]:
    """One pass over every registered kind (Celery beat runs it every
    PREFLAB_WATCHDOG_SECONDS)."""
    outcomes: list[Outcome] = []
    for kind in kinds():
        outcomes += recover_stale(kind, now)
        outcomes += resend_queued(kind, now)
    return outcomes
