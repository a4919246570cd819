from django.urls import path

from judging import views

app_name = "judging"

urlpatterns = [
    path("projects/<int:project_id>/judges/", views.judges_page, name="judges"),
    path("projects/<int:project_id>/judges/add/", views.judge_add, name="judge_add"),
    path(
        "projects/<int:project_id>/judges/<int:judge_id>/edit/",
        views.judge_edit,
        name="judge_edit",
    ),
    path(
        "projects/<int:project_id>/judges/<int:judge_id>/start/",
        views.judging_start,
        name="judging_start",
    ),
    path(
        "projects/<int:project_id>/judging/<int:job_id>/cancel/",
        views.judging_cancel,
        name="judging_cancel",
    ),
]
