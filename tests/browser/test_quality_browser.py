"""The quality page in Chromium: uPlot draws every bar chart from the cached report, under the
site's Content-Security-Policy, with no script error, and nothing scrolls sideways on a phone."""

from typing import Any

import pytest

from labeling.models import QualityReport, Role
from labeling.quality.jobs import compute_quality_report
from labeling.services import add_member
from tests.conftest import make_user
from tests.labeling.quality.db_crowd import seed_crowd

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def open_quality(page: Any, live_server: Any, project: Any, username: str) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            r.status >= 400
            and not r.url.endswith("/favicon.ico")
            and errors.append(f"{r.status} {r.url}")
        ),
    )
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.pk}/quality/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return errors


def test_the_quality_charts_draw_under_the_csp(live_server, page, make_project):
    crowd = seed_crowd(make_project, "Browser crowd", pairs=24)
    add_member(crowd.project, make_user("quality_quinn"), Role.REVIEWER)
    # The row is made directly: request_quality_report would also send a task after commit.
    compute_quality_report(QualityReport.objects.create(project=crowd.project).pk)
    errors = open_quality(page, live_server, crowd.project, "quality_quinn")
    figures = page.locator("figure[data-quality-chart]")
    count = figures.count()
    assert count == 5
    page.wait_for_function(
        f"() => document.querySelectorAll('figure[data-quality-chart] canvas').length >= {count}"
    )
    summary = page.locator('figure[data-quality-chart="model-win-rates"] [data-summary]')
    assert "good-model" in summary.text_content()
    assert "crowd-lefty" in page.locator('[data-testid="flagged"]').inner_text()
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('figure canvas').length >= 5")
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


def test_the_quality_page_has_no_serious_axe_violations(live_server, browser, make_project):
    from tests.browser.test_accessibility import serious_violations

    crowd = seed_crowd(make_project, "Axe crowd", pairs=24)
    add_member(crowd.project, make_user("quality_axel"), Role.ADMIN)
    compute_quality_report(QualityReport.objects.create(project=crowd.project).pk)
    # axe is injected as an inline script, which the site's CSP refuses: this context only.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        open_quality(page, live_server, crowd.project, "quality_axel")
        page.wait_for_function("() => document.querySelectorAll('figure canvas').length >= 5")
        assert page.locator("#quality-settings").count() == 1  # the admin's threshold form
        assert serious_violations(page) == []
    finally:
        context.close()
