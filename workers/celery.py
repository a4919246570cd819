"""The Celery app. Queues: `default` (imports, snapshots, housekeeping) and `gpu` (training,
sampling). GPU workers run `-Q gpu --concurrency 1 --prefetch-multiplier 1`; tasks acknowledge
late and are rejected (requeued) when their worker dies.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from core.liveness import LivenessStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("preflab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
# The liveness file and its guard (core/liveness.py): a worker that stops consuming exits.
app.steps["consumer"].add(LivenessStep)


def _ensure_broker_folders() -> None:
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)


_ensure_broker_folders()
