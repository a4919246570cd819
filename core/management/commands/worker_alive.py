"""Exit 0 when this machine's worker is consuming, 1 when not (compose's healthcheck)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.liveness import check_alive


class Command(BaseCommand):
    help = (
        "Check that the local Celery worker's consumer is alive: PREFLAB_WORKER_ALIVE_FILE was "
        "touched within PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        alive, message = check_alive()
        if not alive:
            raise CommandError(message)
        self.stdout.write(message)
