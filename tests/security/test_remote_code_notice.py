"""A checkpoint that staff allowed to run its own code is named in red on the project's pages;
only the admin can set it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from training.models import Checkpoint
from training.services import register_base_model


@pytest.mark.django_db
def test_the_project_and_pipeline_pages_name_a_remote_code_checkpoint(
    client, project, reviewer
) -> None:
    checkpoint = register_base_model(project, "/models/custom-arch", "custom-arch")
    client.force_login(reviewer)
    pages = [
        reverse("labeling:project_detail", args=[project.id]),
        reverse("training:pipeline", args=[project.id]),
    ]
    for url in pages:
        assert "remote-code" not in client.get(url).content.decode()
    Checkpoint.objects.filter(id=checkpoint.id).update(trust_remote_code=True)
    detail = client.get(pages[0]).content.decode()
    assert 'class="notice error remote-code"' in detail and "custom-arch" in detail
    assert 'class="remote-code"' in client.get(pages[1]).content.decode()


@pytest.mark.django_db
def test_only_staff_reach_the_switch_in_the_admin(client, project, project_admin) -> None:
    checkpoint = register_base_model(project, "/models/custom-arch", "custom-arch")
    url = reverse("admin:training_checkpoint_change", args=[checkpoint.id])
    client.force_login(project_admin)  # a project admin is not staff
    assert client.get(url).status_code == 302
    staff = get_user_model().objects.create_superuser("staff", "s@example.org", "pw-staff")
    client.force_login(staff)
    response = client.post(url, {"name": "custom-arch", "trust_remote_code": "on"})
    assert response.status_code == 302
    checkpoint.refresh_from_db()
    assert checkpoint.trust_remote_code is True
    assert checkpoint.path == "/models/custom-arch"
