from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness probe for load balancers and the load benchmark's baseline view."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("api.urls")),
    path("account/tokens/", include("api.ui_urls")),
    path("", include("labeling.urls")),
    path("", include("training.urls")),
    path("", include("judging.urls")),
    path("", include("evaluation.urls")),
]
