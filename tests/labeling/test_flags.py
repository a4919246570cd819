"""Skip and flag on the annotate page: a skipped item is not served to that annotator again,
a flagged one goes to the reviewers' queue."""

from django.urls import reverse

from labeling.models import Comparison, FlagKind, ItemFlag
from labeling.review import get_review_queue
from labeling.services import lease_next_comparison

HX = {"HTTP_HX_REQUEST": "true"}


def post_set_aside(client, project, comparison, kind, reason="cannot_judge", note=""):
    return client.post(
        reverse("labeling:set_aside", args=[project.id]),
        {"comparison": comparison.id, "kind": kind, "reason": reason, "note": note},
        **HX,
    )


def test_skipped_comparison_is_not_served_to_that_annotator_again(
    client, project, annotator, reviewer
):
    client.force_login(annotator)
    client.get(reverse("labeling:annotate", args=[project.id]), **HX)
    skipped = Comparison.objects.get(leased_to=annotator)
    answer = post_set_aside(client, project, skipped, FlagKind.SKIP)
    assert answer.status_code == 200 and b"Skipped; you will not see it again." in answer.content
    assert b"<html" not in answer.content
    assert ItemFlag.objects.get(user=annotator).kind == FlagKind.SKIP
    served = set()
    while (comparison := lease_next_comparison(annotator, project, may_hold=False)) is not None:
        served.add(comparison.id)
        Comparison.objects.filter(id=comparison.id).update(vote_count=comparison.votes_target)
    assert skipped.id not in served and len(served) == 4
    # Someone else still gets it, and a skip is not a flag: the review queue stays empty.
    assert lease_next_comparison(reviewer, project).id == skipped.id
    assert get_review_queue(project).flags_total == 0


def test_flagged_comparison_goes_to_the_review_queue_with_its_reason(client, project, annotator):
    client.force_login(annotator)
    client.get(reverse("labeling:annotate", args=[project.id]), **HX)
    flagged = Comparison.objects.get(leased_to=annotator)
    answer = post_set_aside(client, project, flagged, FlagKind.FLAG, "harmful", "Rude reply")
    assert b"Flagged for a reviewer" in answer.content
    queue = get_review_queue(project)
    assert [(f.comparison_id, f.reason, f.note) for f in queue.flags] == [
        (flagged.id, "harmful", "Rude reply")
    ]
    # The next comparison was swapped in; the flagged one is no longer leased to them.
    assert not Comparison.objects.filter(id=flagged.id, leased_to=annotator).exists()
    # Flagging twice is refused with a message, and nothing changes.
    again = post_set_aside(client, project, flagged, FlagKind.FLAG, "other")
    assert again.status_code == 409 and b"already skipped or flagged" in again.content
    assert ItemFlag.objects.count() == 1


def test_invalid_flag_post_answers_400_with_the_error_in_the_fragment(client, project, annotator):
    client.force_login(annotator)
    client.get(reverse("labeling:annotate", args=[project.id]), **HX)
    held = Comparison.objects.get(leased_to=annotator)
    answer = post_set_aside(client, project, held, FlagKind.FLAG, reason="boring")
    assert answer.status_code == 400
    assert b"Select a valid choice" in answer.content and b"<html" not in answer.content
    assert not ItemFlag.objects.exists()


def test_outsider_cannot_flag(client, project, outsider):
    client.force_login(outsider)
    comparison = Comparison.objects.filter(project=project).first()
    assert post_set_aside(client, project, comparison, FlagKind.FLAG).status_code == 404
