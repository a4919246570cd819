from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from labeling.importers import ImportKind, OnDuplicate
from labeling.models import DECISIVE_CHOICES, Choice, Role, Strength


class VoteForm(forms.Form):
    comparison = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    choice = forms.ChoiceField(choices=Choice.choices, widget=forms.RadioSelect)
    strength = forms.ChoiceField(
        choices=Strength.choices, required=False, initial=Strength.CLEAR, widget=forms.RadioSelect
    )
    rationale = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("choice") in DECISIVE_CHOICES and not cleaned.get("strength"):
            self.add_error("strength", "Say how much better: slight, clear or strong.")
        if cleaned.get("choice") not in DECISIVE_CHOICES:
            cleaned["strength"] = ""
        return cleaned


_KIND_CHOICES = [
    (ImportKind.PROMPTS, "Prompts (to be sampled later)"),
    (ImportKind.PAIRS, "Pairs (prompt + two responses, to be labeled)"),
    (ImportKind.PREFERENCES, "Preferences (prompt / chosen / rejected, already labeled)"),
]


class ImportForm(forms.Form):
    kind = forms.ChoiceField(choices=_KIND_CHOICES)
    file = forms.FileField(help_text="JSONL or CSV, UTF-8.")
    on_duplicate = forms.ChoiceField(
        label="Duplicate rows",
        choices=[
            (OnDuplicate.REFUSE, "Refuse the file and list them"),
            (OnDuplicate.SKIP, "Skip them (import the first of each)"),
        ],
        initial=OnDuplicate.REFUSE,
        required=False,
        help_text="Rows that repeat an earlier row of the file exactly.",
    )

    def clean_on_duplicate(self) -> str:
        return self.cleaned_data.get("on_duplicate") or OnDuplicate.REFUSE


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"No user named {username!r}.")
        return user
