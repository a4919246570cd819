"""Where a vote's CPU goes in the web process: cProfile around N htmx submits.

Builds the same scratch database as annotate_load.py (its populate(): the demo pairs cycled,
ANALYZEd), logs one annotator in with Django's test client and posts N votes the way the
annotate page does (each on the comparison the previous answer showed), under cProfile. Prints
the CPU per submit in this process (time.process_time, with and without the profiler), the
PostgreSQL backend's CPU per submit (from /proc), and the cumulative share of this process's
CPU time that each main part of a submit takes (the profiler's clock is time.process_time, so
waiting for PostgreSQL or for a busy CPU counts for nothing; its own overhead, about 4x, weighs
most on code made of many small calls, such as SQL compilation).

    .venv/bin/python bench/profile_submit.py --submits 200 --db-name <scratch>

Only the web side's Python is profiled; PostgreSQL's own work shows as its backend CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _support import recreate_database  # noqa: E402
from annotate_load import COMPARISON_RE, server_env  # noqa: E402

HTMX = {"HX-Request": "true"}
# (label, module path fragment, function name): cumulative time of each, as a share of the run.
WATCHED = [
    ("the submit view (labeling.views.vote)", "labeling/views.py", "vote"),
    ("  next lease (lease_next_comparison)", "labeling/services.py", "lease_next_comparison"),
    ("  recording the vote (cast_vote)", "labeling/services.py", "cast_vote"),
    ("  progress panel (get_workbench_status)", "labeling/services.py", "get_workbench_status"),
    ("  membership check (membership_or_404)", "labeling/web.py", "membership_or_404"),
    ("  rendering the answer (render_page)", "labeling/web.py", "render_page"),
    ("psycopg: execute (send, wait, read)", "psycopg/cursor.py", "execute"),
    ("ORM: compiling SQL (SQLCompiler.as_sql)", "django/db/models/sql/compiler.py", "as_sql"),
    ("ORM: executing (SQLCompiler.execute_sql)", "django/db/models/sql/compiler.py", "execute_sql"),
    ("templates (Template.render)", "django/template/base.py", "render"),
    ("session load (SessionStore.load)", "django/contrib/sessions/backends", "load"),
    ("user lookup (auth.get_user)", "django/contrib/auth/__init__.py", "get_user"),
]


def backend_cpu(db_name: str) -> float:
    """CPU seconds used so far by PostgreSQL backends connected to db_name."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"postgres: " not in cmdline or f" {db_name} ".encode() not in cmdline:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="preflab_bench_profile", help="scratch database")
    parser.add_argument("--top", type=int, default=25, help="also print the top N functions")
    args = parser.parse_args(argv)
    pg_url = args.pg_url.rstrip("/")
    recreate_database(pg_url, args.db_name)
    var_dir = Path(tempfile.mkdtemp(prefix="preflab-profile-"))
    # The benchmark server's settings (production mode: DEBUG off, persistent connections).
    env = server_env(argparse.Namespace(log_level="WARNING"), f"{pg_url}/{args.db_name}", var_dir)
    os.environ.update(env)
    import django

    django.setup()
    try:
        return profile(args)
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(pg_url, args.db_name, drop_only=True)


def profile(args: argparse.Namespace) -> int:
    from annotate_load import populate
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # lets the test client's "testserver" host in
    call_command("migrate", verbosity=0)
    project_id, usernames = populate(1, args.pairs, 3, analyze=True)
    from django.contrib.auth import get_user_model

    client = Client(enforce_csrf_checks=False)
    client.force_login(get_user_model().objects.get(username=usernames[0]))
    page = client.get(f"/projects/{project_id}/annotate/", headers=HTMX).content

    def submit(body: bytes) -> bytes:
        match = COMPARISON_RE.search(body)
        if match is None:
            raise SystemExit("no comparison on the page: is the pair pool used up?")
        answer = client.post(
            f"/projects/{project_id}/vote/",
            {"comparison": match.group(1).decode(), "choice": "A", "strength": "clear"},
            headers=HTMX,
        )
        if answer.status_code != 200:
            raise SystemExit(f"submit answered {answer.status_code}")
        return answer.content

    for _ in range(10):  # warm caches, connections and the planner
        page = submit(page)
    half = args.submits // 2
    started, pg_before = time.process_time(), backend_cpu(args.db_name)
    for _ in range(half):
        page = submit(page)
    plain = (time.process_time() - started) / half
    pg = (backend_cpu(args.db_name) - pg_before) / half
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting counts for nothing
    started = time.process_time()
    profiler.enable()
    for _ in range(args.submits - half):
        page = submit(page)
    profiler.disable()
    profiled = (time.process_time() - started) / (args.submits - half)
    print(f"load: {Path('/proc/loadavg').read_text().strip()}")
    print(
        f"CPU per submit in the web process: {1000 * plain:.1f} ms without the profiler, "
        f"{1000 * profiled:.1f} ms under it; PostgreSQL backend {1000 * pg:.1f} ms"
    )
    stats = pstats.Stats(profiler)
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in table.values())
    print(f"cumulative share of the profiled submits ({args.submits - half}):")
    for label, where, name in WATCHED:
        cumulative = max(
            (ct for (path, _, func), (_, _, _, ct, _) in table.items()
             if where in path and func == name),
            default=0.0,
        )  # fmt: skip
        print(f"  {100 * cumulative / total:5.1f}%  {label}")
    if args.top:
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
