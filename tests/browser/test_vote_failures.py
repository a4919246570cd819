"""A submit that fails (5xx, dropped connection, answer lost after the server stored it) is
shown in place with a retry, and the retry stores the vote exactly once. The network is faked
with Playwright's page.route, the outside world; the server is the real one. Everything runs
under the Content-Security-Policy, which must report no violation."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.models import Role, Vote
from tests.browser.test_annotation_browser import (
    current_comparison,
    open_workbench,
    wait_for_new_comparison,
)
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records every CSP violation the page reports, from the first script on.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def prepare(page: Any, live_server: Any, make_project: Any, username: str) -> tuple[Any, list]:
    annotator = make_user(username)
    project = make_project(f"Failures {username}", pairs=3, members={annotator: Role.ANNOTATOR})
    console_errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    open_workbench(page, live_server, project, username)
    return annotator, console_errors


def fail_first_vote(page: Any, project_id: int, how: Any) -> list[int]:
    """Route the vote endpoint: the first request goes to `how`, later ones through."""
    calls: list[int] = []

    def handle(route: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            how(route)
        else:
            route.continue_()

    page.route(f"**/projects/{project_id}/vote/", handle)
    return calls


def no_csp_trouble(page: Any, console_errors: list[str]) -> None:
    assert page.evaluate("window.__cspViolations") == []
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors


@pytest.mark.parametrize(
    "how, words",
    [
        (
            lambda route: route.fulfill(status=500, body="boom"),
            "The server had a problem (HTTP 500)",
        ),
        (
            lambda route: route.fulfill(status=503, body="down"),
            "The server had a problem (HTTP 503)",
        ),
        (lambda route: route.abort("connectionreset"), "The connection to the server failed"),
    ],
    ids=["500", "503", "network"],
)
def test_a_failed_submit_is_shown_and_the_retry_stores_one_vote(
    live_server, page, make_project, how, words
):
    annotator, console_errors = prepare(page, live_server, make_project, "retry_rita")
    project_id = annotator.memberships.get().project_id
    fail_first_vote(page, project_id, how)
    first = current_comparison(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    failure = page.locator("[data-testid=request-failure]")
    failure.wait_for()
    assert words in failure.inner_text()
    assert "not sent" not in failure.inner_text()
    assert current_comparison(page) == first, "the comparison must stay for the retry"
    assert Vote.objects.filter(annotator=annotator).count() == 0
    failure.get_by_role("button", name="Retry").click()
    wait_for_new_comparison(page, first)
    assert list(Vote.objects.filter(annotator=annotator).values_list("comparison", flat=True)) == [
        first
    ]
    assert page.locator("#workbench .notice[role=status]").inner_text() == "Vote saved."
    no_csp_trouble(page, console_errors)


def test_a_vote_stored_but_whose_answer_was_lost_is_not_stored_twice(
    live_server, page, make_project
):
    annotator, console_errors = prepare(page, live_server, make_project, "lost_lena")
    project_id = annotator.memberships.get().project_id

    def reach_the_server_then_drop_the_answer(route: Any) -> None:
        route.fetch()  # the real server stores the vote
        route.abort("connectionreset")

    fail_first_vote(page, project_id, reach_the_server_then_drop_the_answer)
    first = current_comparison(page)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    failure = page.locator("[data-testid=request-failure]")
    failure.wait_for()
    assert "may or may not have been saved" in failure.inner_text()
    assert Vote.objects.filter(annotator=annotator).count() == 1
    # Enter retries too, with the same key.
    page.keyboard.press("Enter")
    wait_for_new_comparison(page, first)
    assert Vote.objects.filter(annotator=annotator).count() == 1
    assert (
        page.locator("#workbench .notice[role=status]").inner_text()
        == "Your vote was already saved."
    )
    # The next vote gets a new key and is stored as usual.
    second = current_comparison(page)
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_for_new_comparison(page, second)
    assert Vote.objects.filter(annotator=annotator).count() == 2
    no_csp_trouble(page, console_errors)


def test_pages_and_api_docs_work_under_the_csp(live_server, page, make_project):
    annotator, console_errors = prepare(page, live_server, make_project, "csp_carl")
    response = page.goto(f"{live_server.url}/projects/{annotator.memberships.get().project_id}/")
    directives = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    assert directives["script-src"].startswith("'self'")
    assert "unsafe" not in directives["script-src"] and "unsafe" not in directives["style-src"]
    no_csp_trouble(page, console_errors)
    page.goto(f"{live_server.url}/api/v1/docs")
    page.locator(".swagger-ui .information-container").wait_for()
    page.locator(".opblock").first.wait_for()
    no_csp_trouble(page, console_errors)
