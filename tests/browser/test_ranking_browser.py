"""An annotator ranks 4 responses in real Chromium: keyboard only, undo, drag and drop, under the
Content-Security-Policy, and on a 390 px wide phone screen."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.models import Completion, Ranking
from labeling.rankings import display_order_for
from tests.browser.test_vote_failures import RECORD_CSP_VIOLATIONS
from tests.conftest import make_user
from tests.labeling.test_ranking_services import make_ranking_tasks, ranking_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = "<img src=x onerror=\"window.__pwned='img'\"> **bold** <script>window.__pwned=1</script>"


def open_rank_page(page: Any, live_server: Any, project: Any, username: str) -> list[str]:
    """Log in, open the ranking page and wait for its scripts; returns the console errors."""
    console_errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.id}/rank/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_selector("#rankbench")
    # Arrow functions, not expression strings: those are eval'd, which the page's CSP refuses.
    page.wait_for_function(
        "() => window.htmx !== undefined && document.readyState === 'complete' &&"
        " document.querySelector('[data-rank-list]').dataset.enhanced === 'true'"
    )
    return console_errors


def shown_positions(page: Any) -> list[int]:
    """The canonical positions top to bottom as the list shows them now."""
    return [
        int(p)
        for p in page.eval_on_selector_all(
            "[data-rank-list] > .rank-item", "items => items.map(i => i.dataset.position)"
        )
    ]


def current_task(page: Any) -> int:
    return int(page.locator("article.ranking-task").get_attribute("data-task"))


def focused_position(page: Any) -> int | None:
    value = page.evaluate(
        "() => { const i = document.activeElement && document.activeElement.closest('.rank-item');"
        " return i ? i.dataset.position : null; }"
    )
    return None if value is None else int(value)


def tab_to(page: Any, position: int) -> None:
    """Move the keyboard focus to the response at `position` with Tab and Shift+Tab only."""
    for key in ("Tab", "Shift+Tab"):
        for _ in range(12):
            if focused_position(page) == position:
                return
            page.keyboard.press(key)
    raise AssertionError(f"Tab never reached response {position}")


def wait_for_new_task(page: Any, previous: int) -> int:
    page.wait_for_function(
        "prev => { const a = document.querySelector('article.ranking-task');"
        " return a && a.dataset.task !== String(prev); }",
        arg=previous,
    )
    return current_task(page)


def no_csp_trouble(page: Any, console_errors: list[str]) -> None:
    assert page.evaluate("window.__cspViolations") == []
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors


def test_an_annotator_ranks_four_with_the_keyboard_undoes_and_ranks_again(live_server, page):
    ranker = make_user("keyboard_rae")
    project = ranking_project("Keyboard ranking", [ranker])
    first_task, _ = make_ranking_tasks(project, 2)
    Completion.objects.filter(id=first_task.items.get(position=1).completion_id).update(
        text=HOSTILE
    )
    console_errors = open_rank_page(page, live_server, project, "keyboard_rae")
    page.evaluate("window.__sameDocument = true")
    task = current_task(page)
    assert task == first_task.pk
    order = display_order_for(ranker.pk, task, 4)
    assert shown_positions(page) == order

    # Build [2, [0, 3], 1]: put 2, 0, 3, 1 at places 1..4 with the number keys, then tie 3
    # with 0 above it.
    page.keyboard.press("j")  # nothing focused yet: j focuses the first response
    assert focused_position(page) == order[0]
    for place, position in enumerate([2, 0, 3, 1], start=1):
        tab_to(page, position)
        page.keyboard.press(str(place))
        assert focused_position(page) == position
    assert shown_positions(page) == [2, 0, 3, 1]
    tab_to(page, 3)
    page.keyboard.press("t")
    assert page.locator("#announcer").text_content() == (
        "Response "
        + page.locator('.rank-item[data-position="3"]').get_attribute("data-letter")
        + ": position 2 of 3, tied with Response "
        + page.locator('.rank-item[data-position="0"]').get_attribute("data-letter")
        + "."
    )
    assert page.locator('.rank-item[data-position="3"] [data-place]').inner_text() == "2="
    assert page.locator("input[data-ranking]").input_value() == "[2,[0,3],1]"
    page.keyboard.press("Enter")
    second = wait_for_new_task(page, task)
    assert page.locator("[data-testid=ranked]").inner_text() == "1"
    stored = Ranking.objects.get(annotator=ranker)
    assert stored.ranking == [2, [0, 3], 1] and stored.task_id == task
    assert stored.display_order == order

    # Undo brings the same task back, in the same display order and untouched.
    page.keyboard.press("u")
    assert wait_for_new_task(page, second) == task
    assert page.locator("[data-testid=ranked]").inner_text() == "0"
    assert not Ranking.objects.exists()
    assert shown_positions(page) == order

    # Again with the arrow keys only: the first shown response goes to the bottom, then the
    # (new) first moves down one; k and ArrowUp move back up.
    page.keyboard.press("ArrowDown")  # focuses the first response
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    expected = order[1:] + order[:1]
    assert shown_positions(page) == expected
    tab_to(page, expected[0])
    page.keyboard.press("j")
    expected[0], expected[1] = expected[1], expected[0]
    assert shown_positions(page) == expected
    page.keyboard.press("k")
    page.keyboard.press("ArrowDown")
    assert shown_positions(page) == expected
    page.keyboard.press("Enter")
    wait_for_new_task(page, task)
    stored = Ranking.objects.get(annotator=ranker)
    assert stored.ranking == expected and stored.display_order == order and stored.task_id == task
    assert stored.time_taken_ms is not None

    assert page.evaluate("window.__sameDocument") is True, "a submit reloaded the whole page"
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("article img, article script").count() == 0
    no_csp_trouble(page, console_errors)


def test_a_response_dragged_by_its_handle_moves_and_the_ranking_follows(live_server, page):
    ranker = make_user("dragging_dee")
    project = ranking_project("Drag ranking", [ranker])
    make_ranking_tasks(project, 1)
    console_errors = open_rank_page(page, live_server, project, "dragging_dee")
    task = current_task(page)
    order = shown_positions(page)
    last = page.locator(f'.rank-item[data-position="{order[3]}"] .drag-handle')
    top = page.locator(f'.rank-item[data-position="{order[0]}"]')
    # Press on the last response's handle, move over the top of the first, let go.
    handle_box = last.bounding_box()
    top_box = top.bounding_box()
    assert handle_box and top_box
    page.mouse.move(handle_box["x"] + 5, handle_box["y"] + 5)
    page.mouse.down()
    for step in range(1, 11):
        y = handle_box["y"] + (top_box["y"] + 5 - handle_box["y"]) * step / 10
        page.mouse.move(handle_box["x"] + 5, y)
    page.mouse.up()
    expected = [order[3], *order[:3]]
    page.wait_for_function(
        "want => JSON.stringify(Array.from(document.querySelectorAll("
        "'[data-rank-list] > .rank-item'), i => Number(i.dataset.position))) === want",
        arg=str(expected).replace(" ", ""),
    )
    assert page.locator("input[data-ranking]").input_value() == str(expected).replace(" ", "")
    page.locator("#rank-form button[type=submit]").click()
    page.locator("[data-testid=nothing-left]").wait_for()
    stored = Ranking.objects.get(annotator=ranker)
    assert stored.task_id == task and stored.ranking == expected
    no_csp_trouble(page, console_errors)


def test_skip_with_a_reason_and_the_phone_layout(live_server, page):
    ranker = make_user("phone_pia")
    project = ranking_project("Phone ranking", [ranker])
    make_ranking_tasks(project, 2, k=5)
    # Long words and a wide code block: they must wrap or scroll inside their box.
    for completion in Completion.objects.filter(prompt__project=project):
        completion.text = f"{completion.text} {'x' * 300}\n\n```\n{'code ' * 80}\n```"
        completion.save()
    page.set_viewport_size({"width": 390, "height": 844})
    console_errors = open_rank_page(page, live_server, project, "phone_pia")
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 390px"
    boxes = [item.bounding_box() for item in page.locator(".rank-item").all()]
    assert all(b and b["x"] >= 0 and b["x"] + b["width"] <= 390 for b in boxes)
    assert [b["y"] for b in boxes if b] == sorted(b["y"] for b in boxes if b), "not one column"

    task = current_task(page)
    page.keyboard.press("s")
    assert page.locator("#rank-skip-panel").get_attribute("open") is not None
    page.locator("#rank-skip-panel input[value=unreadable]").check()
    page.keyboard.press("Enter")
    wait_for_new_task(page, task)
    assert page.locator("[data-testid=notice]").inner_text() == (
        "Skipped; you will not see it again."
    )
    skip = project.ranking_tasks.get(pk=task).skips.get()
    assert skip.user_id == ranker.pk and skip.reason == "unreadable"
    no_csp_trouble(page, console_errors)


def fail_first_submit(page: Any, project_id: int, how: Any) -> None:
    """Route the submit endpoint: the first request goes to `how`, later ones through."""
    calls: list[int] = []

    def handle(route: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            how(route)
        else:
            route.continue_()

    page.route(f"**/projects/{project_id}/rank/submit/", handle)


def test_a_failed_submit_is_shown_in_place_and_the_retry_stores_one_ranking(live_server, page):
    ranker = make_user("retry_ray")
    project = ranking_project("Retry ranking", [ranker])
    make_ranking_tasks(project, 2)
    console_errors = open_rank_page(page, live_server, project, "retry_ray")
    fail_first_submit(page, project.id, lambda route: route.fulfill(status=500, body="boom"))
    task = current_task(page)
    page.keyboard.press("j")
    page.keyboard.press("4")  # the first shown response goes last
    expected = shown_positions(page)
    page.keyboard.press("Enter")
    failure = page.locator("[data-testid=request-failure]")
    failure.wait_for()
    assert "The server had a problem (HTTP 500)" in failure.inner_text()
    assert "a ranking is never stored twice" in failure.inner_text()
    assert current_task(page) == task and shown_positions(page) == expected
    assert not Ranking.objects.exists()
    failure.get_by_role("button", name="Retry").click()
    wait_for_new_task(page, task)
    assert Ranking.objects.get(annotator=ranker).ranking == expected
    assert page.locator("[data-testid=notice]").inner_text() == "Ranking saved."
    no_csp_trouble(page, console_errors)


def test_a_ranking_stored_but_whose_answer_was_lost_is_not_stored_twice(live_server, page):
    ranker = make_user("lost_lou")
    project = ranking_project("Lost ranking", [ranker])
    make_ranking_tasks(project, 2)
    console_errors = open_rank_page(page, live_server, project, "lost_lou")

    def reach_the_server_then_drop_the_answer(route: Any) -> None:
        route.fetch()  # the real server stores the ranking
        route.abort("connectionreset")

    fail_first_submit(page, project.id, reach_the_server_then_drop_the_answer)
    task = current_task(page)
    page.keyboard.press("Enter")  # the order as shown
    failure = page.locator("[data-testid=request-failure]")
    failure.wait_for()
    assert "may or may not have been saved" in failure.inner_text()
    assert Ranking.objects.count() == 1
    page.keyboard.press("Enter")  # focus is on Retry: the same submit, the same key
    wait_for_new_task(page, task)
    assert Ranking.objects.count() == 1
    assert page.locator("[data-testid=notice]").inner_text() == "Your ranking was already saved."
    no_csp_trouble(page, console_errors)
