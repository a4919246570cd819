"""The labeling data model: projects, their members, prompts, completions, comparisons, votes.

A decisive vote stores the chosen and the rejected completion, which is the preference triple
(x, y_w, y_l) that snapshots export and DPO trains on.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

# JobStatus is core's shared job status; importing it from here keeps working.
from core.models import Job, JobStatus


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


class QueueOrder(models.TextChoices):
    NEWEST_ROUND = "newest_round", "Newest round first"
    FEWEST_VOTES = "fewest_votes", "Fewest votes first"
    RANDOM = "random", "Random"


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Votes each comparison needs from distinct annotators.",
    )
    base_model = models.CharField(
        max_length=500, blank=True, help_text="A local path or hub id of the starting model."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )
    queue_order = models.CharField(
        max_length=16,
        choices=QueueOrder.choices,
        default=QueueOrder.NEWEST_ROUND,
        help_text="Which open comparison an annotator is served next.",
    )
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of an annotator's served items that are gold items, when any exist.",
    )
    quality_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Thresholds that flag annotators (docs/quality.md); empty keys use defaults.",
    )
    judged_to_humans = models.BooleanField(
        default=True,
        help_text="Comparisons that judges decided consistently are still served to humans.",
    )
    gate_rule = models.JSONField(
        default=dict,
        blank=True,
        help_text="The promotion rule a checkpoint's evaluation must pass (docs/evaluation.md).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]
        ordering = ["project", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"

    @property
    def can_manage(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def can_review(self) -> bool:
        return self.role in (Role.ADMIN, Role.REVIEWER)


class RoundStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class RoundPurpose(models.TextChoices):
    TRAINING = "training", "Training"
    EVALUATION = "evaluation", "Evaluation"


class Round(models.Model):
    """A project's k-th batch of comparisons: imported pairs, or samples of one checkpoint.

    An evaluation round compares checkpoints on held-out prompts; its votes measure models
    and never go into a training snapshot.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    source = models.CharField(
        max_length=500, blank=True, help_text="What produced the pairs: an import or a checkpoint."
    )
    status = models.CharField(max_length=16, choices=RoundStatus.choices, default=RoundStatus.OPEN)
    purpose = models.CharField(
        max_length=16, choices=RoundPurpose.choices, default=RoundPurpose.TRAINING
    )
    checkpoint = models.ForeignKey(
        "training.Checkpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rounds",
        help_text="The checkpoint whose samples made this round.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_per_project")
        ]
        ordering = ["project", "number"]

    def __str__(self) -> str:
        return f"{self.project} round {self.number}"


class PromptSplit(models.TextChoices):
    TRAIN = "train", "Training"
    EVAL = "eval", "Held out for evaluation"


class Prompt(models.Model):
    """The x of a triple: plain text, or a chat given as a list of {role, content} messages.

    A held-out (eval) prompt is never sampled into a training round nor exported into a
    training snapshot; once chosen, a prompt's split does not change.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    split = models.CharField(
        max_length=8, choices=PromptSplit.choices, default=PromptSplit.TRAIN, db_index=True
    )
    text = models.TextField(blank=True)
    messages = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(text="") | Q(messages__isnull=False), name="prompt_has_content"
            )
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.preview

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def preview(self) -> str:
        content = str(self.messages[-1].get("content", "")) if self.messages else self.text
        return content[:80] + ("…" if len(content) > 80 else "")


class Completion(models.Model):
    """One response y to a prompt, and what wrote it."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    text = models.TextField()
    model_name = models.CharField(max_length=500, blank=True)
    checkpoint = models.ForeignKey(
        "training.Checkpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="completions",
    )
    generation_params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.model_name or 'unknown model'}: {self.text[:60]}"


class Choice(models.TextChoices):
    A = "A", "A is better"
    B = "B", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


DECISIVE_CHOICES = (Choice.A, Choice.B)


class Strength(models.TextChoices):
    SLIGHT = "slight", "Slightly"
    CLEAR = "clear", "Clearly"
    STRONG = "strong", "Strongly"


class Side(models.TextChoices):
    A = "A", "A"
    B = "B", "B"


