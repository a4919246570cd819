"""The ranking page: an annotator orders a task's K responses, best first (docs/rankings.md).

As the annotate page: each view validates its form, checks membership, calls one service of
labeling.ranking_services and renders; the page and its htmx fragment (`rankbench`) share one
URL, and without htmx every POST answers with a redirect to the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling import ranking_services
from labeling.forms import RankingForm, RankingSkipForm
from labeling.models import Membership, Project, RankingTask
from labeling.web import current_user, membership_or_404, render_page, see_other

TEMPLATE = "labeling/rank.html"
LETTERS = "ABCDEFGH"  # a response's name on the page, by where it was first shown


def _bench_context(
    request: HttpRequest,
    membership: Membership,
    task: RankingTask | None,
    *,
    notice: str = "",
    error: str = "",
    form: RankingForm | None = None,
    skip_form: RankingSkipForm | None = None,
) -> dict[str, Any]:
    project = membership.project
    user = current_user(request)
    status = ranking_services.get_ranking_status(user, project)
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "task": task,
        "status": status,
        "undoable": status.undoable_ranking_id is not None,
        "notice": notice,
        "error": error,
        "form": form,
        "partial": "rankbench",
    }
    if task is not None:
        items = ranking_services.list_items_in_display_order(user, task)
        context.update(
            items=[
                {"item": item, "letter": LETTERS[index], "place": index + 1}
                for index, item in enumerate(items)
            ],
            places=range(1, task.size + 1),
            skip_form=skip_form or RankingSkipForm(initial={"task": task.pk}),
        )
    return context


def _task_to_redisplay(task_id: int | None, project: Project, user: User) -> RankingTask | None:
    """The task an invalid form was about, or the annotator's next one."""
    task = (
        RankingTask.objects.filter(project=project, id=task_id)
        .select_related("prompt", "round")
        .first()
        if task_id
        else None
    )
    return task or ranking_services.lease_next_ranking_task(user, project)


def _back_to_page(request: HttpRequest, project: Project, notice: str) -> HttpResponse:
    messages.info(request, notice)
    return see_other(reverse("labeling:rank", args=[project.id]))


@login_required
@require_GET
def rank(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = membership_or_404(request, project_id)
    task = ranking_services.lease_next_ranking_task(current_user(request), membership.project)
    return render_page(request, TEMPLATE, _bench_context(request, membership, task))


def _answer(
    request: HttpRequest,
    membership: Membership,
    action: Callable[[], str],
    *,
    releases_lease: bool = False,
) -> HttpResponse:
    """Run one ranking action (it returns the notice to show, or raises RankingRejected) and
    answer with the next task as an htmx fragment, or a redirect to the page without htmx.

    releases_lease: a successful action released the annotator's lease, so there is no held
    task to look for; a refused one leaves it held, and the same task comes back."""
    project = membership.project
    user = current_user(request)
    notice = error = ""
    status = 200
    try:
        notice = action()
    except ranking_services.RankingRejected as exc:
        error, status = str(exc), 409
    if not request.htmx:  # type: ignore[attr-defined]
        return _back_to_page(request, project, notice or error)
    may_hold = bool(error) or not releases_lease
    task = ranking_services.lease_next_ranking_task(user, project, may_hold=may_hold)
    context = _bench_context(request, membership, task, notice=notice, error=error)
    return render_page(request, TEMPLATE, context, status=status)


@login_required
@require_POST
def submit(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = membership_or_404(request, project_id)
    project = membership.project
    user = current_user(request)
    form = RankingForm(request.POST)
    if not form.is_valid():
        task = _task_to_redisplay(form.cleaned_data.get("task"), project, user)
        context = _bench_context(request, membership, task, form=form)
        return render_page(request, TEMPLATE, context, status=400)
    data = form.cleaned_data

    def store() -> str:
        result = ranking_services.submit_ranking(
            user, project, data["task"], data["ranking"], data["client_key"]
        )
        return "Your ranking was already saved." if result.repeated else "Ranking saved."

    return _answer(request, membership, store, releases_lease=True)


@login_required
@require_POST
def skip(request: HttpRequest, project_id: int) -> HttpResponse:
    """Set the task aside with a reason: it is not served to this annotator again."""
    membership = membership_or_404(request, project_id)
    project = membership.project
    user = current_user(request)
    form = RankingSkipForm(request.POST)
    if not form.is_valid():
        task = _task_to_redisplay(form.cleaned_data.get("task"), project, user)
        context = _bench_context(request, membership, task, skip_form=form)
        return render_page(request, TEMPLATE, context, status=400)
    data = form.cleaned_data

    def set_aside() -> str:
        ranking_services.skip_ranking_task(
            user, project, data["task"], data["reason"], data["note"]
        )
        return "Skipped; you will not see it again."

    return _answer(request, membership, set_aside)


@login_required
@require_POST
def undo(request: HttpRequest, project_id: int) -> HttpResponse:
    """Delete the annotator's last ranking (inside the undo window) and show its task again."""
    membership = membership_or_404(request, project_id)

    def take_back() -> str:
        ranking_services.undo_last_ranking(current_user(request), membership.project)
        return "Ranking undone."

    return _answer(request, membership, take_back)
