from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import MaxValueValidator

from labeling.models import JobStatus, Judge, PairConversion, Project, Snapshot, SnapshotPolicy
from training.models import Checkpoint, PairingMode, PromptSelection
from training.pairing import (
    BEST_WORST_DEFAULT_K,
    BEST_WORST_K_RANGE,
    JUDGE_HELP,
    SAMPLES_PER_PROMPT_HELP,
    best_worst_selector,
)
from training.params import (
    RUN_PARAMS_BY_NAME,
    SAMPLING_PARAMS_BY_NAME,
    ParamError,
    check_run_params,
)
from training.services import check_loss_for_snapshot


def reference_for(start: Checkpoint, choice: str | None) -> Checkpoint | None:
    """The reference checkpoint for a reference choice; None means the starting checkpoint."""
    if choice in (None, "", "start"):
        return None
    if choice == "base":
        root = start
        while root.parent is not None:
            root = root.parent
        return None if root.pk == start.pk else root
    if choice == "previous":
        if start.parent is None:
            raise ValueError(
                f"{start.name} is a base model: it has no previous round's checkpoint."
            )
        return start.parent
    raise ValueError(f"Unknown reference choice {choice!r}.")


class SnapshotForm(forms.Form):
    policy = forms.ChoiceField(choices=SnapshotPolicy.choices, initial=SnapshotPolicy.MAJORITY)
    min_agreement = forms.FloatField(
        min_value=0.0,
        max_value=0.99,
        initial=0.5,
        help_text="Majority policy: the winner needs more than this share of the votes.",
    )
    rounds = forms.CharField(
        required=False,
        label="Rounds",
        help_text="Round numbers to export, e.g. 3 or 1, 3; empty: every training round.",
    )
    exclude_flagged = forms.BooleanField(
        required=False,
        label="Leave out flagged annotators",
        help_text="The annotators the newest quality report flags (quality page).",
    )
    adjudicated_only = forms.BooleanField(
        required=False,
        label="Adjudicated comparisons only",
        help_text="Only comparisons a reviewer decided.",
    )
    # AI judges (docs/judges.md): whose votes count.
    votes_from = forms.ChoiceField(
        choices=[
            ("all", "Everyone: humans, imports and AI judges"),
            ("humans", "Humans and imports only"),
            ("judges", "AI judges only"),
            ("humans_win", "Both, humans winning where both voted"),
        ],
        initial="all",
        required=False,
        label="Votes from",
        help_text="Humans winning: a comparison with a human vote keeps only the human votes.",
    )
    exclude_judges = forms.CharField(
        required=False,
        label="Leave out judges",
        help_text="Judge names, comma-separated (the project's Judges page lists them).",
    )
    # Ranking tasks (docs/rankings.md): which pairs each ranking yields under ranking_pairs.
    pair_conversion = forms.ChoiceField(
        choices=[("", "None (not ranking_pairs)"), *PairConversion.choices],
        required=False,
        label="Pair conversion",
        help_text="Rankings converted to pairs: every implied pair, best versus worst, or "
        "adjacent positions.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        policy, conversion = cleaned.get("policy"), cleaned.get("pair_conversion")
        if policy == SnapshotPolicy.RANKING_PAIRS and not conversion:
            self.add_error("pair_conversion", "Choose how the rankings become pairs.")
        elif policy and policy != SnapshotPolicy.RANKING_PAIRS and conversion:
            self.add_error(
                "pair_conversion", "Only the ranking_pairs policy converts rankings to pairs."
            )
        return cleaned

    def clean_exclude_judges(self) -> list[str]:
        text = self.cleaned_data.get("exclude_judges", "") or ""
        return sorted({name.strip() for name in text.split(",") if name.strip()})

    def clean_rounds(self) -> list[int]:
        text = self.cleaned_data.get("rounds", "") or ""
        parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
        bad = [part for part in parts if not part.isdigit()]
        if bad:
            raise forms.ValidationError(
                f"Rounds are whole numbers separated by commas; not {', '.join(bad)}."
            )
        return sorted({int(part) for part in parts})

    def filters(self) -> dict[str, Any]:
        """Snapshot.filters as labeling.snapshots.request_snapshot takes them."""
        return {
            "rounds": self.cleaned_data["rounds"],
            "exclude_flagged": self.cleaned_data["exclude_flagged"],
            "adjudicated_only": self.cleaned_data["adjudicated_only"],
            **_VOTES_FROM.get(self.cleaned_data.get("votes_from") or "all", {}),
            "exclude_judges": self.cleaned_data["exclude_judges"],
        }


_VOTES_FROM: dict[str, dict[str, Any]] = {
    "humans": {"sources": ["human", "imported"]},
    "judges": {"sources": ["judge"]},
    "humans_win": {"humans_win": True},
}


REFERENCE_CHOICES = (
    ("start", "The starting checkpoint (standard; iterative DPO when it is last round's model)"),
    ("base", "The base model (every round stays close to the original model)"),
    ("previous", "The starting checkpoint's parent (the round before the starting one)"),
)


class RunForm(forms.Form):
    """A training run with the defaults a first DPO run on this project should use."""

    snapshot = forms.ModelChoiceField(queryset=Snapshot.objects.none())
    start_checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.none())
    reference = forms.ChoiceField(
        choices=REFERENCE_CHOICES,
        initial="start",
        label="Reference model",
        help_text="The model the policy is kept close to (docs/engine.md, Reference choices).",
    )
    reference_checkpoint = forms.ModelChoiceField(
        queryset=Checkpoint.objects.none(),
        required=False,
        empty_label="As chosen above",
        label="Or this reference checkpoint",
        help_text="Overrides the choice above.",
    )
    # Bounds, defaults and help come from training.params, as in the API and the engine check.
    loss_type = RUN_PARAMS_BY_NAME["loss_type"].form_field()
    beta = RUN_PARAMS_BY_NAME["beta"].form_field()
    label_smoothing = RUN_PARAMS_BY_NAME["label_smoothing"].form_field()
    learning_rate = RUN_PARAMS_BY_NAME["learning_rate"].form_field()
    epochs = RUN_PARAMS_BY_NAME["epochs"].form_field()
    batch_size = RUN_PARAMS_BY_NAME["batch_size"].form_field()
    micro_batch_size = RUN_PARAMS_BY_NAME["micro_batch_size"].form_field()
    max_length = RUN_PARAMS_BY_NAME["max_length"].form_field()
    warmup_steps = RUN_PARAMS_BY_NAME["warmup_steps"].form_field()
    lora = RUN_PARAMS_BY_NAME["lora"].form_field()

    def __init__(self, project: Project, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A raw_votes export (every vote, for analysis) holds no triples to train on.
        snapshots = Snapshot.objects.filter(project=project, status=JobStatus.SUCCEEDED).exclude(
            policy=SnapshotPolicy.RAW_VOTES
        )
        checkpoints = Checkpoint.objects.filter(project=project)
        self.fields["snapshot"].queryset = snapshots  # type: ignore[attr-defined]
        self.fields["start_checkpoint"].queryset = checkpoints  # type: ignore[attr-defined]
        self.fields["reference_checkpoint"].queryset = checkpoints  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start = cleaned.get("start_checkpoint")
        if start is not None and not cleaned.get("reference_checkpoint"):
            try:
                cleaned["reference_checkpoint"] = reference_for(start, cleaned.get("reference"))
            except ValueError as exc:
                self.add_error("reference", str(exc))
        if not self.errors:
            try:
                self.checked_hyperparameters = check_run_params(self._chosen(cleaned))
            except ParamError as exc:
                field = exc.key if exc.key in self.fields else None
                self.add_error(field, str(exc))
        snapshot = cleaned.get("snapshot")
        if not self.errors and snapshot is not None:
            # A ranking snapshot trains with plackett_luce, a pair snapshot with pair losses.
            try:
                check_loss_for_snapshot(snapshot, self.checked_hyperparameters["loss_type"])
            except ParamError as exc:
                self.add_error("loss_type", str(exc))
        return cleaned

    def _chosen(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "loss_type", "beta", "label_smoothing", "learning_rate", "epochs", "batch_size",
            "micro_batch_size", "max_length", "warmup_steps", "lora",
        )  # fmt: skip
        return {key: cleaned[key] for key in keys}

    def hyperparameters(self) -> dict[str, Any]:
        """Every run parameter: the form's values and the definition's defaults for the rest."""
        return self.checked_hyperparameters


class SamplingForm(forms.Form):
    selection = forms.ChoiceField(choices=PromptSelection.choices, initial=PromptSelection.ALL)
    prompt_limit = forms.IntegerField(min_value=1, required=False, label="How many prompts")
    pairing = forms.ChoiceField(choices=PairingMode.choices, initial=PairingMode.TWO_SAMPLES)
    previous_checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), required=False)
    samples_per_prompt = forms.IntegerField(
        min_value=BEST_WORST_K_RANGE[0],
        max_value=BEST_WORST_K_RANGE[1],
        initial=BEST_WORST_DEFAULT_K,
        required=False,
        label="Samples per prompt (K)",
        help_text=SAMPLES_PER_PROMPT_HELP,
    )
    judge = forms.ModelChoiceField(
        queryset=Judge.objects.none(), required=False, help_text=JUDGE_HELP
    )
    temperature = SAMPLING_PARAMS_BY_NAME["temperature"].form_field()
    top_p = SAMPLING_PARAMS_BY_NAME["top_p"].form_field()
    max_new_tokens = SAMPLING_PARAMS_BY_NAME["max_new_tokens"].form_field()
    seed = SAMPLING_PARAMS_BY_NAME["seed"].form_field()
    keep_empty = forms.BooleanField(
        required=False,
        initial=True,
        label="Keep pairs with one empty response",
        help_text="An empty answer is informative: annotators can prefer a real one over it. "
        "Ranking tasks: unticked, empty samples are left out of the K.",
    )

    def __init__(self, project: Project, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        queryset = Checkpoint.objects.filter(project=project)
        self.fields["previous_checkpoint"].queryset = queryset  # type: ignore[attr-defined]
        judges = Judge.objects.filter(project=project, enabled=True).order_by("name")
        self.fields["judge"].queryset = judges  # type: ignore[attr-defined]
        promoted = queryset.filter(promoted=True).order_by("-promoted_at", "-id").first()
        if promoted is not None and "previous_checkpoint" not in self.initial:
            self.initial["previous_checkpoint"] = promoted.pk
        # Held-out (eval) prompts are never sampled into a training round.
        self.prompt_count = project.prompts.filter(split="train").count()
        limit = self.fields["prompt_limit"]
        limit.help_text = f"At most the project's {self.prompt_count:,} prompts."
        limit.max_value = max(self.prompt_count, 1)  # type: ignore[attr-defined]
        limit.validators.append(MaxValueValidator(max(self.prompt_count, 1)))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("selection") != PromptSelection.ALL and not cleaned.get("prompt_limit"):
            self.add_error("prompt_limit", "Say how many prompts to sample.")
        if cleaned.get("pairing") == PairingMode.VERSUS_PREVIOUS and not cleaned.get(
            "previous_checkpoint"
        ):
            self.add_error("previous_checkpoint", "Pick the checkpoint to compare against.")
        if cleaned.get("pairing") in (PairingMode.BEST_WORST, PairingMode.RANKING) and (
            cleaned.get("samples_per_prompt") is None and "samples_per_prompt" not in self.errors
        ):
            self.add_error("samples_per_prompt", "Say how many samples to draw per prompt.")
        if cleaned.get("pairing") == PairingMode.BEST_WORST:
            if best_worst_selector() is None:
                self.add_error(
                    "judge",
                    "Best-versus-worst pairing needs the judging app, which is not installed.",
                )
            elif not cleaned.get("judge") and "judge" not in self.errors:
                self.add_error("judge", "Pick the judge that chooses the best and the worst.")
        return cleaned

    def generation(self) -> dict[str, Any]:
        return {
            key: self.cleaned_data[key]
            for key in ("temperature", "top_p", "max_new_tokens", "seed")
        }
