"""bench/annotate_load.py's client against the real pages, for a second: it logs in, parses
the workbench, votes, and the integrity check agrees. A template change that breaks what the
benchmark reads fails here, not on the day someone runs the benchmark."""

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import annotate_load  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def test_annotators_vote_through_the_pages_and_nothing_is_over_voted(live_server):
    # SQLite takes one writer at a time; concurrent annotators need PostgreSQL (as CI has).
    annotators = 3 if connection.vendor == "postgresql" else 1
    project_id, usernames = annotate_load.populate(annotators, 12, 2, analyze=False)
    args = annotate_load.parse_args(
        ["--annotators", str(annotators), "--duration", "1", "--warmup", "0", "--pairs", "12"]
    )
    port = int(live_server.url.rsplit(":", 1)[1])
    # Its own thread and event loop: Playwright's browser fixture may hold this thread's loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        drive = annotate_load.drive(args, port, project_id, usernames, os.getpid())
        baseline, annotating, _ = pool.submit(asyncio.run, drive).result(timeout=120)
    assert baseline.rec.healthz and not baseline.rec.http_errors
    recorded = annotating.rec
    assert recorded.votes_saved > 0, recorded
    assert not recorded.http_errors, recorded.http_errors
    assert recorded.get_next and recorded.submit
    integrity = annotate_load.check_database(project_id)
    assert integrity.ok(recorded.votes_saved, recorded.submits_unanswered), integrity
