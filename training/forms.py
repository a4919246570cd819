from __future__ import annotations

from typing import Any

from django import forms

from labeling.models import JobStatus, Project, Snapshot, SnapshotPolicy
from training.models import Checkpoint, PairingMode, PromptSelection


class SnapshotForm(forms.Form):
    policy = forms.ChoiceField(choices=SnapshotPolicy.choices, initial=SnapshotPolicy.MAJORITY)
    min_agreement = forms.FloatField(
        min_value=0.0,
        max_value=0.99,
        initial=0.5,
        help_text="Majority policy: the winner needs more than this share of the votes.",
    )


class RunForm(forms.Form):
    """A training run with the defaults a first DPO run on this project should use."""

    snapshot = forms.ModelChoiceField(queryset=Snapshot.objects.none())
    start_checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.none())
    reference_checkpoint = forms.ModelChoiceField(
        queryset=Checkpoint.objects.none(),
        required=False,
        empty_label="Same as the starting checkpoint",
    )
    loss_type = forms.ChoiceField(
        choices=[("sigmoid", "DPO (sigmoid)"), ("ipo", "IPO")], initial="sigmoid"
    )
    beta = forms.FloatField(min_value=0.001, max_value=10.0, initial=0.1)
    label_smoothing = forms.FloatField(min_value=0.0, max_value=0.49, initial=0.0)
    learning_rate = forms.FloatField(min_value=1e-9, max_value=1e-2, initial=5e-6)
    epochs = forms.IntegerField(min_value=1, max_value=100, initial=1)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=16)
    micro_batch_size = forms.IntegerField(min_value=1, max_value=512, initial=4)
    max_length = forms.IntegerField(min_value=16, max_value=32768, initial=512)
    lora = forms.BooleanField(required=False, label="LoRA (train an adapter, not all weights)")

    def __init__(self, project: Project, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        snapshots = Snapshot.objects.filter(project=project, status=JobStatus.SUCCEEDED)
        checkpoints = Checkpoint.objects.filter(project=project)
        self.fields["snapshot"].queryset = snapshots  # type: ignore[attr-defined]
        self.fields["start_checkpoint"].queryset = checkpoints  # type: ignore[attr-defined]
        self.fields["reference_checkpoint"].queryset = checkpoints  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (cleaned.get("micro_batch_size") or 0) > (cleaned.get("batch_size") or 0):
            self.add_error("micro_batch_size", "Must not exceed the batch size.")
        elif cleaned.get("batch_size") and cleaned["batch_size"] % cleaned["micro_batch_size"]:
            self.add_error("micro_batch_size", "Must divide the batch size.")
        return cleaned

    def hyperparameters(self) -> dict[str, Any]:
        keys = (
            "loss_type", "beta", "label_smoothing", "learning_rate", "epochs", "batch_size",
            "micro_batch_size", "max_length", "lora",
        )  # fmt: skip
        params = {key: self.cleaned_data[key] for key in keys}
        params["max_prompt_length"] = params["max_length"] // 2
        # Every step's metrics feed the run page's plots; eval every 10 steps and at the end.
        params["log_every"] = 1
        params["eval_every"] = 10
        return params


class SamplingForm(forms.Form):
    selection = forms.ChoiceField(choices=PromptSelection.choices, initial=PromptSelection.ALL)
    prompt_limit = forms.IntegerField(min_value=1, required=False, label="How many prompts")
    pairing = forms.ChoiceField(choices=PairingMode.choices, initial=PairingMode.TWO_SAMPLES)
    previous_checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), required=False)
    temperature = forms.FloatField(min_value=0.0, max_value=5.0, initial=1.0)
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, initial=0.95)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, initial=128)
    seed = forms.IntegerField(min_value=0, initial=0)

    def __init__(self, project: Project, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        queryset = Checkpoint.objects.filter(project=project)
        self.fields["previous_checkpoint"].queryset = queryset  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("selection") != PromptSelection.ALL and not cleaned.get("prompt_limit"):
            self.add_error("prompt_limit", "Say how many prompts to sample.")
        if cleaned.get("pairing") == PairingMode.VERSUS_PREVIOUS and not cleaned.get(
            "previous_checkpoint"
        ):
            self.add_error("previous_checkpoint", "Pick the checkpoint to compare against.")
        return cleaned

    def generation(self) -> dict[str, Any]:
        return {
            key: self.cleaned_data[key]
            for key in ("temperature", "top_p", "max_new_tokens", "seed")
        }
