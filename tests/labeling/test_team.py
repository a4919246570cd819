"""Team management: create with a generated password, one-time invite links, CSV bulk add
(errors by line, all or nothing), removal that deactivates users left with no project."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from labeling.models import Invite, Membership, Role
from labeling.services import add_member
from labeling.team import TeamError, accept_invite, bulk_create_members, create_invite

User = get_user_model()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_admin_creates_a_member_and_sees_the_password_once(client, project, project_admin):
    client.force_login(project_admin)
    answer = client.post(
        reverse("labeling:team_create", args=[project.id]),
        {"username": "newbie", "role": "reviewer"},
    )
    assert answer.status_code == 200
    password = answer.context["created"][0].password
    assert password.encode() in answer.content
    newbie = User.objects.get(username="newbie")
    assert newbie.check_password(password) and password not in newbie.password
    assert Membership.objects.get(user=newbie, project=project).role == Role.REVIEWER
    assert password.encode() not in client.get(reverse("labeling:team", args=[project.id])).content
    taken = client.post(
        reverse("labeling:team_create", args=[project.id]),
        {"username": "newbie", "role": "annotator"},
    )
    assert taken.status_code == 400 and b"already exists" in taken.content


def test_invite_link_is_used_once_and_stores_only_a_hash(client, project, project_admin, outsider):
    client.force_login(project_admin)
    answer = client.post(
        reverse("labeling:team_invite", args=[project.id]), {"role": "annotator", "days": 3}
    )
    link = answer.context["invite_link"]
    token = link.rstrip("/").rsplit("/", 1)[1]
    invite = Invite.objects.get()
    assert invite.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in invite.token_hash
    client.logout()
    signup = client.post(
        f"/invite/{token}/",
        {"username": "invited_ivy", "password1": "a-long-pass-12", "password2": "a-long-pass-12"},
    )
    assert signup.status_code == 303
    ivy = User.objects.get(username="invited_ivy")
    assert Membership.objects.get(user=ivy, project=project).role == Role.ANNOTATOR
    invite.refresh_from_db()
    assert invite.used_by == ivy and invite.used_at is not None
    # Used: the link is dead for everyone, signed in or not.
    client.force_login(outsider)
    assert client.get(f"/invite/{token}/").status_code == 404
    assert client.post(f"/invite/{token}/").status_code == 404
    assert not Membership.objects.filter(user=outsider).exists()
    with pytest.raises(TeamError):
        accept_invite(token, outsider)


def test_signed_in_user_joins_with_an_invite_and_expired_ones_are_refused(
    client, project, project_admin, outsider
):
    new = create_invite(project, Role.REVIEWER, project_admin)
    client.force_login(outsider)
    assert client.get(f"/invite/{new.token}/").status_code == 200
    assert client.post(f"/invite/{new.token}/").status_code == 303
    assert Membership.objects.get(user=outsider, project=project).role == Role.REVIEWER
    old = create_invite(project, Role.ADMIN, project_admin)
    Invite.objects.filter(id=old.invite.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(f"/invite/{old.token}/").status_code == 404
    assert client.get("/invite/not-a-token/").status_code == 404


def test_csv_bulk_errors_name_the_line_and_add_no_one(client, project, project_admin):
    data = (
        b"username,role,email\n"
        b"carol,annotator,carol@example.org\n"
        b"dave,boss\n"
        b"carol,reviewer\n"
        b"annotator_person,annotator\n"
        b"erin,reviewer,not-an-email\n"
        b"frank\n"
    )
    with pytest.raises(TeamError) as failed:
        bulk_create_members(project, data)
    assert failed.value.errors == [
        "line 3: role 'boss' is not one of annotator, reviewer, admin",
        "line 4: repeats the username of line 2",
        "line 5: a user named 'annotator_person' already exists",
        "line 6: email 'not-an-email' is not a valid address",
        "line 7: expected username,role[,email], got 1 cells",
    ]
    assert not User.objects.filter(username__in=["carol", "dave", "erin"]).exists()
    client.force_login(project_admin)
    upload = SimpleUploadedFile("team.csv", b"carol,annotator\ndave,Reviewer,dave@example.org\n")
    answer = client.post(reverse("labeling:team_bulk", args=[project.id]), {"file": upload})
    assert answer.status_code == 200
    created = {c.username: c for c in answer.context["created"]}
    assert set(created) == {"carol", "dave"}
    assert User.objects.get(username="dave").check_password(created["dave"].password)
    assert Membership.objects.get(user__username="dave", project=project).role == Role.REVIEWER


def test_removing_a_member_deactivates_a_user_left_with_no_project(
    client, project, project_admin, annotator
):
    client.force_login(project_admin)
    member = Membership.objects.get(user=annotator, project=project)
    assert (
        client.post(reverse("labeling:team_remove", args=[project.id, member.id])).status_code
        == 303
    )
    annotator.refresh_from_db()
    assert not annotator.is_active and not Membership.objects.filter(user=annotator).exists()
    # Re-adding gives the membership back but not the login: only staff reactivate.
    add_member(project, annotator, Role.ANNOTATOR)
    annotator.refresh_from_db()
    assert not annotator.is_active
    own = Membership.objects.get(user=project_admin, project=project)
    client.post(reverse("labeling:team_remove", args=[project.id, own.id]))
    assert Membership.objects.filter(id=own.id).exists()  # an admin cannot remove themself


def test_annotators_and_reviewers_cannot_manage_the_team(
    client, project, annotator, reviewer, outsider
):
    url = reverse("labeling:team", args=[project.id])
    for user, status in ((annotator, 403), (reviewer, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(url).status_code == status
        assert (
            client.post(
                reverse("labeling:team_create", args=[project.id]),
                {"username": "x", "role": "admin"},
            ).status_code
            == status
        )
    assert not User.objects.filter(username="x").exists()
