"""API token pages: list your tokens, make one (its secret is shown once), revoke one.

Every user sees and revokes only their own tokens; anyone else's token answers 404.

Making a token redirects (post/redirect/get), so reloading the page never makes a second one.
The secret rides that redirect in a one-time cookie: signed, HttpOnly, limited to this page's
path and to a minute, and deleted by the GET that shows it. It never sits in a URL, a session
or the database.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from api.forms import TokenForm
from api.models import ApiToken
from api.tokens import TokenRefused, create_token, list_user_tokens, revoke_token
from labeling.web import current_user, see_other

NEW_TOKEN_COOKIE = "preflab_new_token"


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = TokenForm(user, request.POST or None)
    secret = None
    status = 200
    if request.method == "GET":
        secret = request.get_signed_cookie(
            NEW_TOKEN_COOKIE, default=None, salt=_cookie_salt(user.pk), max_age=60
        )
    else:
        status = 400
        if form.is_valid():
            try:
                new = create_token(
                    user,
                    form.cleaned_data["name"],
                    form.cleaned_data["scopes"],
                    form.cleaned_data["projects"],
                    form.expires_at(),
                )
            except TokenRefused as exc:
                form.add_error(None, str(exc))
            else:
                redirect = see_other(reverse("api_tokens:list"))
                redirect.set_signed_cookie(
                    NEW_TOKEN_COOKIE,
                    new.secret,
                    salt=_cookie_salt(user.pk),
                    max_age=60,
                    path=reverse("api_tokens:list"),
                    secure=request.is_secure(),
                    httponly=True,
                    samesite="Strict",
                )
                return redirect
    context = {
        "tokens": list_user_tokens(user),
        "form": form,
        "secret": secret,
        "api_root": request.build_absolute_uri(reverse("api:api-root")),
    }
    response = render(request, "api/tokens.html", context, status=status)
    if NEW_TOKEN_COOKIE in request.COOKIES:
        response.delete_cookie(NEW_TOKEN_COOKIE, path=reverse("api_tokens:list"), samesite="Strict")
    return response


def _cookie_salt(user_id: int) -> str:
    # Salted per user: a cookie made for one account is never shown to another.
    return f"api-tokens-new-secret-{user_id}"


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, id=token_id, user=current_user(request))
    if revoke_token(token):
        messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return see_other(reverse("api_tokens:list"))