class Comparison(models.Model):
    """The unit of annotation work: a prompt and two of its completions.

    The lease columns reserve the comparison for one annotator at a time; an expired lease is
    free for anyone, so abandoned work returns to the pool without a sweeper.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    completion_a = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    votes_target = models.PositiveSmallIntegerField(help_text="Votes this comparison needs.")
    vote_count = models.PositiveSmallIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    gold_choice = models.CharField(max_length=16, choices=Choice.choices, blank=True)
    leased_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="leased_comparisons",
    )
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Written by judging jobs (judging/routing.py), read by the lease query: humans see
    # comparisons with a higher priority first (judge-inconsistent, judges disagreeing, a small
    # margin), and judge-decided ones not at all when the project's judged_to_humans is off.
    judge_priority = models.PositiveSmallIntegerField(
        default=0, help_text="0: no judge doubt; higher: humans should see it sooner."
    )
    judge_decided = models.BooleanField(
        default=False, help_text="Judges agreed on a winner, consistently in both orders."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(vote_count__lte=F("votes_target")), name="never_over_voted"
            ),
            models.CheckConstraint(
                condition=~Q(completion_a=F("completion_b")), name="two_distinct_completions"
            ),
        ]
        indexes = [
            # Serve the lease query's orders (labeling.services.QUEUE_ORDERING) directly:
            # judges' doubts first, then newest round and most votes (newest_round), or
            # fewest votes (fewest_votes); gold items are leased by another path.
            models.Index(
                "project",
                F("judge_priority").desc(),
                F("round").desc(),
                F("vote_count").desc(),
                "id",
                condition=Q(vote_count__lt=F("votes_target"), is_gold=False),
                name="comparison_lease_idx",
            ),
            models.Index(
                "project",
                F("judge_priority").desc(),
                "vote_count",
                "id",
                condition=Q(vote_count__lt=F("votes_target"), is_gold=False),
                name="comparison_lease_fewest_idx",
            ),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Comparison {self.pk} ({self.vote_count}/{self.votes_target})"

    @property
    def is_complete(self) -> bool:
        return self.vote_count >= self.votes_target

    def completion_on(self, side: str) -> Completion:
        return self.completion_a if side == Side.A else self.completion_b


class VoteSource(models.TextChoices):
    HUMAN = "human", "Human annotator"
    JUDGE = "judge", "AI judge"
    IMPORTED = "imported", "Imported"


class Judge(models.Model):
    """Something other than a person that votes: an LLM endpoint, a reward model or a callable.

    Its votes are Votes with source "judge"; they never take a human's overlap slot.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judges")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16)
    config = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(
        default=1, help_text="Raised whenever the configuration changes; votes keep theirs."
    )
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="judge_name_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Vote(models.Model):
    """One judgment of one comparison. A decisive vote names chosen and rejected completions."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="votes")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="votes",
        help_text="Empty for preferences imported from an existing data set.",
    )
    choice = models.CharField(max_length=16, choices=Choice.choices)
    strength = models.CharField(max_length=16, choices=Strength.choices, blank=True)
    rationale = models.TextField(blank=True)
    chosen = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejected = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    left_side = models.CharField(
        max_length=1, choices=Side.choices, help_text="Which completion the annotator saw left."
    )
    time_taken_ms = models.PositiveIntegerField(null=True, blank=True)
    imported_from = models.CharField(max_length=500, blank=True)
    source = models.CharField(
        max_length=16, choices=VoteSource.choices, default=VoteSource.HUMAN, db_index=True
    )
    judge = models.ForeignKey(
        Judge, null=True, blank=True, on_delete=models.PROTECT, related_name="votes"
    )
    judge_version = models.PositiveIntegerField(null=True, blank=True)
    judge_output = models.JSONField(
        default=dict, blank=True, help_text="A judge's raw answers or scores, both orders."
    )
    client_key = models.CharField(
        max_length=64,
        blank=True,
        help_text=(
            "Idempotency key generated by the annotation page for each submit; a retried "
            "submit with the same key is recognised as already stored."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="one_vote_per_annotator"
            ),
            models.UniqueConstraint(
                fields=["annotator", "client_key"],
                condition=~Q(client_key=""),
                name="vote_client_key_unique_per_annotator",
            ),
            models.CheckConstraint(
                condition=(
                    Q(choice__in=DECISIVE_CHOICES, chosen__isnull=False, rejected__isnull=False)
                    | (
                        ~Q(choice__in=DECISIVE_CHOICES)
                        & Q(chosen__isnull=True, rejected__isnull=True, strength="")
                    )
                ),
                name="decisive_vote_names_triple",
            ),
            models.CheckConstraint(
                condition=Q(annotator__isnull=False)
                | ~Q(imported_from="")
                | Q(judge__isnull=False),
                name="vote_has_author_or_source",
            ),
            models.UniqueConstraint(
                fields=["comparison", "judge"],
                condition=Q(judge__isnull=False),
                name="one_vote_per_judge",
            ),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="vote_by_annotator_idx")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Vote {self.pk}: {self.choice} on comparison {self.comparison_id}"

    @property
    def is_decisive(self) -> bool:
        return self.choice in DECISIVE_CHOICES


class SnapshotPolicy(models.TextChoices):
    EVERY_VOTE = "every_vote", "Every decisive vote is its own triple"
    MAJORITY = "majority", "One triple per comparison by majority"
    RELIABILITY_WEIGHTED = (
        "reliability_weighted",
        "One triple per comparison, weighted by annotator reliability",
    )
    RAW_VOTES = "raw_votes", "Every vote, ties and both-bad included (for analysis)"
    # Ranking tasks' policies (docs/rankings.md): listwise rows, or pairs converted from them.
    RANKINGS = "rankings", "Rankings: every ranking is one listwise row"
    RANKING_CONSENSUS = "ranking_consensus", "Rankings: one Borda consensus per ranking task"
    RANKING_PAIRS = "ranking_pairs", "Rankings converted to pairs (a pair conversion policy)"


RANKING_POLICIES = (
    SnapshotPolicy.RANKINGS,
    SnapshotPolicy.RANKING_CONSENSUS,
    SnapshotPolicy.RANKING_PAIRS,
)


class PairConversion(models.TextChoices):
    """How a ranking becomes pairs (training.engine.rankings.PAIR_POLICIES)."""

    ALL = "all", "Every implied pair"
    BEST_WORST = "best_worst", "Best versus worst"
    ADJACENT = "adjacent", "Adjacent positions"


class SnapshotFrozen(Exception):
    """A ready snapshot's row and files never change; make a new snapshot instead."""


