"""An annotator flags an item with the keyboard on the annotate page; a reviewer finds it in
the review queue, sees every vote, adjudicates and resolves the flag. axe-core checks the
review queue, the comparison page, the data browser, exclusions and the team page."""

import pytest

from labeling.models import Adjudication, Comparison, FlagKind, ItemFlag, Role
from labeling.services import VoteInput, cast_vote
from tests.browser.test_accessibility import AXE, serious_violations
from tests.browser.test_annotation_browser import (
    current_comparison,
    open_workbench,
    wait_for_new_comparison,
)
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_annotator_flags_an_item_and_a_reviewer_adjudicates_it(
    live_server, page, browser, make_project
):
    annotator, reviewer, earlier = (
        make_user("flagging_fay"),
        make_user("reviewing_rex"),
        make_user("early_eve"),
    )
    project = make_project(
        "Review in the browser",
        pairs=3,
        overlap=2,
        members={annotator: Role.ANNOTATOR, reviewer: Role.ADMIN, earlier: Role.ANNOTATOR},
    )
    project.gold_rate = 0.0
    project.save()
    for comparison in Comparison.objects.filter(project=project):
        cast_vote(earlier, project, comparison.id, VoteInput("A", "strong", "A is exact"))

    open_workbench(page, live_server, project, "flagging_fay")
    page.evaluate("window.__sameDocument = true")
    flagged = current_comparison(page)
    page.keyboard.press("f")
    assert page.locator("#flag-panel").evaluate("d => d.open")
    # Focus is on the reason; arrow keys move through the reasons, the vote keys do nothing.
    page.keyboard.press("1")
    assert page.locator("input[name=choice]:checked").count() == 0
    page.keyboard.press("ArrowUp")  # from "Cannot judge" to "Harmful content"
    assert page.locator("input[name=reason]:checked").get_attribute("value") == "harmful"
    page.locator("#flag-note").fill("The reply insults the user")
    page.locator("#flag-note").press("Control+Enter")
    wait_for_new_comparison(page, flagged)
    assert "Flagged for a reviewer" in page.locator("#workbench .notice").inner_text()
    assert page.evaluate("window.__sameDocument") is True
    flag = ItemFlag.objects.get(user=annotator)
    assert (flag.comparison_id, flag.kind, flag.reason, flag.note) == (
        flagged,
        FlagKind.FLAG,
        "harmful",
        "The reply insults the user",
    )

    # Esc closes the panel without sending, and the vote keys work again.
    page.keyboard.press("f")
    page.keyboard.press("Escape")
    assert not page.locator("#flag-panel").evaluate("d => d.open")
    page.keyboard.press("3")
    assert page.locator("input[name=choice]:checked").get_attribute("value") == "tie"
    # Skip with k: the panel opens with "skip" chosen; Enter sends it.
    skipped = current_comparison(page)
    page.keyboard.press("k")
    page.keyboard.press("Enter")
    wait_for_new_comparison(page, skipped)
    assert ItemFlag.objects.get(user=annotator, comparison_id=skipped).kind == FlagKind.SKIP

    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` (make setup does)")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    review = context.new_page()
    review.set_default_timeout(10_000)
    try:
        review.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.id}/review/")
        review.fill("#id_username", "reviewing_rex")
        review.fill("#id_password", "pw-reviewing_rex")
        review.click("button[type=submit]")
        review.wait_for_selector("[data-testid=flags]")
        assert not serious_violations(review), "review queue"
        assert "The reply insults the user" in review.locator("[data-testid=flags]").inner_text()
        review.click(f"[data-testid=flags] a:has-text('#{flagged}')")
        review.wait_for_selector("[data-testid=votes]")
        assert not serious_violations(review), "review comparison page"
        votes = review.locator("[data-testid=votes]").inner_text()
        assert "early_eve" in votes and "Strongly" in votes and "A is exact" in votes
        review.select_option("#id_choice", "B")
        review.fill("#id_note", "A insults the user")
        review.click("#adjudication-form button[type=submit]")
        review.wait_for_selector("text=Decision recorded")
        review.fill(f"#resolution-{flag.id}", "Adjudicated for B")
        review.click(f"[data-testid=flag-{flag.id}] button[type=submit]")
        review.wait_for_selector("text=Flag resolved.")
        for name, path in (
            ("data browser", f"/projects/{project.id}/browse/?status=adjudicated"),
            ("exclusions", f"/projects/{project.id}/review/exclusions/"),
            ("team", f"/projects/{project.id}/team/"),
        ):
            review.goto(f"{live_server.url}{path}")
            assert not serious_violations(review), name
        assert (
            f"#{flagged}"
            in review.goto(
                f"{live_server.url}/projects/{project.id}/browse/?status=adjudicated"
            ).text()
        )
    finally:
        context.close()
    decision = Adjudication.objects.get(comparison_id=flagged)
    assert (decision.choice, decision.note, decision.reviewer) == (
        "B",
        "A insults the user",
        reviewer,
    )
    flag.refresh_from_db()
    assert flag.resolved_by == reviewer and flag.resolution == "Adjudicated for B"
