"""The workbench as a person uses it: keys after a rationale, phone width, recent votes."""

import pytest

from labeling.models import Role, Vote
from tests.browser.test_annotation_browser import (
    current_comparison,
    open_workbench,
    wait_for_new_comparison,
)
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_keys_still_vote_after_a_rationale_is_submitted_with_ctrl_enter(
    live_server, page, make_project
):
    annotator = make_user("rationale_rae")
    project = make_project("Rationale", pairs=4, members={annotator: Role.ANNOTATOR})
    open_workbench(page, live_server, project, "rationale_rae")

    first = current_comparison(page)
    page.keyboard.press("1")
    page.keyboard.press("r")
    page.keyboard.type("Left is clearer.")
    page.keyboard.press("Control+Enter")
    second = wait_for_new_comparison(page, first)
    # Focus must not come back to the new comparison's rationale box.
    assert page.evaluate("document.activeElement.tagName") != "TEXTAREA"
    assert page.locator("#rationale").input_value() == ""

    page.keyboard.press("2")
    page.keyboard.press("Enter")
    third = wait_for_new_comparison(page, second)
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_for_new_comparison(page, third)

    votes = {vote.comparison_id: vote for vote in Vote.objects.filter(annotator=annotator)}
    assert set(votes) == {first, second, third}
    assert votes[first].rationale == "Left is clearer."
    assert votes[second].rationale == "" and votes[second].is_decisive
    assert votes[third].choice == "tie"
    assert page.locator("[data-testid=voted]").inner_text() == "3"


PHONE = {"width": 390, "height": 844}


def _assert_no_horizontal_scroll(page) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    topbar = page.evaluate(
        "(() => { const r = document.querySelector('.topbar').getBoundingClientRect();"
        " return [r.left, r.right, document.documentElement.clientWidth]; })()"
    )
    assert topbar[0] <= 0 and topbar[1] >= topbar[2], f"top bar does not span the width: {topbar}"


def test_phone_width_pages_do_not_scroll_sideways(live_server, browser, make_project):
    admin = make_user("phone_pat")
    project = make_project(
        "A project with a rather long name for a phone screen",
        pairs=3,
        members={admin: Role.ADMIN},
    )
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        open_workbench(page, live_server, project, "phone_pat")
        _assert_no_horizontal_scroll(page)
        for path in (
            "/",
            f"/projects/{project.id}/",
            f"/projects/{project.id}/pipeline/",
            f"/projects/{project.id}/runs/new/",
            "/account/tokens/",
        ):
            page.goto(f"{live_server.url}{path}")
            _assert_no_horizontal_scroll(page)
    finally:
        context.close()
