from django.urls import path

from evaluation import views

app_name = "evaluation"

urlpatterns = [
    path("projects/<int:project_id>/evaluations/", views.project_evaluations, name="project"),
    path("projects/<int:project_id>/evaluations/hold-out/", views.hold_out, name="hold_out"),
    path("projects/<int:project_id>/evaluations/gate-rule/", views.gate_rule, name="gate_rule"),
    path(
        "projects/<int:project_id>/evaluations/<int:evaluation_id>/",
        views.evaluation_detail,
        name="evaluation",
    ),
    path(
        "projects/<int:project_id>/evaluations/<int:evaluation_id>/gate/",
        views.evaluation_gate,
        name="evaluation_gate",
    ),
    path("projects/<int:project_id>/lineage/", views.lineage, name="lineage"),
    path(
        "projects/<int:project_id>/checkpoints/<int:checkpoint_id>/",
        views.checkpoint_detail,
        name="checkpoint",
    ),
    path(
        "projects/<int:project_id>/checkpoints/<int:checkpoint_id>/evaluate/",
        views.evaluation_create,
        name="evaluation_create",
    ),
    path(
        "projects/<int:project_id>/checkpoints/<int:checkpoint_id>/override/",
        views.checkpoint_override,
        name="checkpoint_override",
    ),
]
