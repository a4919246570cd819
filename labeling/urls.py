from django.urls import path

from labeling import browser_views, quality_views, ranking_views, review_views, team_views, views

app_name = "labeling"

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/vote/", views.vote, name="vote"),
    path("projects/<int:project_id>/undo/", views.undo, name="undo"),
    path("projects/<int:project_id>/rank/", ranking_views.rank, name="rank"),
    path("projects/<int:project_id>/rank/submit/", ranking_views.submit, name="rank_submit"),
    path("projects/<int:project_id>/rank/skip/", ranking_views.skip, name="rank_skip"),
    path("projects/<int:project_id>/rank/undo/", ranking_views.undo, name="rank_undo"),
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
    path("projects/<int:project_id>/set-aside/", views.set_aside, name="set_aside"),
    path("projects/<int:project_id>/queue/", views.queue_settings, name="queue_settings"),
    path("projects/<int:project_id>/review/", review_views.review_queue, name="review"),
    path(
        "projects/<int:project_id>/review/comparisons/<int:comparison_id>/",
        review_views.review_comparison,
        name="review_comparison",
    ),
    path(
        "projects/<int:project_id>/review/comparisons/<int:comparison_id>/adjudicate/",
        review_views.adjudicate,
        name="adjudicate",
    ),
    path(
        "projects/<int:project_id>/review/comparisons/<int:comparison_id>/gold/",
        review_views.set_gold,
        name="set_gold",
    ),
    path(
        "projects/<int:project_id>/review/flags/<int:flag_id>/resolve/",
        review_views.resolve_flag,
        name="resolve_flag",
    ),
    path(
        "projects/<int:project_id>/review/exclusions/", review_views.exclusions, name="exclusions"
    ),
    path(
        "projects/<int:project_id>/review/exclusions/<int:exclusion_id>/lift/",
        review_views.lift_exclusion,
        name="lift_exclusion",
    ),
    path("projects/<int:project_id>/browse/", browser_views.browse, name="browse"),
    path("projects/<int:project_id>/team/", team_views.team_page, name="team"),
    path("projects/<int:project_id>/team/create/", team_views.create_member, name="team_create"),
    path("projects/<int:project_id>/team/bulk/", team_views.bulk_members, name="team_bulk"),
    path("projects/<int:project_id>/team/invite/", team_views.create_invite, name="team_invite"),
    path(
        "projects/<int:project_id>/team/members/<int:member_id>/remove/",
        team_views.remove_member,
        name="team_remove",
    ),
    path("invite/<str:token>/", team_views.invite, name="invite"),
    path("votes/", views.my_votes, name="my_votes"),
    path("highlight.css", views.highlight_stylesheet, name="highlight_css"),
]
