"""An annotator labels with the keyboard in real Chromium; hostile model output stays inert."""

import json

import pytest

from labeling.importers import ImportKind, import_file
from labeling.models import Comparison, Role, Strength, Vote
from labeling.services import left_side_for
from tests.conftest import make_user, pairs_jsonl

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE_PAIR = {
    "prompt": "Say hi <script>window.__pwned = 'prompt'</script>",
    "response_a": "<img src=x onerror=\"window.__pwned='img'\"> **bold**",
    "response_b": "[link](javascript:window.__pwned='link') <svg onload=\"window.__pwned='svg'\">",
}


def open_workbench(page, live_server, project, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.id}/annotate/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_selector("#workbench")
    # Keys pressed before the page's scripts run would do nothing or submit a plain form.
    # Arrow functions, not expression strings: those are eval'd, which the page's CSP refuses.
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")


def current_comparison(page) -> int:
    return int(page.locator("article.comparison").get_attribute("data-comparison"))


def wait_for_new_comparison(page, previous: int) -> int:
    page.wait_for_function(
        "prev => { const a = document.querySelector('article.comparison');"
        " return a && a.dataset.comparison !== String(prev); }",
        arg=previous,
    )
    return current_comparison(page)


def test_annotator_labels_three_with_the_keyboard_and_undoes_one(live_server, page, make_project):
    annotator = make_user("keyboard_kim")
    project = make_project("Browser project", pairs=0, members={annotator: Role.ANNOTATOR})
    # The hostile pair first, so it is on screen (and voted on) before the others.
    import_file(project, json.dumps(HOSTILE_PAIR).encode(), "hostile.jsonl", ImportKind.PAIRS)
    import_file(project, pairs_jsonl(4), "pairs.jsonl", ImportKind.PAIRS)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    open_workbench(page, live_server, project, "keyboard_kim")
    page.evaluate("window.__sameDocument = true")

    first = current_comparison(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    second = wait_for_new_comparison(page, first)
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    third = wait_for_new_comparison(page, second)
    page.keyboard.press("2")
    page.keyboard.press("d")
    page.keyboard.press("Enter")
    fourth = wait_for_new_comparison(page, third)
    assert page.locator("[data-testid=voted]").inner_text() == "3"

    page.keyboard.press("u")
    back = wait_for_new_comparison(page, fourth)
    assert back == third
    assert page.locator("[data-testid=voted]").inner_text() == "2"
    assert page.evaluate("window.__sameDocument") is True, "a vote reloaded the whole page"

    votes = {vote.comparison_id: vote for vote in Vote.objects.filter(annotator=annotator)}
    assert set(votes) == {first, second}
    first_comparison = Comparison.objects.get(id=first)
    left = left_side_for(annotator.pk, first)
    assert votes[first].choice == left and votes[first].left_side == left
    assert votes[first].chosen == first_comparison.completion_on(left)
    assert votes[first].strength == Strength.CLEAR
    assert votes[second].choice == "tie" and votes[second].chosen is None

    assert page.evaluate("window.__pwned === undefined")
    assert not dialogs


def test_hostile_markup_is_shown_as_text_and_never_runs(live_server, page, make_project):
    annotator = make_user("careful_cam")
    project = make_project("Hostile", pairs=0, members={annotator: Role.ANNOTATOR})
    import_file(project, json.dumps(HOSTILE_PAIR).encode(), "hostile.jsonl", ImportKind.PAIRS)
    open_workbench(page, live_server, project, "careful_cam")
    page.locator(".prompt").get_by_text("Say hi").wait_for()
    assert "<script>" in page.locator(".prompt").inner_text()
    assert page.locator("article img, article svg, article script").count() == 0
    for link in page.locator("article a").all():
        assert not (link.get_attribute("href") or "").startswith("javascript:")
    page.keyboard.press("g")
    assert page.locator("dialog#guidelines").is_visible()
    assert page.evaluate("window.__pwned === undefined")