class Snapshot(Job):
    """An immutable, content-hashed export of a project's preference triples.

    A background job (core.models.Job): status SUCCEEDED means published ("ready" in the
    export API); from then on the row and its files never change. The same votes and the same
    policy give byte-identical files, so the SHA-256 of the JSONL file identifies the data set.
    """

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="snapshots")
    policy = models.CharField(max_length=32, choices=SnapshotPolicy.choices)
    min_agreement = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Majority policy: the winner's share of decisive votes must exceed this.",
    )
    filters = models.JSONField(
        default=dict,
        blank=True,
        help_text="Which votes count: rounds, sources, excluded judges or annotators, "
        "adjudicated only (docs/quality.md).",
    )
    pair_conversion = models.CharField(
        max_length=16,
        choices=PairConversion.choices,
        blank=True,
        help_text="The ranking_pairs policy: which pairs each ranking yields.",
    )
    row_count = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    parquet_sha256 = models.CharField(max_length=64, blank=True)
    path = models.CharField(
        max_length=500,
        blank=True,
        help_text="The artifact store key of the files' directory: snapshots/<project>/<id>.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        short = self.sha256[:12] if self.sha256 else self.status
        return f"Snapshot {self.pk} of {self.project} ({short})"

    @property
    def is_ready(self) -> bool:
        """Published: its files can be downloaded and trained on."""
        return self.status == JobStatus.SUCCEEDED

    def get_status_display(self) -> str:  # type: ignore[no-redef]
        return "Ready" if self.is_ready else JobStatus(self.status).label

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            stored = Snapshot.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == JobStatus.SUCCEEDED:
                raise SnapshotFrozen(f"Snapshot {self.pk} is published and cannot be modified.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        if self.status == JobStatus.SUCCEEDED:
            raise SnapshotFrozen(f"Snapshot {self.pk} is published and cannot be deleted.")
        return super().delete(*args, **kwargs)  # type: ignore[arg-type]


class Adjudication(models.Model):
    """A reviewer's decision on a comparison; it wins over the votes in every export."""

    comparison = models.OneToOneField(
        Comparison, on_delete=models.CASCADE, related_name="adjudication"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications"
    )
    choice = models.CharField(max_length=16, choices=Choice.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Adjudication of comparison {self.comparison_id}: {self.choice}"


class AnnotatorExclusion(models.Model):
    """A reviewer's decision to keep one annotator's votes out of future snapshots.

    Reversible: lifting it records who and when, and the row stays as history.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exclusions")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exclusions"
    )
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "annotator"],
                condition=Q(lifted_at__isnull=True),
                name="one_active_exclusion_per_annotator",
            )
        ]

    def __str__(self) -> str:
        return f"{self.annotator} excluded from {self.project}"

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None


class FlagKind(models.TextChoices):
    SKIP = "skip", "Skipped"
    FLAG = "flag", "Flagged for review"


class FlagReason(models.TextChoices):
    UNREADABLE = "unreadable", "Unreadable"
    HARMFUL = "harmful", "Harmful content"
    CANNOT_JUDGE = "cannot_judge", "Cannot judge"
    OTHER = "other", "Other"


class ItemFlag(models.Model):
    """An annotator skipped a comparison or flagged it for a reviewer, with a reason."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="flags")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="item_flags"
    )
    kind = models.CharField(max_length=8, choices=FlagKind.choices)
    reason = models.CharField(max_length=16, choices=FlagReason.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "user"], name="one_flag_per_user_item")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} comparison {self.comparison_id}: {self.reason}"


