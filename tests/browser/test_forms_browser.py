"""The sampling form shows "How many prompts", "Previous checkpoint", K and the judge only when
they apply."""

import pytest

from labeling.models import Role
from tests.browser.test_charts_browser import log_in, make_run
from tests.conftest import make_user
from training.models import Checkpoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sampling_fields_appear_only_when_they_apply(live_server, page, make_project):
    admin = make_user("form_fran")
    project = make_project("Forms", pairs=3, members={admin: Role.ADMIN})
    run = make_run(project, steps=2, status="succeeded")
    Checkpoint.objects.create(project=project, run=run, name="final", path="/f", is_final=True)
    log_in(page, live_server, "form_fran", f"/projects/{project.id}/runs/{run.id}/")
    limit, previous = page.locator("#id_prompt_limit"), page.locator("#id_previous_checkpoint")
    assert limit.is_hidden() and previous.is_hidden()
    page.select_option("#id_selection", "random")
    assert limit.is_visible()
    samples, judge = page.locator("#id_samples_per_prompt"), page.locator("#id_judge")
    assert samples.is_hidden() and judge.is_hidden()
    page.select_option("#id_pairing", "versus_previous")
    assert previous.is_visible() and samples.is_hidden()
    page.select_option("#id_pairing", "best_worst")
    assert samples.is_visible() and judge.is_visible() and previous.is_hidden()
    page.select_option("#id_pairing", "versus_previous")
    page.select_option("#id_selection", "all")
    assert limit.is_hidden()
