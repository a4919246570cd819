"""The annotation views: page vs htmx fragment, validation, and who may see what."""

import pytest
from django.urls import reverse

from labeling.models import Comparison, Membership, Role, Vote
from labeling.services import lease_next_comparison, left_side_for

HX = {"HTTP_HX_REQUEST": "true"}


def url(name, project, *args):
    return reverse(f"labeling:{name}", args=[project.id, *args])


@pytest.mark.django_db
def test_project_list_shows_only_my_projects(client, project, make_project, annotator):
    make_project("Secret project", pairs=1)
    client.force_login(annotator)
    page = client.get(reverse("labeling:project_list")).content.decode()
    assert project.name in page
    assert "Secret project" not in page


@pytest.mark.django_db
def test_annotate_get_gives_the_page_and_htmx_gives_the_fragment(client, project, annotator):
    client.force_login(annotator)
    page = client.get(url("annotate", project))
    assert page.status_code == 200
    assert b"<html" in page.content and b'id="workbench"' in page.content
    assert "HX-Request" in page["Vary"]
    fragment = client.get(url("annotate", project), **HX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content and b'id="workbench"' in fragment.content


@pytest.mark.django_db
def test_vote_post_records_the_vote_and_swaps_in_the_next_comparison(client, project, annotator):
    client.force_login(annotator)
    client.get(url("annotate", project))
    comparison = Comparison.objects.get(leased_to=annotator)
    left = left_side_for(annotator.pk, comparison.id)
    response = client.post(
        url("vote", project),
        {"comparison": comparison.id, "choice": left, "strength": "strong", "rationale": "ok"},
        **HX,
    )
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b"Vote saved." in response.content
    vote = Vote.objects.get()
    assert vote.chosen == comparison.completion_on(left)
    assert vote.left_side == left
    next_held = Comparison.objects.get(leased_to=annotator)
    assert next_held.id != comparison.id
    assert f'value="{next_held.id}"'.encode() in response.content


@pytest.mark.django_db
def test_invalid_vote_gives_400_with_errors_in_the_fragment(client, project, annotator):
    client.force_login(annotator)
    comparison = lease_next_comparison(annotator, project)
    response = client.post(url("vote", project), {"comparison": comparison.id}, **HX)
    assert response.status_code == 400
    assert b"<html" not in response.content
    assert b"This field is required" in response.content
    assert not Vote.objects.exists()


@pytest.mark.django_db
def test_plain_form_vote_redirects_back_to_the_workbench(client, project, annotator):
    client.force_login(annotator)
    comparison = lease_next_comparison(annotator, project)
    response = client.post(url("vote", project), {"comparison": comparison.id, "choice": "tie"})
    assert response.status_code == 303
    assert Vote.objects.get().choice == "tie"


@pytest.mark.django_db
def test_undo_returns_the_same_comparison(client, project, annotator):
    client.force_login(annotator)
    comparison = lease_next_comparison(annotator, project)
    client.post(url("vote", project), {"comparison": comparison.id, "choice": "both_bad"}, **HX)
    response = client.post(url("undo", project), **HX)
    assert response.status_code == 200
    assert b"Vote undone." in response.content
    assert f'name="comparison" value="{comparison.id}"'.encode() in response.content
    assert not Vote.objects.exists()


@pytest.mark.django_db
def test_nothing_left_state(client, make_project, annotator):
    project = make_project(pairs=0, members={annotator: Role.ANNOTATOR})
    client.force_login(annotator)
    response = client.get(url("annotate", project))
    assert b"Nothing left for you" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("project_detail", "get"),
        ("annotate", "get"),
        ("vote", "post"),
        ("undo", "post"),
        ("import", "post"),
        ("add_member", "post"),
    ],
)
def test_outsider_gets_404_for_every_project_view(client, project, outsider, name, method):
    client.force_login(outsider)
    response = getattr(client, method)(url(name, project))
    assert response.status_code == 404


