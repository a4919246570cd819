from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.utils import timezone

from api.models import Scope
from labeling.models import Project

EXPIRY_CHOICES = [
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("never", "Never"),
]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'training box'.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.READ, Scope.EXPORT],
    )
    projects = forms.ModelMultipleChoiceField(
        queryset=Project.objects.none(), widget=forms.CheckboxSelectMultiple
    )
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90")

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only projects the user belongs to can be chosen: a token never reaches further.
        field = self.fields["projects"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = Project.objects.filter(memberships__user=user).order_by("name")

    def expires_at(self) -> datetime | None:
        choice = self.cleaned_data["expires"]
        return None if choice == "never" else timezone.now() + timedelta(days=int(choice))
