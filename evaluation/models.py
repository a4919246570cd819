"""Evaluation rounds of checkpoints on held-out prompts, and the gate's promotion decisions.

The statistics themselves are pure functions (evaluation.stats, evaluation.bradley_terry,
evaluation.gate); these rows hold what an evaluation compared and the figures last computed
from its votes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.models import Job

DEFAULT_MIN_VOTES = 50  # results are "provisional" until this many votes are in


class Evaluation(Job):
    """Generate a checkpoint's and its opponents' responses on held-out prompts with the same
    settings and seed per prompt, and open them as a round of blind comparisons."""

    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="evaluations"
    )
    checkpoint = models.ForeignKey(
        "training.Checkpoint", on_delete=models.PROTECT, related_name="evaluations"
    )
    opponents = models.ManyToManyField(
        "training.Checkpoint",
        related_name="evaluations_as_opponent",
        help_text="Compared against; default the checkpoint's parent (its run's start).",
    )
    round = models.ForeignKey(
        "labeling.Round", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    generation = models.JSONField(
        default=dict, help_text="temperature, top_p, max_new_tokens, seed: the same for every model"
    )
    prompt_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many held-out prompts; empty: all."
    )
    prompt_seeds = models.JSONField(
        default=dict, blank=True, help_text="{prompt id: seed}, the same for every model."
    )
    min_votes = models.PositiveIntegerField(
        default=DEFAULT_MIN_VOTES,
        help_text="The figures stay provisional until this many votes are in.",
    )
    comparisons_created = models.PositiveIntegerField(default=0)
    dropped_identical = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=dict, blank=True)
    results_key = models.CharField(
        max_length=64, blank=True, help_text="The votes the results were computed from."
    )
    results_at = models.DateTimeField(null=True, blank=True)
    provisional = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of {self.checkpoint} ({self.status})"


class Decision(models.TextChoices):
    PROMOTED = "promoted", "Promoted by the gate"
    REFUSED = "refused", "Refused by the gate"
    OVERRIDE_PROMOTED = "override_promoted", "Promoted by an admin's override"
    OVERRIDE_DEMOTED = "override_demoted", "Promotion withdrawn by an admin"


class PromotionDecision(models.Model):
    """One check of a checkpoint against the gate, or an admin's override: who, when and why."""

    checkpoint = models.ForeignKey(
        "training.Checkpoint", on_delete=models.CASCADE, related_name="promotion_decisions"
    )
    evaluation = models.ForeignKey(
        Evaluation, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    decision = models.CharField(max_length=24, choices=Decision.choices)
    rule = models.JSONField(default=dict, help_text="The gate rule as it was applied.")
    reasons = models.JSONField(default=list, help_text="Why the gate refused (empty if passed).")
    note = models.TextField(blank=True, help_text="An override's stated reason.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.checkpoint}: {self.get_decision_display()}"

    @property
    def is_override(self) -> bool:
        return self.decision in (Decision.OVERRIDE_PROMOTED, Decision.OVERRIDE_DEMOTED)