@pytest.mark.django_db
def test_anonymous_user_is_sent_to_login(client, project):
    response = client.get(url("annotate", project))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_vote_on_another_projects_comparison_changes_nothing(
    client, project, make_project, annotator
):
    other = make_project("Other", pairs=1)
    foreign = Comparison.objects.get(project=other)
    client.force_login(annotator)
    response = client.post(url("vote", project), {"comparison": foreign.id, "choice": "tie"}, **HX)
    assert b"does not exist in this project" in response.content
    assert not Vote.objects.exists()


@pytest.mark.django_db
def test_annotator_cannot_import_or_add_members(client, project, annotator, outsider):
    client.force_login(annotator)
    assert client.post(url("import", project)).status_code == 403
    assert (
        client.post(url("add_member", project), {"username": outsider.username}).status_code == 403
    )
    assert not Membership.objects.filter(user=outsider).exists()


@pytest.mark.django_db
def test_reviewer_sees_stats_but_not_admin_forms(client, project, reviewer):
    client.force_login(reviewer)
    page = client.get(url("project_detail", project)).content.decode()
    assert "Votes per annotator" in page
    assert "Import data" not in page


@pytest.mark.django_db
def test_admin_imports_pairs_through_the_project_page(client, project, project_admin):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(project_admin)
    upload = SimpleUploadedFile(
        "more.jsonl", b'{"prompt": "New?", "response_a": "yes", "response_b": "no"}'
    )
    response = client.post(url("import", project), {"kind": "pairs", "file": upload})
    assert response.status_code == 303
    assert Comparison.objects.filter(prompt__text="New?").exists()


@pytest.mark.django_db
def test_bad_import_gives_400_listing_the_rows_and_imports_nothing(client, project, project_admin):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(project_admin)
    before = Comparison.objects.count()
    upload = SimpleUploadedFile("bad.jsonl", b'{"prompt": "x", "response_a": "y"}\n{oops')
    response = client.post(url("import", project), {"kind": "pairs", "file": upload}, **HX)
    assert response.status_code == 400
    body = response.content.decode()
    assert "<html" not in body
    assert "line 1: missing field &#x27;response_b&#x27;" in body
    assert "line 2: not valid JSON" in body
    assert Comparison.objects.count() == before


@pytest.mark.django_db
def test_admin_adds_a_member_and_bad_username_gives_400(client, project, project_admin, outsider):
    client.force_login(project_admin)
    bad = client.post(url("add_member", project), {"username": "nobody", "role": "annotator"}, **HX)
    assert bad.status_code == 400 and b"No user named" in bad.content
    good = client.post(
        url("add_member", project), {"username": outsider.username, "role": "reviewer"}
    )
    assert good.status_code == 303
    assert Membership.objects.get(user=outsider).role == Role.REVIEWER


@pytest.mark.django_db
def test_hostile_markup_in_model_output_is_rendered_inert(client, make_project, annotator):
    from labeling.importers import ImportKind, import_file

    project = make_project(pairs=0, members={annotator: Role.ANNOTATOR})
    hostile = (
        b'{"prompt": "<script>alert(1)</script>", "response_a": "<img src=x onerror=alert(1)>",'
        b' "response_b": "[click](javascript:alert(1))"}'
    )
    import_file(project, hostile, "x.jsonl", ImportKind.PAIRS)
    client.force_login(annotator)
    body = client.get(url("annotate", project)).content.decode()
    assert "<script>alert" not in body
    assert "<img" not in body
    assert 'href="javascript:' not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest.mark.django_db
def test_django_admin_lists_every_model(admin_client, project):
    for model in ("project", "membership", "round", "prompt", "completion", "comparison", "vote"):
        response = admin_client.get(reverse(f"admin:labeling_{model}_changelist"))
        assert response.status_code == 200, model
    response = admin_client.get(reverse("admin:labeling_project_import", args=[project.id]))
    assert response.status_code == 200
