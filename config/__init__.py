# The Celery app is created with Django in every process (Celery's Django layout), so the web
# process's core.jobs.enqueue() sends through the configured broker.
from workers.celery import app as celery_app

__all__ = ["celery_app"]
