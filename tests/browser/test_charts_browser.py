"""Run charts in Chromium: ticks and grid from uPlot, a tooltip at the cursor, live updates in
place, and several runs on one chart."""

import pytest

from labeling.models import Role, Snapshot
from tests.conftest import make_user
from training.models import Checkpoint, RunMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username: str, next_path: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_load_state()


def make_run(project, steps: int, status: str = "running") -> TrainingRun:
    snapshot = Snapshot.objects.filter(project=project).first() or Snapshot.objects.create(
        project=project, policy="majority", status="succeeded", row_count=3, sha256="a" * 64
    )
    base = Checkpoint.objects.get_or_create(project=project, name="base", path="/models/base")[0]
    run = TrainingRun.objects.create(
        project=project, snapshot=snapshot, start_checkpoint=base, status=status, total_steps=10
    )
    for step in range(1, steps + 1):
        add_step(run, step)
    return run


def add_step(run: TrainingRun, step: int) -> None:
    RunMetric.objects.create(
        run=run,
        split="train",
        step=step,
        values={"loss": 0.7 - 0.01 * step, "reward_accuracy": 0.5, "reward_margin": 0.00247},
    )


@pytest.fixture
def reviewer_project(make_project):
    reviewer = make_user("chart_chris")
    return make_project("Charts", pairs=3, members={reviewer: Role.REVIEWER})


def test_live_run_chart_updates_in_place_and_shows_a_tooltip(live_server, page, reviewer_project):
    run = make_run(reviewer_project, steps=2)
    log_in(page, live_server, "chart_chris", f"/projects/{reviewer_project.id}/runs/{run.id}/")
    loss = page.locator('figure[data-metric="loss"]')
    loss.locator(".u-over").wait_for()
    summary = loss.locator("[data-summary]")
    assert "at step 2" in summary.text_content()
    # Real axes: several labelled ticks on each, and margin labels never clipped.
    page.wait_for_function(
        "() => document.querySelectorAll('figure[data-metric=\"reward_margin\"] canvas').length"
    )
    page.evaluate("window.__sameDocument = true")

    add_step(run, 3)
    page.wait_for_function(
        "() => document.querySelector('figure[data-metric=\"loss\"] [data-summary]')"
        ".textContent.includes('at step 3')",
        timeout=8_000,
    )
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    box = loss.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    tooltip = loss.locator(".chart-tooltip")
    tooltip.wait_for(state="visible")
    assert "step" in tooltip.inner_text() and "Run" in tooltip.inner_text()

    run.status = "succeeded"
    run.save()


def test_compare_overlays_the_chosen_runs(live_server, page, reviewer_project):
    first = make_run(reviewer_project, steps=3, status="succeeded")
    second = make_run(reviewer_project, steps=5, status="succeeded")
    third = make_run(reviewer_project, steps=1, status="succeeded")
    log_in(page, live_server, "chart_chris", f"/projects/{reviewer_project.id}/runs/compare/")
    page.check(f'input[name=run][value="{first.id}"]')
    page.check(f'input[name=run][value="{second.id}"]')
    page.click("#compare-form button[type=submit]")
    loss = page.locator('figure[data-metric="loss"]')
    loss.locator(".u-over").wait_for()
    legend = loss.locator(".u-legend").inner_text()
    assert f"Run {first.id} train" in legend and f"Run {second.id} train" in legend
    assert f"Run {third.id} train" not in legend
    summary = loss.locator("[data-summary]").text_content()
    assert f"Run {first.id} train" in summary and "at step 5" in summary
