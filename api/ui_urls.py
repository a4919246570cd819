"""The API token pages. Mount with: path("account/tokens/", include("api.ui_urls"))."""

from django.urls import path

from api import ui_views

app_name = "api_tokens"

urlpatterns = [
    path("", ui_views.token_list, name="list"),
    path("<int:token_id>/revoke/", ui_views.token_revoke, name="revoke"),
]
