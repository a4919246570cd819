"""axe-core (npm, pinned in package.json) finds no serious or critical violations on the
annotate, rank, project, pipeline, run and compare pages; focus is visible; every control is
named."""

from pathlib import Path

import pytest
from django.conf import settings

from labeling.models import Role
from tests.browser.test_charts_browser import make_run
from tests.conftest import make_user
from tests.labeling.test_ranking_services import make_ranking_tasks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def axe_page(browser):
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` (make setup does)")
    # axe is injected as an inline script, which the site's CSP rightly refuses; only this
    # test's context bypasses it.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def serious_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_main_pages_have_no_serious_axe_violations(live_server, axe_page, make_project):
    admin = make_user("axe_ada")
    project = make_project("Accessible", pairs=3, members={admin: Role.ADMIN})
    run = make_run(project, steps=3, status="succeeded")
    make_ranking_tasks(project, 1)
    page = axe_page
    page.goto(f"{live_server.url}/accounts/login/")
    assert not serious_violations(page), "login page"
    page.fill("#id_username", "axe_ada")
    page.fill("#id_password", "pw-axe_ada")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    pages = {
        "projects": "/",
        "annotate": f"/projects/{project.id}/annotate/",
        "rank": f"/projects/{project.id}/rank/",
        "project": f"/projects/{project.id}/",
        "pipeline": f"/projects/{project.id}/pipeline/",
        "run form": f"/projects/{project.id}/runs/new/",
        "run": f"/projects/{project.id}/runs/{run.id}/",
        "compare": f"/projects/{project.id}/runs/compare/?run={run.id}",
        "recent votes": "/votes/",
        "tokens": "/account/tokens/",
        "evaluations": f"/projects/{project.id}/evaluations/",
        "checkpoint": f"/projects/{project.id}/checkpoints/{run.start_checkpoint_id}/",
        "lineage": f"/projects/{project.id}/lineage/",
    }
    found = {}
    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        violations = serious_violations(page)
        if violations:
            found[name] = violations
    assert not found, found


def test_keyboard_focus_is_visible(live_server, page, make_project):
    annotator = make_user("focus_fay")
    project = make_project("Focus", pairs=2, members={annotator: Role.ANNOTATOR})
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.id}/annotate/")
    page.fill("#id_username", "focus_fay")
    page.fill("#id_password", "pw-focus_fay")
    page.click("button[type=submit]")
    page.wait_for_selector("#workbench")
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2, outline
