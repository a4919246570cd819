"""Forms of the evaluation pages: start an evaluation, hold prompts out, the gate rule, override."""

from __future__ import annotations

from typing import Any

from django import forms

from evaluation.gate import GateRule
from evaluation.models import DEFAULT_MIN_VOTES
from labeling.models import Project
from training.models import Checkpoint
from training.params import SAMPLING_PARAMS_BY_NAME, SEED_MAX


class EvaluationForm(forms.Form):
    opponents = forms.ModelMultipleChoiceField(
        queryset=Checkpoint.objects.none(),
        help_text="Compared against on every held-out prompt; default the checkpoint's parent.",
    )
    prompt_limit = forms.IntegerField(
        min_value=1,
        required=False,
        label="How many held-out prompts",
        help_text="Empty: all of them. Otherwise a seeded random sample.",
    )
    min_votes = forms.IntegerField(
        min_value=0,
        initial=DEFAULT_MIN_VOTES,
        label="Votes before the figures count",
        help_text="Until this many votes are in, results are provisional and the gate refuses.",
    )
    # The same generation settings, and the same seed per prompt, for every model.
    temperature = SAMPLING_PARAMS_BY_NAME["temperature"].form_field()
    top_p = SAMPLING_PARAMS_BY_NAME["top_p"].form_field()
    max_new_tokens = SAMPLING_PARAMS_BY_NAME["max_new_tokens"].form_field()
    seed = SAMPLING_PARAMS_BY_NAME["seed"].form_field()

    def __init__(self, project: Project, checkpoint: Checkpoint, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        others = Checkpoint.objects.filter(project=project).exclude(id=checkpoint.pk)
        self.fields["opponents"].queryset = others  # type: ignore[attr-defined]
        rule_votes = (project.gate_rule or {}).get("min_votes")
        if isinstance(rule_votes, int) and rule_votes > 0:
            self.fields["min_votes"].initial = max(rule_votes, DEFAULT_MIN_VOTES)

    def generation(self) -> dict[str, Any]:
        return {
            key: self.cleaned_data[key]
            for key in ("temperature", "top_p", "max_new_tokens", "seed")
        }


class HoldOutForm(forms.Form):
    percent = forms.FloatField(
        min_value=0.1,
        max_value=99.9,
        initial=20,
        label="Hold out (%)",
        help_text="Of the prompts whose split is not chosen yet; their split is then fixed.",
    )
    seed = forms.IntegerField(
        min_value=0, max_value=SEED_MAX, initial=0, help_text="Same seed, same prompts held out."
    )


def _rate_field(label: str, help_text: str) -> forms.FloatField:
    return forms.FloatField(
        min_value=0.0, max_value=1.0, required=False, label=label, help_text=help_text
    )


class GateRuleForm(forms.Form):
    """Project.gate_rule: an empty threshold switches its condition off."""

    min_ci_low = _rate_field(
        "Interval's lower end above",
        "The lower end of the win-rate's 95% interval against each opponent must exceed this.",
    )
    min_lc_win_rate = _rate_field(
        "Length-controlled win-rate above", "The win-rate at equal length must exceed this."
    )
    min_win_rate = _rate_field("Raw win-rate above", "Off by default; the interval is stronger.")
    min_votes = forms.IntegerField(
        min_value=0,
        initial=0,
        label="At least this many votes",
        help_text="Votes per opponent before anything is promoted.",
    )

    @classmethod
    def for_project(cls, project: Project, data: Any = None) -> GateRuleForm:
        from evaluation.services import gate_rule_for

        try:
            rule = gate_rule_for(project)
        except (TypeError, ValueError):
            rule = GateRule()
        initial = {
            "min_ci_low": rule.min_ci_low,
            "min_lc_win_rate": rule.min_lc_win_rate,
            "min_win_rate": rule.min_win_rate,
            "min_votes": rule.min_votes,
        }
        return cls(data, initial=initial)

    def rule(self) -> dict[str, Any]:
        """The rule as Project.gate_rule stores it: every key, None for a condition off."""
        data = self.cleaned_data
        rule = {key: data[key] for key in ("min_ci_low", "min_lc_win_rate", "min_win_rate")}
        return {**rule, "min_votes": data["min_votes"] or 0}


class OverrideForm(forms.Form):
    action = forms.ChoiceField(
        choices=(("promote", "Promote it anyway"), ("withdraw", "Withdraw its promotion"))
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text="Why you override the gate; kept with your name and the time.",
    )
