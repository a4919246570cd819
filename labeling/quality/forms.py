"""The project admin's form for the thresholds that flag annotators (Project.quality_settings)."""

from __future__ import annotations

import dataclasses
from typing import Any

from django import forms

from .thresholds import SHARE_THRESHOLDS, THRESHOLD_HELP, Thresholds

_INTEGERS = {"min_votes", "min_gold_votes"}


def _field(field: dataclasses.Field[Any]) -> forms.Field:
    default = field.default
    label = field.name.replace("_", " ").capitalize()
    help_text = f"{THRESHOLD_HELP[field.name]} Default {default}."
    if field.name in _INTEGERS:
        return forms.IntegerField(
            min_value=1, max_value=100_000, initial=default, label=label, help_text=help_text
        )
    maximum: float | None = None
    if field.name == "position_min_deviation":
        maximum = 0.5
    elif field.name in SHARE_THRESHOLDS:
        maximum = 1.0
    return forms.FloatField(
        min_value=0.0, max_value=maximum, initial=default, label=label, help_text=help_text
    )


class QualitySettingsForm(forms.Form):
    """One field per ``Thresholds`` field; the dataclass's own checks run in ``clean``."""

    def __init__(self, *args: Any, current: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in dataclasses.fields(Thresholds):
            self.fields[field.name] = _field(field)
            if current and field.name in current:
                self.fields[field.name].initial = current[field.name]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors:
            try:
                self.thresholds = Thresholds(**cleaned)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned

    def settings(self) -> dict[str, Any]:
        """What Project.quality_settings stores: only the values that differ from the default,
        so a later change of a default reaches projects that never set it."""
        defaults = Thresholds()
        return {
            name: value
            for name, value in dataclasses.asdict(self.thresholds).items()
            if value != getattr(defaults, name)
        }
