"""The PrefLab export API (django-ninja), mounted at /api/v1/.

Schema: /api/v1/openapi.json; interactive docs: /api/v1/docs; user guide: docs/api.md.
"""

from __future__ import annotations

from ninja import NinjaAPI
from ninja.operation import Operation

from api import evaluations, judges, preferences, quality, rankings, review, runs, views
from api.errors import install_error_handlers


class PrefLabAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        # Stable, readable ids (list_snapshots, not api_views_list_snapshots) for generated
        # clients; view function names are unique across the API's routers.
        return operation.view_func.__name__


api = PrefLabAPI(
    title="PrefLab API",
    version="1",
    description=(
        "Preference data, snapshots and training runs of PrefLab projects. Authenticate with "
        "`Authorization: Bearer <token>` (make tokens under Account → API tokens). Errors are "
        '`{"error": {"code", "message", "details"}}` with a stable code. See docs/api.md.'
    ),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)
install_error_handlers(api)
api.add_router("", views.router)
api.add_router("", preferences.router)
api.add_router("", runs.router)
api.add_router("", quality.router)
api.add_router("", review.router)
api.add_router("", evaluations.router)
api.add_router("", judges.router)
api.add_router("", rankings.router)
