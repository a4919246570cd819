"""The project's URLs plus the token pages, mounted as docs/api.md asks config/urls.py to."""

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("account/tokens/", include("api.ui_urls")),
    *project_urlpatterns,
]
