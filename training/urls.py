from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("projects/<int:project_id>/pipeline/", views.pipeline, name="pipeline"),
    path("projects/<int:project_id>/snapshots/", views.snapshot_create, name="snapshot_create"),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/",
        views.snapshot_detail,
        name="snapshot",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/<str:file_format>/",
        views.snapshot_download,
        name="snapshot_download",
    ),
    path("projects/<int:project_id>/runs/new/", views.run_create, name="run_create"),
    path("projects/<int:project_id>/runs/compare/", views.run_compare, name="run_compare"),
    path("projects/<int:project_id>/runs/<int:run_id>/", views.run_detail, name="run"),
    path(
        "projects/<int:project_id>/runs/<int:run_id>/metrics.json",
        views.run_metrics,
        name="run_metrics",
    ),
    path(
        "projects/<int:project_id>/runs/<int:run_id>/cancel/",
        views.run_cancel,
        name="run_cancel",
    ),
    path(
        "projects/<int:project_id>/sampling/<int:job_id>/",
        views.sampling_job_detail,
        name="sampling_job",
    ),
    path(
        "projects/<int:project_id>/checkpoints/<int:checkpoint_id>/sample/",
        views.sampling_create,
        name="sampling_create",
    ),
]
