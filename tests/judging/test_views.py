"""The judges page: roles, the htmx fragment, adding (staff), starting and cancelling."""

from __future__ import annotations

import pytest
from django.urls import reverse

from judging.models import JudgingJob
from judging.services import add_judge, request_judging
from labeling.models import JobStatus, Judge

HX = {"HTTP_HX_REQUEST": "true"}
CHECK = '{"callable": "tests.judging.callables.shorter_is_better"}'


@pytest.fixture
def judged(project):
    return add_judge(
        project, "short", "programmatic", {"callable": "tests.judging.callables.shorter_is_better"}
    )


def test_reviewers_see_the_page_annotators_get_403_outsiders_404(
    client, project, judged, reviewer, annotator, outsider
):
    url = reverse("judging:judges", args=[project.id])
    client.force_login(reviewer)
    page = client.get(url)
    assert page.status_code == 200 and b"short" in page.content and b"<html" in page.content
    project_page = client.get(reverse("labeling:project_detail", args=[project.id]))
    assert url.encode() in project_page.content  # linked from the project page
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404


def test_htmx_gets_only_the_jobs_fragment(client, project, judged, project_admin):
    request_judging(judged)
    client.force_login(project_admin)
    fragment = client.get(reverse("judging:judges", args=[project.id]), **HX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content and b'id="judging-jobs"' in fragment.content
    assert b'role="progressbar"' in fragment.content and b"Cancel" in fragment.content
    assert b'hx-trigger="every 2s"' in fragment.content


def test_only_staff_admins_add_judges(client, project, project_admin):
    url = reverse("judging:judge_add", args=[project.id])
    data = {"name": "check", "kind": "programmatic", "config": CHECK}
    client.force_login(project_admin)
    assert client.post(url, data).status_code == 403
    project_admin.is_staff = True
    project_admin.save()
    assert client.post(url, data).status_code == 303
    assert Judge.objects.get(project=project).name == "check"


def test_bad_config_is_a_400_naming_the_problem_and_adds_nothing(client, project, project_admin):
    project_admin.is_staff = True
    project_admin.save()
    client.force_login(project_admin)
    url = reverse("judging:judge_add", args=[project.id])
    bad = client.post(
        url, {"name": "x", "kind": "programmatic", "config": '{"callable": "os.system"}'}
    )
    assert bad.status_code == 400 and b"PREFLAB_JUDGE_CALLABLE_MODULES" in bad.content
    broken = client.post(url, {"name": "x", "kind": "llm", "config": "{not json"})
    assert broken.status_code == 400 and b"Not valid JSON" in broken.content
    assert not Judge.objects.exists()


def test_admin_starts_and_cancels_a_job(client, project, judged, project_admin, annotator):
    client.force_login(annotator)
    start = reverse("judging:judging_start", args=[project.id, judged.id])
    assert client.post(start, {"scope": "needs_votes"}).status_code == 403
    client.force_login(project_admin)
    assert client.post(start, {"scope": "round"}).status_code == 400  # no round chosen
    assert client.post(start, {"scope": "needs_votes"}).status_code == 303
    job = JudgingJob.objects.get()
    assert job.status == JobStatus.QUEUED and job.total == 5
    cancel = reverse("judging:judging_cancel", args=[project.id, job.id])
    assert client.post(cancel).status_code == 303
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_outsider_gets_404_for_another_projects_job(client, project, judged, outsider):
    job = request_judging(judged)
    client.force_login(outsider)
    assert (
        client.post(reverse("judging:judging_cancel", args=[project.id, job.id])).status_code == 404
    )


def test_staff_edit_a_judge_raising_its_version_and_bad_config_changes_nothing(
    client, project, judged, project_admin
):
    url = reverse("judging:judge_edit", args=[project.id, judged.id])
    prefix = f"judge-{judged.pk}"
    client.force_login(project_admin)
    new = {f"{prefix}-config": '{"callable": "tests.judging.callables.longer_is_better"}'}
    assert client.post(url, {**new, f"{prefix}-enabled": "on"}).status_code == 403
    project_admin.is_staff = True
    project_admin.save()
    page = client.get(reverse("judging:judges", args=[project.id]))
    assert b"Edit" in page.content and b"shorter_is_better" in page.content
    assert client.post(url, {**new, f"{prefix}-enabled": "on"}).status_code == 303
    judged.refresh_from_db()
    assert judged.version == 2 and judged.config["callable"].endswith("longer_is_better")
    bad = client.post(url, {f"{prefix}-config": '{"callable": "os.system"}'})
    assert bad.status_code == 400 and b"PREFLAB_JUDGE_CALLABLE_MODULES" in bad.content
    judged.refresh_from_db()
    assert judged.version == 2 and judged.enabled
    assert client.post(url, {**new}).status_code == 303  # unchecked: disabled, same config
    judged.refresh_from_db()
    assert judged.version == 2 and not judged.enabled
