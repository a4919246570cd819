"""Forms of the judges page: add a judge (staff), start a judging job (project admins)."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from judging.models import JudgeKindName, JudgingScope
from labeling.models import Project, Round

CONFIG_HELP = {
    JudgeKindName.PROGRAMMATIC: '{"callable": "judging.checks.exact_answer"}',
    JudgeKindName.LLM: (
        '{"base_url": "http://vllm.internal:8000/v1", "model": "...", "rubric": "... {prompt} '
        '{response_a} {response_b} {guidelines} ... [[A]], [[B]] or [[tie]]", "temperature": 0, '
        '"concurrency": 4, "timeout_seconds": 60, "max_retries": 4, '
        '"api_key_env": "PREFLAB_JUDGE_KEY_OPENAI"}'
    ),
    JudgeKindName.REWARD_MODEL: (
        '{"model": "<directory under PREFLAB_JUDGE_MODELS_DIR>", "mode": "pointwise", '
        '"batch_size": 16, "max_length": 1024, "device": "auto"}'
    ),
}


class JudgeForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=JudgeKindName.choices)
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="A JSON object; docs/judges.md lists every key. Examples: "
        + " · ".join(f"{kind}: {example}" for kind, example in CONFIG_HELP.items())
        + ". An API key is never written here: name the variable holding it.",
    )

    def clean_config(self) -> dict[str, Any]:
        raw = self.cleaned_data["config"]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} at line {exc.lineno}."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The config must be a JSON object {...}.")
        return value


class JudgeEditForm(forms.Form):
    """Change a judge's config (its version goes up) or switch it off and on."""

    config = JudgeForm.base_fields["config"]
    enabled = forms.BooleanField(required=False, help_text="Disabled judges start no jobs.")

    clean_config = JudgeForm.clean_config


class StartJudgingForm(forms.Form):
    scope = forms.ChoiceField(choices=JudgingScope.choices, initial=JudgingScope.NEEDS_VOTES)
    round = forms.ModelChoiceField(
        queryset=Round.objects.none(),
        required=False,
        help_text="For the scope 'Every comparison of one round'.",
    )

    def __init__(self, project: Project, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["round"].queryset = Round.objects.filter(project=project).order_by("-number")  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("scope") == JudgingScope.ROUND and not data.get("round"):
            self.add_error("round", "Choose the round to judge.")
        return data
