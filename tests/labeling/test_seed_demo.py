"""The demo seed prints where the demo is really served."""

from io import StringIO

import pytest
from django.core.management import call_command

from labeling.models import Project


@pytest.mark.django_db
def test_seed_demo_prints_the_url_it_is_given_and_is_idempotent():
    out = StringIO()
    call_command("seed_demo", url="http://127.0.0.1:8100/", stdout=out)
    call_command("seed_demo", url="http://127.0.0.1:8100/", stdout=StringIO())
    assert "Log in at http://127.0.0.1:8100/ with any of:" in out.getvalue()
    assert "8000" not in out.getvalue()
    project = Project.objects.get()
    assert project.comparisons.count() == 60
