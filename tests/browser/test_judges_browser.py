"""The judges page in Chromium: no serious axe violations with a judge, a job and the forms.

It lives beside the other browser tests so that it shares their one session Chromium: a second
Playwright in the same process would start inside the first one's event loop and fail.
"""

from __future__ import annotations

import pytest

from judging.services import add_judge, request_judging
from labeling.models import Role
from tests.browser.test_accessibility import axe_page, serious_violations  # noqa: F401
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_judges_page_has_no_serious_axe_violations(live_server, axe_page, make_project):  # noqa: F811
    admin = make_user("axe_judy")
    admin.is_staff = True
    admin.save()
    project = make_project("Judged", pairs=3, members={admin: Role.ADMIN})
    judge = add_judge(project, "exact", "programmatic", {"callable": "judging.checks.exact_answer"})
    request_judging(judge)
    page = axe_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "axe_judy")
    page.fill("#id_password", "pw-axe_judy")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/projects/{project.id}/judges/")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("progressbar").count() == 1
    assert page.get_by_role("button", name="Cancel").count() == 1
    assert not serious_violations(page)
