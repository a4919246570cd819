"""The data browser page (reviewers and admins): filters in the query string, 25 a page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labeling.browser import BrowserFilters, search_comparisons
from labeling.forms import BrowserForm
from labeling.review import status_of
from labeling.web import reviewer_or_403

PAGE_SIZE = 25


@login_required
@require_GET
def browse(request: HttpRequest, project_id: int) -> HttpResponse:
    membership = reviewer_or_403(request, project_id)
    project = membership.project
    form = BrowserForm(request.GET)
    if not form.is_valid():
        context = {"project": project, "membership": membership, "form": form, "page": None}
        return render(request, "labeling/browser/browse.html", context, status=400)
    data = form.cleaned_data
    filters = BrowserFilters(
        text=data["q"].strip(),
        round=data["round"],
        status=data["status"],
        min_agreement=data["min_agreement"],
        max_agreement=data["max_agreement"],
        annotator=data["annotator"].strip(),
        model=data["model"].strip(),
        flag_reason=data["flag"],
    )
    page = Paginator(search_comparisons(project, filters), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = [{"comparison": c, "status": status_of(c)} for c in page.object_list]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "labeling/browser/browse.html",
        {
            "project": project,
            "membership": membership,
            "form": form,
            "page": page,
            "rows": rows,
            "query": query.urlencode(),
        },
    )
