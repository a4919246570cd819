"""The job core in one process: claim, traceback on failure, heartbeat, and the watchdog's
decisions for every registered kind. Real processes: tests/workers/test_job_recovery.py."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.jobs import (
    JobKind,
    Recovery,
    get_kind,
    kinds,
    recover_stale,
    register,
    resend_queued,
    run_job,
    unregister,
    watchdog,
)
from core.models import JobStatus
from labeling.models import Snapshot
from labeling.snapshots import snapshot_temp_dir
from training.models import Checkpoint, SamplingJob, TrainingRun
from training.services import engine_exit_message

LONG_AGO = timedelta(minutes=10)


class Boom(RuntimeError):
    pass


def explode(job):
    raise Boom(f"job {job.pk} exploded on purpose")


def sleep_a_while(job):
    time.sleep(3.5)


@pytest.fixture(autouse=True)
def test_kinds():
    """Two extra kinds on a real job model: work that raises, and work that blocks."""
    register(JobKind(name="test-boom", model=SamplingJob, task_name="t.boom", execute=explode))
    register(
        JobKind(name="test-sleep", model=SamplingJob, task_name="t.sleep", execute=sleep_a_while)
    )
    yield
    unregister("test-boom")
    unregister("test-sleep")


@pytest.fixture
def checkpoint(make_project):
    project = make_project("Jobs", pairs=0)
    return Checkpoint.objects.create(project=project, name="ck", path="/nowhere")


def sampling_job(checkpoint, **fields):
    return SamplingJob.objects.create(project=checkpoint.project, checkpoint=checkpoint, **fields)


def training_run(checkpoint, **fields):
    snapshot = Snapshot.objects.create(
        project=checkpoint.project, policy="every_vote", status=JobStatus.SUCCEEDED, row_count=1
    )
    return TrainingRun.objects.create(
        project=checkpoint.project, snapshot=snapshot, start_checkpoint=checkpoint, **fields
    )


def test_every_job_kind_of_the_apps_is_registered():
    registered = {kind.name: kind for kind in kinds()}
    assert {"snapshot", "training_run", "sampling_job"} <= registered.keys()
    assert registered["snapshot"].model is Snapshot
    assert registered["snapshot"].recovery is Recovery.RERUN
    assert registered["training_run"].model is TrainingRun
    assert registered["training_run"].recovery is Recovery.RESUME
    assert registered["sampling_job"].model is SamplingJob
    assert registered["sampling_job"].recovery is Recovery.FAIL
    with pytest.raises(LookupError):
        get_kind("no-such-kind")


@pytest.mark.django_db
def test_an_exception_in_the_work_fails_the_row_with_its_traceback(checkpoint):
    job = sampling_job(checkpoint)
    with pytest.raises(Boom):
        run_job("test-boom", job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == f"Boom: job {job.pk} exploded on purpose"
    assert "Traceback (most recent call last)" in job.traceback
    assert "in explode" in job.traceback
    assert job.attempts == 1 and job.worker and job.finished_at is not None


@pytest.mark.django_db
def test_a_job_is_claimed_once(checkpoint):
    job = sampling_job(checkpoint, status=JobStatus.RUNNING, worker="elsewhere:1")
    assert run_job("test-boom", job.pk) is None  # owned by another worker: nothing happens
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.worker == "elsewhere:1"
    finished = sampling_job(checkpoint, status=JobStatus.SUCCEEDED)
    assert run_job("test-boom", finished.pk) is None


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_beats_while_the_work_blocks(checkpoint, settings):
    settings.PREFLAB_HEARTBEAT_SECONDS = 1
    job = sampling_job(checkpoint)
    ended = run_job("test-sleep", job.pk)
    assert ended is not None and ended.status == JobStatus.SUCCEEDED
    # claimed at started_at; the thread beat at least twice during the 3.5 s of work
    assert ended.heartbeat_at - ended.started_at >= timedelta(seconds=2)


def test_engine_exit_messages_name_the_cause():
    killed = engine_exit_message(-signal.SIGKILL)
    assert "SIGKILL" in killed and "out of memory" in killed
    assert "diverged" in engine_exit_message(4)
    assert "bad input" in engine_exit_message(2)
    assert "SIGSEGV" in engine_exit_message(-signal.SIGSEGV)


# --- the watchdog -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_lost_snapshot_is_rebuilt_from_scratch_after_its_temp_dir_is_removed(
    make_project, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.PREFLAB_MAX_RUN_ATTEMPTS = 3
    project = make_project("Lost snapshot", pairs=0)
    stale = timezone.now() - LONG_AGO
    lost = Snapshot.objects.create(
        project=project, policy="every_vote", status=JobStatus.RUNNING, attempts=1,
        heartbeat_at=stale, worker="dead:1",
    )  # fmt: skip
    temp = snapshot_temp_dir(lost)
    temp.mkdir(parents=True)
    (temp / "data.jsonl").write_text("half")
    exhausted = Snapshot.objects.create(
        project=project, policy="every_vote", status=JobStatus.RUNNING, attempts=3,
        heartbeat_at=stale,
    )  # fmt: skip
    alive = Snapshot.objects.create(
        project=project, policy="every_vote", status=JobStatus.RUNNING,
        heartbeat_at=timezone.now(),
    )  # fmt: skip
    with django_capture_on_commit_callbacks() as sent:
        outcomes = recover_stale(get_kind("snapshot"))
    assert sorted(outcomes) == sorted(
        [("snapshot", lost.pk, "queued"), ("snapshot", exhausted.pk, "failed")]
    )
    assert len(sent) == 1  # one build message, sent once the requeue committed
    lost.refresh_from_db()
    exhausted.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == JobStatus.QUEUED and lost.worker == ""
    assert "dead:1 lost" in lost.error and "from scratch" in lost.error
    assert not temp.exists()
    assert exhausted.status == JobStatus.FAILED and "Export the snapshot again" in exhausted.error
    assert alive.status == JobStatus.RUNNING


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "attempts", "cancel", "expected"),
    [
        ("fail", 1, False, JobStatus.FAILED),
        ("resume", 1, False, JobStatus.QUEUED),
        ("resume", 3, False, JobStatus.FAILED),
        ("resume", 1, True, JobStatus.CANCELLED),
    ],
)
def test_a_lost_run_follows_the_lost_run_policy(
    checkpoint, settings, policy, attempts, cancel, expected
):
    settings.PREFLAB_LOST_RUN_POLICY = policy
    settings.PREFLAB_MAX_RUN_ATTEMPTS = 3
    run = training_run(
        checkpoint, status=JobStatus.RUNNING, attempts=attempts, cancel_requested=cancel,
        heartbeat_at=timezone.now() - LONG_AGO,
    )  # fmt: skip
    fresh = training_run(checkpoint, status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    assert recover_stale(get_kind("training_run")) == [("training_run", run.pk, expected)]
    run.refresh_from_db()
    fresh.refresh_from_db()
    assert run.status == expected and "lost" in run.error
    if expected == JobStatus.QUEUED:
        assert "resuming from its last checkpoint" in run.error
    assert fresh.status == JobStatus.RUNNING


@pytest.mark.django_db
def test_a_lost_sampling_job_fails(checkpoint):
    lost = sampling_job(
        checkpoint, status=JobStatus.RUNNING, heartbeat_at=timezone.now() - LONG_AGO
    )
    assert recover_stale(get_kind("sampling_job")) == [("sampling_job", lost.pk, "failed")]
    lost.refresh_from_db()
    assert lost.status == JobStatus.FAILED and "Start the sampling again" in lost.error


@pytest.mark.django_db
def test_a_job_queued_too_long_is_sent_again_once_a_period(
    checkpoint, settings, django_capture_on_commit_callbacks
):
    settings.PREFLAB_REQUEUE_AFTER_SECONDS = 60
    old = sampling_job(checkpoint, queued_at=timezone.now() - LONG_AGO)
    recent = sampling_job(checkpoint)
    with django_capture_on_commit_callbacks() as sent:
        assert resend_queued(get_kind("sampling_job")) == [("sampling_job", old.pk, "resent")]
        assert resend_queued(get_kind("sampling_job")) == []  # queued_at moved on
    assert len(sent) == 1
    old.refresh_from_db()
    assert old.status == JobStatus.QUEUED
    assert timezone.now() - old.queued_at < timedelta(seconds=10)
    assert recent.queued_at == SamplingJob.objects.get(pk=recent.pk).queued_at


@pytest.mark.django_db
def test_the_watchdog_covers_every_kind_in_one_pass(checkpoint, make_project):
    stale = timezone.now() - LONG_AGO
    run = training_run(checkpoint, status=JobStatus.RUNNING, heartbeat_at=stale)
    job = sampling_job(checkpoint, status=JobStatus.RUNNING, heartbeat_at=stale)
    snapshot = Snapshot.objects.create(
        project=checkpoint.project, policy="every_vote", status=JobStatus.RUNNING,
        heartbeat_at=stale,
    )  # fmt: skip
    outcomes = {(kind, job_id) for kind, job_id, _ in watchdog()}
    assert {("training_run", run.pk), ("sampling_job", job.pk), ("snapshot", snapshot.pk)} <= (
        outcomes
    )
