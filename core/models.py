"""The shape every background job's row shares (snapshot builds, training runs, sampling jobs
and every kind added later). Core knows nothing of the domain: it has no concrete models.

The database, not the broker, is the truth about a job. A task claims its row with one
conditional update (queued -> running), so a redelivered or re-sent message for a live or
finished job does nothing; the watchdog (core.jobs.watchdog) finds rows nobody works on.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """Abstract: a concrete job model adds its own inputs and results to these columns."""

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a worker has claimed this job."
    )
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="When the job was last queued (or its message re-sent)."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(
        max_length=255, blank=True, help_text="host:pid of the worker that claimed it last."
    )
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        abstract = True
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="%(app_label)s_%(class)s_watch")
        ]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)
