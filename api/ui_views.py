"""API token pages: list your tokens, make one (its secret is shown once), revoke one.

Every user sees and revokes only their own tokens; anyone else's token answers 404.
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


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = TokenForm(user, request.POST or None)
    secret = None
    status = 200
    if request.method == "POST":
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
                # Rendered, not redirected: the secret must never sit in a URL or a session.
                secret, status = new.secret, 201
                form = TokenForm(user)
    context = {
        "tokens": list_user_tokens(user),
        "form": form,
        "secret": secret,
        "api_root": request.build_absolute_uri(reverse("api:api-root")),
    }
    return render(request, "api/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, id=token_id, user=current_user(request))
    if revoke_token(token):
        messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return see_other(reverse("api_tokens:list"))
