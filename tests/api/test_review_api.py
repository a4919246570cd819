"""GET projects/{id}/adjudications and projects/{id}/flags: reviewer or admin, scope read."""

from api.models import Scope
from labeling.models import Comparison, FlagKind, FlagReason, Role
from labeling.review import adjudicate, resolve_flag
from labeling.services import add_member, set_aside_comparison
from tests.api.conftest import bearer
from tests.conftest import make_user


def test_reviewers_read_adjudications_and_flags_page_by_page(api_client, world):
    project = world.home.project
    annotator = make_user("api_flagger")
    add_member(project, annotator, Role.ANNOTATOR)
    first, second = Comparison.objects.filter(project=project, vote_count=0).order_by("id")[:2]
    adjudicate(world.owner, first, "B", "B is right")
    flag = set_aside_comparison(
        annotator, project, first.id, FlagKind.FLAG, FlagReason.HARMFUL, "rude"
    )
    set_aside_comparison(annotator, project, second.id, FlagKind.SKIP, FlagReason.OTHER)
    resolve_flag(world.owner, flag, "checked")
    headers = bearer(world.token([Scope.READ]))
    answer = api_client.get(f"/api/v1/projects/{project.id}/adjudications", **headers)
    assert answer.status_code == 200
    [row] = answer.json()["items"]
    assert (row["comparison_id"], row["choice"], row["note"], row["reviewer"]) == (
        first.id,
        "B",
        "B is right",
        "token_owner",
    )
    flags = api_client.get(f"/api/v1/projects/{project.id}/flags?limit=1", **headers).json()
    assert flags["items"][0]["kind"] == "flag" and flags["items"][0]["resolved_by"] == "token_owner"
    following = api_client.get(
        f"/api/v1/projects/{project.id}/flags?limit=1&cursor={flags['next_cursor']}", **headers
    ).json()
    assert [f["kind"] for f in following["items"]] == ["skip"] and following["next_cursor"] is None
    skips = api_client.get(
        f"/api/v1/projects/{project.id}/flags?kind=skip&resolved=false", **headers
    ).json()
    assert [f["comparison_id"] for f in skips["items"]] == [second.id]


def test_annotators_get_403_outsiders_404_and_the_read_scope_is_needed(api_client, world):
    project = world.home.project
    annotator = make_user("api_annotator")
    add_member(project, annotator, Role.ANNOTATOR)
    token = world.token([Scope.READ], user=annotator)
    for path in ("adjudications", "flags"):
        url = f"/api/v1/projects/{project.id}/{path}"
        answer = api_client.get(url, **bearer(token))
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "insufficient_role"
        no_scope = api_client.get(url, **bearer(world.token([Scope.EXPORT])))
        assert no_scope.status_code == 403 and no_scope.json()["error"]["code"] == "missing_scope"
        other = f"/api/v1/projects/{world.other.project.id}/{path}"
        assert api_client.get(other, **bearer(world.token([Scope.READ]))).status_code == 404
