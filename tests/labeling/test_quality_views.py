"""The quality page: roles, the cached figures, recompute, thresholds, the htmx status box."""

import pytest
from django.urls import reverse

from labeling.models import JobStatus, QualityReport, Role
from labeling.quality.jobs import compute_quality_report, request_quality_report
from labeling.services import add_member
from tests.labeling.quality.db_crowd import quick_user, seed_crowd


@pytest.fixture
def crowd(make_project):
    crowd = seed_crowd(make_project)
    crowd.users["boss"] = quick_user("boss")
    crowd.users["checker"] = quick_user("checker")
    add_member(crowd.project, crowd.users["boss"], Role.ADMIN)
    add_member(crowd.project, crowd.users["checker"], Role.REVIEWER)
    return crowd


def url(crowd, name="quality"):
    return reverse(f"labeling:{name}", args=[crowd.project.pk])


def as_user(client, user):
    client.force_login(user)
    return client


def compute(crowd, round_=None):
    report = compute_quality_report(request_quality_report(crowd.project, round_).pk)
    assert report is not None and report.status == JobStatus.SUCCEEDED
    return report


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["quality", "quality_recompute", "quality_settings"])
def test_an_outsider_gets_404_and_an_annotator_403(client, crowd, name):
    method = client.get if name == "quality" else client.post
    as_user(client, quick_user("stranger"))
    assert method(url(crowd, name)).status_code == 404
    as_user(client, crowd.users["lefty"])
    assert method(url(crowd, name)).status_code == 403
    assert not QualityReport.objects.exists()


@pytest.mark.django_db
def test_the_page_shows_the_cached_figures_and_the_flags_with_reasons(client, crowd):
    report = compute(crowd)
    page = as_user(client, crowd.users["checker"]).get(url(crowd))
    assert page.status_code == 200
    html = page.content.decode()
    assert "over <strong>180</strong> human votes" in html
    assert report.finished_at.strftime("%Y-%m-%d %H:%M:%S") in html
    flagged = html.split('data-testid="flagged"')[1].split("</ul>")[0]
    for name in ("crowd-lefty", "crowd-dice", "crowd-speedy"):
        assert name in flagged
    assert "crowd-honest0" not in flagged
    assert "chose the response on the left in 100%" in flagged
    assert 'id="quality-charts"' in html and "preflab/quality.js" in html
    assert "Krippendorff" in html
    # A fresh cache: reading it queued nothing.
    assert QualityReport.objects.count() == 1
    # Reviewers see no threshold form; admins do.
    assert "Flag thresholds" not in html
    admin_page = as_user(client, crowd.users["boss"]).get(url(crowd))
    assert "Flag thresholds" in admin_page.content.decode()


@pytest.mark.django_db
def test_opening_the_page_without_figures_queues_them_and_shows_progress(client, crowd):
    page = as_user(client, crowd.users["checker"]).get(url(crowd))
    html = page.content.decode()
    assert "No figures yet." in html and 'data-testid="quality-computing"' in html
    assert 'hx-trigger="every 2s"' in html
    report = QualityReport.objects.get()
    assert report.status == JobStatus.QUEUED and report.round is None
    fragment = client.get(url(crowd), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b"<html" not in fragment.content
    assert b"quality-computing" in fragment.content
    assert QualityReport.objects.count() == 1
    compute_quality_report(report.pk)
    # Votes changed meanwhile: the poll says the computation ended and queues nothing.
    crowd.comparisons[0].votes.filter(annotator=crowd.users["dice"]).delete()
    done = client.get(url(crowd), HTTP_HX_REQUEST="true").content.decode()
    assert "Show the new figures" in done and "every 2s" not in done
    assert QualityReport.objects.count() == 1


@pytest.mark.django_db
def test_recompute_queues_a_new_report_for_the_scope(client, crowd):
    compute(crowd)
    response = as_user(client, crowd.users["checker"]).post(url(crowd, "quality_recompute"))
    assert response.status_code == 303
    newest = QualityReport.objects.order_by("-id").first()
    assert newest.status == JobStatus.QUEUED and newest.created_by == crowd.users["checker"]
    response = client.post(url(crowd, "quality_recompute"), {"round": "1"})
    assert response["Location"].endswith("?round=1")
    assert QualityReport.objects.filter(round__number=1, status=JobStatus.QUEUED).exists()
    assert client.post(url(crowd, "quality_recompute"), {"round": "9"}).status_code == 404


@pytest.mark.django_db
def test_a_round_page_reads_the_rounds_own_report(client, crowd):
    compute(crowd, crowd.project.rounds.get(number=1))
    page = as_user(client, crowd.users["checker"]).get(url(crowd) + "?round=1")
    assert page.status_code == 200
    html = page.content.decode()
    assert "round 1" in html
    assert '<th scope="row">Round 1</th>' in html and "All rounds</th>" not in html
    assert client.get(url(crowd) + "?round=7").status_code == 404
    assert client.get(url(crowd) + "?round=x").status_code == 404


@pytest.mark.django_db
def test_an_admin_saves_thresholds_and_the_figures_are_recomputed(client, crowd):
    from labeling.quality.forms import QualitySettingsForm

    data = {name: field.initial for name, field in QualitySettingsForm().fields.items()}
    data["max_fast_share"] = 1.0
    response = as_user(client, crowd.users["boss"]).post(url(crowd, "quality_settings"), data)
    assert response.status_code == 303
    crowd.project.refresh_from_db()
    assert crowd.project.quality_settings == {"max_fast_share": 1.0}
    report = QualityReport.objects.get(status=JobStatus.QUEUED)
    finished = compute_quality_report(report.pk)
    assert crowd.users["speedy"].pk not in finished.data["flagged"]


@pytest.mark.django_db
def test_bad_thresholds_are_refused_naming_the_field_and_change_nothing(client, crowd):
    from labeling.quality.forms import QualitySettingsForm

    data = {name: field.initial for name, field in QualitySettingsForm().fields.items()}
    data["max_tie_rate"] = 1.5
    data["min_votes"] = "many"
    response = as_user(client, crowd.users["boss"]).post(url(crowd, "quality_settings"), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Ensure this value is less than or equal to 1.0" in html
    assert "Enter a whole number" in html
    crowd.project.refresh_from_db()
    assert crowd.project.quality_settings == {}
    fragment = client.post(url(crowd, "quality_settings"), data, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 400 and b"<html" not in fragment.content
    assert b"Flag thresholds" in fragment.content


@pytest.mark.django_db
def test_the_project_page_links_reviewers_to_the_quality_page(client, crowd):
    page = as_user(client, crowd.users["checker"]).get(
        reverse("labeling:project_detail", args=[crowd.project.pk])
    )
    assert url(crowd).encode() in page.content
    page = as_user(client, crowd.users["lefty"]).get(
        reverse("labeling:project_detail", args=[crowd.project.pk])
    )
    assert url(crowd).encode() not in page.content


@pytest.mark.django_db
def test_a_failed_computation_is_shown_with_its_error(client, crowd):
    crowd.project.quality_settings = {"bogus": 1}
    crowd.project.save()
    report = request_quality_report(crowd.project)
    with pytest.raises(ValueError):
        compute_quality_report(report.pk)
    html = as_user(client, crowd.users["boss"]).get(url(crowd)).content.decode()
    assert "The last computation failed" in html and "unknown key(s) bogus" in html
    assert "The stored thresholds are not valid" in html