class Invite(models.Model):
    """A one-time link that makes whoever opens it a member of a project with a role."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invites")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invite to {self.project} as {self.role}"


class QualityReport(Job):
    """The cached quality figures of a project, or of one of its rounds, and the job computing them.

    The quality page and API read the newest succeeded report; `data` holds every figure.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="quality_reports")
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.CASCADE, related_name="quality_reports"
    )
    data = models.JSONField(default=dict, blank=True)
    vote_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        scope = f"round {self.round.number}" if self.round_id and self.round else "all rounds"
        return f"Quality of {self.project} ({scope}, {self.status})"


RANKING_K_RANGE = (3, 8)


class RankingTask(models.Model):
    """The unit of ranking work: a prompt and K (3-8) of its completions, to order best first.

    Leased, overlapped and counted like a Comparison; its items fix the canonical order
    0..K-1 that stored rankings index into (docs/rankings.md).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ranking_tasks")
    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="ranking_tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="ranking_tasks")
    size = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(RANKING_K_RANGE[0]), MaxValueValidator(RANKING_K_RANGE[1])],
        help_text="K: how many responses are ranked.",
    )
    votes_target = models.PositiveSmallIntegerField(help_text="Rankings this task needs.")
    vote_count = models.PositiveSmallIntegerField(default=0)
    leased_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="leased_ranking_tasks",
    )
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(vote_count__lte=F("votes_target")), name="ranking_never_over_voted"
            ),
            models.CheckConstraint(
                condition=Q(size__gte=RANKING_K_RANGE[0], size__lte=RANKING_K_RANGE[1]),
                name="ranking_size_in_range",
            ),
        ]
        indexes = [
            models.Index(
                "project",
                F("round").desc(),
                F("vote_count").desc(),
                "id",
                condition=Q(vote_count__lt=F("votes_target")),
                name="ranking_task_lease_idx",
            ),
            models.Index(
                "project",
                "vote_count",
                "id",
                condition=Q(vote_count__lt=F("votes_target")),
                name="ranking_task_fewest_idx",
            ),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Ranking task {self.pk} (K={self.size}, {self.vote_count}/{self.votes_target})"

    @property
    def is_complete(self) -> bool:
        return self.vote_count >= self.votes_target


class RankingItem(models.Model):
    """One of a ranking task's K completions at its canonical position (0-based)."""

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="items")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "position"], name="one_item_per_position"),
            models.UniqueConstraint(fields=["task", "completion"], name="distinct_ranked_items"),
        ]
        ordering = ["task", "position"]

    def __str__(self) -> str:
        return f"Item {self.position} of ranking task {self.task_id}"


class Ranking(models.Model):
    """One annotator's (or an import's) order of a ranking task's K completions.

    `ranking` is best first over canonical positions, a nested list being a tie group
    (training.engine.rankings.parse_ranking: [2, [0, 3], 1]); `display_order` is the
    positions top to bottom as this annotator was shown them, so position bias can be measured.
    """

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="rankings")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rankings",
        help_text="Empty for rankings imported from an existing data set.",
    )
    ranking = models.JSONField()
    display_order = models.JSONField(default=list, blank=True)
    source = models.CharField(
        max_length=16, choices=VoteSource.choices, default=VoteSource.HUMAN, db_index=True
    )
    imported_from = models.CharField(max_length=500, blank=True)
    time_taken_ms = models.PositiveIntegerField(null=True, blank=True)
    client_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Idempotency key of the ranking page's submit (as Vote.client_key).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="one_ranking_per_annotator"),
            models.UniqueConstraint(
                fields=["annotator", "client_key"],
                condition=~Q(client_key=""),
                name="ranking_client_key_unique_per_annotator",
            ),
            models.CheckConstraint(
                condition=Q(annotator__isnull=False) | ~Q(imported_from=""),
                name="ranking_has_author_or_source",
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "created_at"], name="ranking_by_annotator_idx")
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Ranking {self.pk} of task {self.task_id}"


class RankingSkip(models.Model):
    """An annotator set a ranking task aside with a reason; it is never served to them again."""

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ranking_skips"
    )
    reason = models.CharField(max_length=16, choices=FlagReason.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "user"], name="one_skip_per_user_task")
        ]

    def __str__(self) -> str:
        return f"Ranking task {self.task_id} skipped: {self.reason}"
