"""Training runs, their metrics and checkpoints, and sampling jobs that seed the next round.

Runs and sampling jobs are background jobs (core.models.Job): the database, not the broker,
is the truth about them, and core.jobs claims, heartbeats, fails and recovers them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.models import FINISHED_STATUSES as FINISHED_STATUSES
from core.models import Job, JobStatus

# The status of runs and sampling jobs: core's shared job status under its older name.
RunStatus = JobStatus


class Checkpoint(models.Model):
    """A model directory in Hugging Face format: a project's base model or a run's output."""

    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="checkpoints"
    )
    run = models.ForeignKey(
        "TrainingRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="checkpoints",
    )
    name = models.CharField(max_length=200)
    path = models.CharField(
        max_length=1000,
        help_text="An artifact store key (runs/<run>/checkpoint-<step>), an absolute directory "
        "or a hub id.",
    )
    step = models.PositiveIntegerField(null=True, blank=True)
    is_final = models.BooleanField(default=False)
    metrics = models.JSONField(default=dict, blank=True)
    trust_remote_code = models.BooleanField(
        default=False,
        help_text=(
            "Let the engine run Python code shipped with this model (auto_map in config.json) "
            "as the worker's user. Staff only; set it only for a model whose code you have read."
        ),
    )
    promoted = models.BooleanField(
        default=False,
        help_text="Passed the project's gate (or an admin overrode it): the default starting "
        "checkpoint and sampler of the next round. evaluation.PromotionDecision keeps why.",
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "path"], name="one_checkpoint_per_path")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def parent(self) -> Checkpoint | None:
        """The checkpoint this one was trained from (its run's start), None for a base model."""
        return self.run.start_checkpoint if self.run_id and self.run else None


class TrainingRun(Job):
    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="training_runs"
    )
    snapshot = models.ForeignKey(
        "labeling.Snapshot", on_delete=models.PROTECT, related_name="training_runs"
    )
    start_checkpoint = models.ForeignKey(
        Checkpoint, on_delete=models.PROTECT, related_name="runs_started"
    )
    reference_checkpoint = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs_referenced",
        help_text="Empty: the starting checkpoint is the reference.",
    )
    config = models.JSONField(default=dict, help_text="Engine hyperparameters.")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    latest_metrics = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    out_dir = models.CharField(
        max_length=1000, blank=True, help_text="The run's artifact store key: runs/<id>."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.status})"

    @property
    def progress_percent(self) -> int:
        if not self.total_steps:
            return 100 if self.status == RunStatus.SUCCEEDED else 0
        return min(100, round(100 * self.step / self.total_steps))


class RunMetric(models.Model):
    """One line of a run's metrics stream (train or eval), kept for the run page's plots."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metric_rows")
    split = models.CharField(max_length=8)
    step = models.PositiveIntegerField()
    values = models.JSONField()

    class Meta:
        ordering = ["run", "split", "step"]
        constraints = [
            models.UniqueConstraint(fields=["run", "split", "step"], name="one_metric_row_per_step")
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} {self.split} step {self.step}"


class PairingMode(models.TextChoices):
    TWO_SAMPLES = "two_samples", "Two samples of the new checkpoint"
    VERSUS_PREVIOUS = "versus_previous", "New checkpoint against the previous one"
    BEST_WORST = "best_worst", "K samples, best against worst by a judge"
    RANKING = "ranking", "K samples per prompt as one ranking task"


class PromptSelection(models.TextChoices):
    ALL = "all", "All prompts"
    FEWEST_VOTES = "fewest_votes", "Prompts with the fewest votes"
    RANDOM = "random", "A random sample"


class SamplingJob(Job):
    """Generate responses with a checkpoint and open them as the next round of comparisons."""

    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="sampling_jobs"
    )
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    previous_checkpoint = models.ForeignKey(
        Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pairing = models.CharField(
        max_length=24, choices=PairingMode.choices, default=PairingMode.TWO_SAMPLES
    )
    selection = models.CharField(
        max_length=24, choices=PromptSelection.choices, default=PromptSelection.ALL
    )
    prompt_limit = models.PositiveIntegerField(null=True, blank=True)
    generation = models.JSONField(
        default=dict, help_text="temperature, top_p, max_new_tokens, seed"
    )
    round = models.ForeignKey(
        "labeling.Round", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comparisons_created = models.PositiveIntegerField(default=0)
    ranking_tasks_created = models.PositiveIntegerField(
        default=0, help_text="Ranking tasks opened (ranking pairing: one per prompt)."
    )
    dropped_identical = models.PositiveIntegerField(
        default=0,
        help_text="Pairs of two identical responses; ranking pairing: prompts with fewer than "
        "3 distinct samples.",
    )
    dropped_empty = models.PositiveIntegerField(
        default=0, help_text="Pairs dropped because a side was empty (keep_empty off)."
    )
    dropped_missing = models.PositiveIntegerField(
        default=0, help_text="Prompts the engine returned no second response for."
    )
    keep_empty = models.BooleanField(
        default=True,
        help_text="Keep pairs with one empty response: an empty answer is informative.",
    )
    samples_per_prompt = models.PositiveSmallIntegerField(
        default=2,
        help_text="Samples drawn per prompt (K); best_worst and ranking pairing draw 3-8.",
    )
    judge = models.ForeignKey(
        "labeling.Judge",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The judge that picks the best and the worst of K (best_worst pairing).",
    )
    dropped_judge_tie = models.PositiveIntegerField(
        default=0, help_text="Prompts whose best and worst of K tied on the judge's wins."
    )
    dropped_judge_error = models.PositiveIntegerField(
        default=0, help_text="Prompts the judge failed on (an error or the time limit)."
    )
    judge_calls = models.PositiveIntegerField(default=0)
    judge_tokens = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Sampling {self.pk} with {self.checkpoint} ({self.status})"
