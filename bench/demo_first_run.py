"""The demo's first training run, end to end, as a new user would start it.

Seeds the demo project (`manage.py seed_demo`) in a scratch database, has its two annotators
vote on every comparison (`--prefer longer`: both pick the longer reply, as the README's
figures do; `--prefer newer`: the newer demo model's, rlhf-v1 over sft-v2 over sft-v1 over
base-v0), builds a snapshot (`--policy`, majority by default), opens the run form as the demo
admin and submits it with the values the form shows (nothing changed), then runs the queued
run in this process the way a worker does (training.services.execute_run). Prints the run's
configuration, wall and CPU time (this process and the engine it starts), the machine load,
and whether it learned: the training loss and reward accuracy at the start and the end, and
the held-out evaluation where the run has one.

    DJANGO_SETTINGS_MODULE=config.settings_test .venv/bin/python bench/demo_first_run.py \\
        --base-model var/models/demo-sft --db-name <scratch>

The scratch database is dropped at the end unless --keep-db.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_RANK = {"demo-base-v0": 0, "demo-sft-v1": 1, "demo-sft-v2": 2, "demo-rlhf-v1": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", required=True, help="the prepared demo model directory")
    parser.add_argument(
        "--pg-url",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server, without a database name",
    )
    parser.add_argument("--db-name", default="preflab_bench_demo", help="scratch database")
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database")
    parser.add_argument("--prefer", choices=["longer", "newer"], default="longer")
    parser.add_argument("--policy", choices=["majority", "every_vote"], default="majority")
    return parser.parse_args(argv)


def cpu_seconds() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import psycopg

    admin_url = f"{args.pg_url}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}"')
        conn.execute(f'CREATE DATABASE "{args.db_name}"')
    work = Path(tempfile.mkdtemp(prefix="preflab-demo-run-"))
    os.environ.update(
        DATABASE_URL=f"{args.pg_url}/{args.db_name}",
        PREFLAB_VAR_DIR=str(work / "var"),
        ARTIFACT_ROOT=str(work / "var" / "artifacts"),
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_FOLDER=str(work / "broker"),
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()
    try:
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}"')


def run(args: argparse.Namespace) -> int:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from labeling.management.commands.seed_demo import DEMO_PROJECT
    from labeling.models import Project
    from labeling.services import VoteInput, cast_vote, lease_next_comparison
    from labeling.snapshots import build_snapshot, request_snapshot
    from training.engine.metrics import read_metrics
    from training.models import TrainingRun
    from training.services import execute_run, run_out_dir

    setup_test_environment()  # the test client records the rendered form
    call_command("migrate", verbosity=0)
    call_command("seed_demo", base_model=str(Path(args.base_model).resolve()), verbosity=0)
    project = Project.objects.get(name=DEMO_PROJECT)
    users = get_user_model().objects
    votes = 0
    for name in ("alice", "bob"):
        annotator = users.get(username=name)
        while (comparison := lease_next_comparison(annotator, project)) is not None:
            a, b = comparison.completion_a, comparison.completion_b
            if args.prefer == "longer":
                rank_a, rank_b = len(a.text), len(b.text)
            else:
                rank_a, rank_b = MODEL_RANK.get(a.model_name, 0), MODEL_RANK.get(b.model_name, 0)
            choice = "A" if rank_a > rank_b else "B" if rank_b > rank_a else "tie"
            strength = "" if choice == "tie" else "clear"
            cast_vote(annotator, project, comparison.id, VoteInput(choice, strength))
            votes += 1
    snapshot = build_snapshot(request_snapshot(project, args.policy).id)
    assert snapshot is not None
    client = Client()
    client.force_login(users.get(username="admin"))
    url = reverse("training:run_create", args=[project.id])
    page = client.get(url)
    form = page.context["form"]
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False or value == "":
            continue
        data[name] = "on" if value is True else value
    response = client.post(url, data)
    if response.status_code != 303:
        print(f"the run form refused its own defaults ({response.status_code}):", form.errors)
        return 1
    run = TrainingRun.objects.latest("id")
    print(f"{args.policy} snapshot {snapshot.pk}: {snapshot.row_count} rows from {votes} votes")
    print("run form defaults:", json.dumps(data, default=str))
    print("note:", page.context.get("defaults_note", ""))
    print("load before:", Path("/proc/loadavg").read_text().strip())
    started = time.monotonic()
    own0, child0 = cpu_seconds()
    execute_run(run.pk)
    wall = time.monotonic() - started
    own1, child1 = cpu_seconds()
    print("load after:", Path("/proc/loadavg").read_text().strip())
    run.refresh_from_db()
    print(f"status {run.status} after {wall:.1f} s wall; CPU (user + sys) {child1 - child0:.1f} s "
          f"in the engine, {own1 - own0:.1f} s in this process")  # fmt: skip
    if run.error:
        print("error:", run.error)
    events = read_metrics(run_out_dir(run) / "metrics.jsonl")
    train = [e for e in events if e["event"] == "train"]
    evals = [e for e in events if e["event"] == "eval"]
    if not train:
        print("no training steps recorded")
        return 1
    quarter = max(1, len(train) // 4)

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        values = [row[key] for row in rows if isinstance(row.get(key), int | float)]
        return sum(values) / len(values) if values else float("nan")

    first, last = train[:quarter], train[-quarter:]
    print(
        f"{len(train)} steps; first {quarter} steps: loss {mean(first, 'loss'):.4f}, "
        f"reward accuracy {mean(first, 'reward_accuracy'):.3f}; last {quarter}: loss "
        f"{mean(last, 'loss'):.4f}, reward accuracy {mean(last, 'reward_accuracy'):.3f}"
    )
    for event in evals:
        print(
            f"eval at step {event.get('step')}: loss {event.get('loss')}, "
            f"reward accuracy {event.get('reward_accuracy')}"
        )
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
