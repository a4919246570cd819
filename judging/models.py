"""Judging jobs and what each judge said about each comparison.

The judges themselves are labeling.models.Judge (a project's rows), and a consistent verdict
is a labeling Vote with source "judge". What has no Vote lives here: every verdict, both
orders' raw outputs, the outcome (consistent, inconsistent, unparseable, error), the margin
and the cost, which the agreement figures and the routing read.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.models import Job
from labeling.models import Comparison, Judge, Project, Round


class JudgeKindName(models.TextChoices):
    PROGRAMMATIC = "programmatic", "Programmatic check (a Python callable)"
    LLM = "llm", "LLM over an OpenAI-compatible endpoint"
    REWARD_MODEL = "reward_model", "Local reward model (sequence classification)"


class JudgingScope(models.TextChoices):
    ROUND = "round", "Every comparison of one round"
    NEEDS_VOTES = "needs_votes", "Comparisons that still need votes"


class Outcome(models.TextChoices):
    CONSISTENT = "consistent", "Both orders agreed"
    INCONSISTENT = "inconsistent", "The two orders disagreed"
    UNPARSEABLE = "unparseable", "An answer named neither side"
    ERROR = "error", "The judge failed"


class JudgingJob(Job):
    """One judge over a set of comparisons, both orders each; a core.models.Job."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judging_jobs")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="jobs")
    judge_version = models.PositiveIntegerField()
    scope = models.CharField(max_length=16, choices=JudgingScope.choices)
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.CASCADE, related_name="judging_jobs"
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    consistent = models.PositiveIntegerField(default=0)
    inconsistent = models.PositiveIntegerField(default=0)
    unparseable = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="Judge calls (HTTP requests, ...).")
    tokens = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="Wall-clock seconds spent judging.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Judging {self.pk}: {self.judge} ({self.done}/{self.total}, {self.status})"

    @property
    def progress_percent(self) -> int:
        return (
            round(100 * self.done / self.total) if self.total else (100 if self.is_finished else 0)
        )


class JudgeResult(models.Model):
    """What one judge (at one version) concluded about one comparison, from both orders."""

    comparison = models.ForeignKey(
        Comparison, on_delete=models.CASCADE, related_name="judge_results"
    )
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="results")
    judge_version = models.PositiveIntegerField()
    job = models.ForeignKey(
        JudgingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="results"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    # The verdict in the comparison's own terms (A, B or tie) when both orders agreed.
    choice = models.CharField(max_length=8, blank=True)
    # Each order's verdict in the comparison's terms (A, B, tie; empty: unparseable/error).
    choice_ab = models.CharField(max_length=8, blank=True)
    choice_ba = models.CharField(max_length=8, blank=True)
    output_ab = models.JSONField(default=dict, blank=True, help_text="Raw answer, A shown first.")
    output_ba = models.JSONField(default=dict, blank=True, help_text="Raw answer, B shown first.")
    margin = models.FloatField(
        null=True, blank=True, help_text="0..1 confidence from scores; empty for text answers."
    )
    error = models.TextField(blank=True)
    calls = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "judge", "judge_version"], name="one_result_per_judge_version"
            )
        ]
        indexes = [models.Index(fields=["judge", "outcome"], name="judge_result_outcome_idx")]

    def __str__(self) -> str:
        return f"{self.judge} on comparison {self.comparison_id}: {self.outcome}"
