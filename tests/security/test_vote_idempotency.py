"""A vote carries the page's client key: a retry with the same key stores nothing new and says
the vote was already saved; another vote with the same key is refused by the database."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from labeling.models import Vote
from labeling.services import lease_next_comparison

HX = {"HTTP_HX_REQUEST": "true"}
KEY = "3f1c2a9e-8d4b-4e0f-9a51-2b7c6d8e9f01"


@pytest.mark.django_db
def test_a_retried_submit_is_stored_once_and_reported_as_saved(client, project, annotator):
    client.force_login(annotator)
    comparison = lease_next_comparison(annotator, project)
    assert comparison is not None
    url = reverse("labeling:vote", args=[project.id])
    body: dict[str, Any] = {
        "comparison": comparison.id,
        "choice": "A",
        "strength": "clear",
        "client_key": KEY,
    }
    first = client.post(url, body, **HX)
    assert first.status_code == 200 and "Vote saved." in first.content.decode()
    again = client.post(url, body, **HX)
    assert again.status_code == 200
    assert "Your vote was already saved." in again.content.decode()
    assert Vote.objects.filter(annotator=annotator).count() == 1
    assert Vote.objects.get(annotator=annotator).client_key == KEY


@pytest.mark.django_db
def test_without_a_key_a_second_submit_is_still_refused(client, project, annotator):
    client.force_login(annotator)
    comparison = lease_next_comparison(annotator, project)
    assert comparison is not None
    url = reverse("labeling:vote", args=[project.id])
    body = {"comparison": comparison.id, "choice": "tie"}
    client.post(url, body, **HX)
    again = client.post(url, body, **HX)
    # Refused as before (the comparison is voted), never reported as this submit's vote.
    assert "already saved" not in again.content.decode()
    assert Vote.objects.filter(annotator=annotator).count() == 1


@pytest.mark.django_db
def test_a_malformed_key_is_a_form_error(client, project, annotator):
    client.force_login(annotator)
    comparison = lease_next_comparison(annotator, project)
    assert comparison is not None
    response = client.post(
        reverse("labeling:vote", args=[project.id]),
        {"comparison": comparison.id, "choice": "tie", "client_key": "<script>"},
        **HX,
    )
    assert response.status_code == 400
    assert not Vote.objects.exists()


@pytest.mark.django_db
def test_the_key_is_unique_per_annotator(project, annotator):
    comparisons = list(project.comparisons.all()[:2])
    Vote.objects.create(
        comparison=comparisons[0], annotator=annotator, choice="tie", left_side="A", client_key=KEY
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(
            comparison=comparisons[1],
            annotator=annotator,
            choice="tie",
            left_side="A",
            client_key=KEY,
        )
    # Votes without a key are not affected by the constraint.
    Vote.objects.create(comparison=comparisons[1], annotator=annotator, choice="tie", left_side="A")
