"""Helpers every PrefLab view shares: membership checks, htmx-aware rendering, redirects."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from labeling import services
from labeling.models import Membership


def current_user(request: HttpRequest) -> User:
    # Every caller sits behind login_required, so the user is a real, authenticated User.
    return cast(User, request.user)


def membership_or_404(request: HttpRequest, project_id: int) -> Membership:
    membership = services.get_membership(current_user(request), project_id)
    if membership is None:
        # 404, not 403: a user outside a project must not learn that it exists.
        raise Http404("No such project.")
    return membership


def manager_or_403(request: HttpRequest, project_id: int) -> Membership:
    membership = membership_or_404(request, project_id)
    if not membership.can_manage:
        raise PermissionDenied("Only the project's admins can do this.")
    return membership


def reviewer_or_403(request: HttpRequest, project_id: int) -> Membership:
    membership = membership_or_404(request, project_id)
    if not membership.can_review:
        raise PermissionDenied("Only the project's reviewers and admins can see this.")
    return membership


def see_other(location: str) -> HttpResponse:
    """Redirect after a POST so a reload does not resubmit the form."""
    response = HttpResponse(status=303)
    response["Location"] = location
    return response


def render_page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render the page, or only its named partial (context["partial"]) when htmx asked."""
    partial = context.pop("partial", None)
    is_htmx = bool(getattr(request, "htmx", False))
    name = f"{template}#{partial}" if is_htmx and partial else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response
