from django.urls import path

from labeling import quality_views, views

app_name = "labeling"

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/vote/", views.vote, name="vote"),
    path("projects/<int:project_id>/undo/", views.undo, name="undo"),
    path("projects/<int:project_id>/import/", views.import_data, name="import"),
    path("projects/<int:project_id>/members/", views.add_member, name="add_member"),
    path("projects/<int:project_id>/quality/", quality_views.quality, name="quality"),
    path(
        "projects/<int:project_id>/quality/recompute/",
        quality_views.quality_recompute,
        name="quality_recompute",
    ),
    path(
        "projects/<int:project_id>/quality/settings/",
        quality_views.quality_settings,
        name="quality_settings",
    ),
    path("votes/", views.my_votes, name="my_votes"),
    path("highlight.css", views.highlight_stylesheet, name="highlight_css"),
]
