"""Team pages: a project admin creates, invites, bulk-adds and removes members; invite links.

Generated passwords and invite links are shown once, in the answer to the POST that made
them (never stored in clear, never in a redirect or a message that a reload could show).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling import team
from labeling.forms import BulkMembersForm, CreateMemberForm, InviteForm
from labeling.models import Membership
from labeling.web import current_user, manager_or_403, see_other

TEMPLATE = "labeling/team/team.html"


def _context(request: HttpRequest, membership: Membership, **extra: Any) -> dict[str, Any]:
    project = membership.project
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "members": project.memberships.select_related("user").order_by("user__username"),
        "invites": project.invites.select_related("created_by", "used_by")[:20],
        "create_form": CreateMemberForm(),
        "invite_form": InviteForm(),
        "bulk_form": BulkMembersForm(),
    }
    context.update(extra)
    return context


@login_required
@require_GET
def team_page(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    return render(request, TEMPLATE, _context(request, membership))


@login_required
@require_POST
def create_member(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    form = CreateMemberForm(request.POST)
    errors: list[str] = []
    if form.is_valid():
        data = form.cleaned_data
        try:
            created = team.create_member(
                membership.project, data["username"], data["role"], data["email"] or ""
            )
        except team.TeamError as exc:
            errors = exc.errors
        else:
            return render(request, TEMPLATE, _context(request, membership, created=[created]))
    context = _context(request, membership, create_form=form, create_errors=errors)
    return render(request, TEMPLATE, context, status=400)


@login_required
@require_POST
def bulk_members(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    form = BulkMembersForm(request.POST, request.FILES)
    errors: list[str] = []
    if form.is_valid():
        try:
            created = team.bulk_create_members(membership.project, form.cleaned_data["file"].read())
        except team.TeamError as exc:
            errors = exc.errors
        else:
            return render(request, TEMPLATE, _context(request, membership, created=created))
    context = _context(request, membership, bulk_form=form, bulk_errors=errors)
    return render(request, TEMPLATE, context, status=400)


@login_required
@require_POST
def create_invite(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return render(
            request, TEMPLATE, _context(request, membership, invite_form=form), status=400
        )
    new = team.create_invite(
        membership.project,
        form.cleaned_data["role"],
        current_user(request),
        form.cleaned_data["days"],
    )
    link = request.build_absolute_uri(reverse("labeling:invite", args=[new.token]))
    return render(
        request, TEMPLATE, _context(request, membership, invite_link=link, new_invite=new.invite)
    )


@login_required
@require_POST
def remove_member(request: HttpRequest, project_id: int, member_id: int) -> HttpResponse:
    membership = manager_or_403(request, project_id)
    member = (
        Membership.objects.filter(id=member_id, project=membership.project)
        .select_related("user")
        .first()
    )
    if member is None:
        raise Http404("No such member.")
    try:
        deactivated = team.remove_member(membership.project, member, current_user(request))
    except team.TeamError as exc:
        messages.error(request, "; ".join(exc.errors))
    else:
        note = (
            " Their account is deactivated: they belong to no project now." if deactivated else ""
        )
        messages.success(request, f"{member.user.username} is no longer a member.{note}")
    return see_other(reverse("labeling:team", args=[membership.project.id]))


@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest, token: str) -> HttpResponse:
    """An invite link: join as the signed-in user, or sign up; 404 when unusable."""
    found = team.find_invite(token)
    if found is None:
        raise Http404("This invite link is not valid, has expired or was already used.")
    project_url = reverse("labeling:project_detail", args=[found.project_id])
    signup: UserCreationForm[Any] = UserCreationForm()
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                team.accept_invite(token, current_user(request))
                return see_other(project_url)
            signup = UserCreationForm(request.POST)
            if signup.is_valid():
                user, _ = team.sign_up_with_invite(
                    token, signup.cleaned_data["username"], signup.cleaned_data["password1"]
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return see_other(project_url)
        except team.TeamError as exc:
            signup.add_error(None, "; ".join(exc.errors))
        status = 400
    else:
        status = 200
    return render(
        request,
        "labeling/team/invite.html",
        {"invite": found, "signup": signup, "token": token},
        status=status,
    )
