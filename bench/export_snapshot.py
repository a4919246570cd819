"""Snapshot export benchmark: N decisive votes in PostgreSQL, exported to JSONL, against COPY.

What it does, in one run:

1. Recreates a scratch PostgreSQL database (``preflab_bench_export`` unless ``--db-name``),
   migrates it and loads one project: ``--annotators`` users, ``--prompts`` prompts of about
   200 bytes with ``--completions`` responses each (500-1000 bytes of Markdown-ish text with
   quotes, newlines, a code block and some non-ASCII), then ``ceil(votes / overlap)``
   comparisons and ``--votes`` decisive votes (A or B, ``--overlap`` distinct annotators per
   comparison) generated inside PostgreSQL with ``INSERT ... SELECT ... generate_series``,
   followed by ``VACUUM ANALYZE``, as autovacuum would leave the tables.
2. Runs each measured phase in a fresh subprocess (Django set up, caches empty), so its peak
   RSS is its own and not the loader's; peak RSS is read from ``VmHWM`` after resetting it
   (``/proc/self/clear_refs``) right before the phase starts:

   - ``copy``:  ``COPY (<the SQL of the queryset labeling.snapshots streams>) TO STDOUT``
     through psycopg, written to a file and fsynced: the same columns, joins, filter and order,
     with the query text taken from Django itself. Run before and after ``jsonl`` (the first
     also warms the caches); the faster of the two is the baseline.
   - ``jsonl``: ``labeling.snapshots.iter_snapshot_rows`` + ``_canonical_line`` (or
     ``iter_snapshot_lines`` in a transaction, where the module has it) + incremental SHA-256 +
     write + fsync: the JSONL half of ``build_snapshot``.
   - ``build``: ``labeling.snapshots.build_snapshot`` on a queued every-vote snapshot, with
     ``_write_parquet`` wrapped in a timer so the Parquet half is reported separately. Its
     data.jsonl must hash the same as the ``jsonl`` phase's file.

3. Prints rows, rows/s, seconds, peak RSS and the ratio to COPY for each, checks the goals of
   issue 4 (JSONL export at most 3x the time of COPY, peak RSS under 300 MB) and drops the
   scratch database unless ``--keep-db``.

``--profile`` adds a cProfile run of the ``jsonl`` phase (not used for the table) and prints the
top functions by own time; cProfile's overhead inflates cheap, frequent calls.

Usage::

    .venv/bin/python bench/export_snapshot.py                   # 1,000,000 votes
    .venv/bin/python bench/export_snapshot.py --votes 100000 --profile --keep-db
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _support import recreate_database

ROOT = Path(__file__).resolve().parent.parent
PROJECT_NAME = "bench: snapshot export"
GOAL_RATIO = 3.0
GOAL_PEAK_MB = 300.0
MODELS = ("llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "mistral-7b-v0.3", "sft-round-2")
WORDS = (  # noqa: SIM905 (a list of 47 one-word strings reads worse)
    "the model should answer with a short clear explanation of how data flows through "
    "preference pairs training loss gradient batch token context window example because "
    "however therefore which returns value function parameter résumé naïve café — “quoted” "
    "'single' tab\tseparated back\\slash 100% {json: true} <html> & ünïcödé 日本語"
).split(" ")


# --------------------------------------------------------------------------------------------
# Measuring a phase in this process (the subprocess side)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds of a PostgreSQL backend on this machine (not its parallel workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fsync_close(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def phase_copy(project_id: int, out_dir: Path) -> dict[str, Any]:
    from django.db import connection

    from labeling.models import Vote
    from labeling.snapshots import _VOTE_FIELDS

    # The queryset labeling.snapshots._votes iterates, minus the .iterator() call.
    queryset = (
        Vote.objects.filter(comparison__project_id=project_id, comparison__is_gold=False)
        .order_by("comparison_id", "id")
        .values(*_VOTE_FIELDS)
    )
    sql, params = queryset.query.sql_with_params()
    connection.ensure_connection()
    raw = connection.connection
    rows = 0
    size = 0
    path = out_dir / "copy.tsv"
    started = time.perf_counter()
    out = path.open("wb")
    with raw.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
        for block in copy:
            data = bytes(block)
            rows += data.count(b"\n")
            size += len(data)
            out.write(data)
    _fsync_close(out)
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": size}


def _jsonl_lines(snapshot: Any) -> Iterator[bytes]:
    """The lines build_snapshot writes, produced the way it produces them.

    Uses ``iter_snapshot_lines(snapshot, chat)`` where labeling.snapshots has it (the faster
    path proposed in the issue-4 report, run in a transaction as build_snapshot would), else
    ``_canonical_line`` of each ``iter_snapshot_rows`` row (the original code).
    """
    from django.db import transaction

    from labeling import snapshots

    iter_lines = getattr(snapshots, "iter_snapshot_lines", None)
    if iter_lines is None:
        for row in snapshots.iter_snapshot_rows(snapshot):
            yield snapshots._canonical_line(row)
        return
    with transaction.atomic():
        yield from iter_lines(snapshot, snapshots._project_has_chat(snapshot.project_id))


def phase_jsonl(snapshot_id: int, out_dir: Path) -> dict[str, Any]:
    from labeling.models import Snapshot

    snapshot = Snapshot.objects.get(id=snapshot_id)
    digest = hashlib.sha256()
    rows = 0
    size = 0
    path = out_dir / "jsonl-only.jsonl"
    started = time.perf_counter()
    out = path.open("wb")
    # The JSONL half of build_snapshot: stream, hash, write, fsync.
    for line in _jsonl_lines(snapshot):
        digest.update(line)
        out.write(line)
        rows += 1
        size += len(line)
    _fsync_close(out)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "bytes": size, "sha256": digest.hexdigest()}


def phase_build(snapshot_id: int, out_dir: Path) -> dict[str, Any]:
    from labeling import snapshots

    parquet_seconds = 0.0
    original: Callable[..., str] = snapshots._write_parquet

    def timed_write_parquet(*args: Any, **kwargs: Any) -> str:
        nonlocal parquet_seconds
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            parquet_seconds = time.perf_counter() - started

    snapshots._write_parquet = timed_write_parquet  # type: ignore[assignment]
    started = time.perf_counter()
    snapshot = snapshots.build_snapshot(snapshot_id)
    seconds = time.perf_counter() - started
    snapshots._write_parquet = original  # type: ignore[assignment]
    if snapshot is None or snapshot.row_count is None:
        raise RuntimeError(f"snapshot {snapshot_id} was not built")
    files = snapshots.snapshot_dir(snapshot)
    return {
        "seconds": seconds,
        "parquet_seconds": parquet_seconds,
        "rows": snapshot.row_count,
        "bytes": (files / "data.jsonl").stat().st_size,
        "parquet_bytes": (files / "data.parquet").stat().st_size,
        "sha256": snapshot.sha256,
    }


def run_phase(args: argparse.Namespace) -> int:
    """Subprocess entry: set up Django, reset the peak, run one phase, print JSON on stdout."""
    import django

    django.setup()
    from django.db import connection, connections

    out_dir = Path(args.out_dir)
    # Import everything a phase needs before the peak is reset: module code is not the
    # export's memory. pyarrow is imported lazily by build_snapshot, so it counts there, as
    # it would in a worker that had never built a snapshot before.
    import labeling.snapshots  # noqa: F401

    connection.ensure_connection()
    backend_pid = connection.connection.info.backend_pid
    backend_before = _backend_cpu(backend_pid)
    own_before = os.times()
    rss_before = _status_kb("VmRSS")
    reset = _reset_peak()
    phases: dict[str, Callable[[], dict[str, Any]]] = {
        "copy": lambda: phase_copy(args.project_id, out_dir),
        "jsonl": lambda: phase_jsonl(args.snapshot_id, out_dir),
        "build": lambda: phase_build(args.snapshot_id, out_dir),
    }
    if args.profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(phases[args.phase])
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(args.profile_top)
        result["profile"] = text.getvalue()
    else:
        result = phases[args.phase]()
    own_after = os.times()
    backend_after = _backend_cpu(backend_pid)
    connections.close_all()
    result["client_cpu_s"] = (own_after.user - own_before.user) + (
        own_after.system - own_before.system
    )
    if backend_before is not None and backend_after is not None:
        result["backend_cpu_s"] = backend_after - backend_before
    result["rss_before_kb"] = rss_before
    result["peak_kb"] = _status_kb("VmHWM")
    result["peak_reset"] = reset
    print(json.dumps(result))
    return 0


def spawn(
    phase: str,
    env: dict[str, str],
    out_dir: Path,
    *,
    project_id: int = 0,
    snapshot_id: int = 0,
    profile: bool = False,
    profile_top: int = 30,
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--out-dir",
        str(out_dir),
        "--project-id",
        str(project_id),
        "--snapshot-id",
        str(snapshot_id),
        "--profile-top",
        str(profile_top),
    ]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise RuntimeError(f"phase {phase} exited with {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------
# The scratch database


def _text(rng: random.Random, low: int, high: int, code: bool = False) -> str:
    target = rng.randint(low, high)
    parts: list[str] = []
    size = 0
    while size < target:
        word = rng.choice(WORDS)
        parts.append(word)
        size += len(word.encode()) + 1
        if rng.random() < 0.03:
            parts.append("\n\n")
    text = " ".join(parts)
    if code:
        text += '\n\n```python\ndef f(x):\n    return {"x": x}\n```\n'
    return text


def populate(args: argparse.Namespace) -> tuple[int, int, int]:
    """Load the project; returns (project id, jsonl snapshot id, build snapshot id)."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from labeling.models import Completion, Membership, Project, Prompt, Role, Round, Snapshot
    from labeling.models import SnapshotPolicy as Policy

    rng = random.Random(args.seed)
    comparisons = math.ceil(args.votes / args.overlap)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=f"bench-export-{i:03d}") for i in range(args.annotators)]
        )
        project = Project.objects.create(name=PROJECT_NAME, overlap=args.overlap)
        Membership.objects.bulk_create(
            [Membership(project=project, user=user, role=Role.ANNOTATOR) for user in users]
        )
        rounds = [Round.objects.create(project=project, number=n) for n in (1, 2)]
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(project=project, text=f"[{i}] " + _text(rng, 150, 250))
                for i in range(args.prompts)
            ],
            batch_size=2000,
        )
        Completion.objects.bulk_create(
            [
                Completion(
                    prompt=prompt,
                    text=_text(rng, 450, 950, code=rng.random() < 0.3),
                    model_name=MODELS[k % len(MODELS)],
                )
                for prompt in prompts
                for k in range(args.completions)
            ],
            batch_size=2000,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                """
                CREATE TEMP TABLE bench_prompt ON COMMIT DROP AS
                SELECT id AS prompt_id, (row_number() OVER (ORDER BY id)) - 1 AS idx
                FROM labeling_prompt WHERE project_id = %(project)s;
                CREATE TEMP TABLE bench_completion ON COMMIT DROP AS
                SELECT id, prompt_id,
                       (row_number() OVER (PARTITION BY prompt_id ORDER BY id)) - 1 AS k
                FROM labeling_completion WHERE prompt_id IN (SELECT prompt_id FROM bench_prompt);
                CREATE TEMP TABLE bench_user ON COMMIT DROP AS
                SELECT user_id, (row_number() OVER (ORDER BY user_id)) - 1 AS idx
                FROM labeling_membership WHERE project_id = %(project)s;
                CREATE INDEX ON bench_completion (prompt_id, k);
                ANALYZE bench_prompt; ANALYZE bench_completion; ANALYZE bench_user;
                """,
                {"project": project.id},
            )
            # Comparison g: prompt g mod P, completions a and b two distinct responses of it.
            cursor.execute(
                """
                INSERT INTO labeling_comparison
                    (project_id, round_id, prompt_id, completion_a_id, completion_b_id,
                     votes_target, vote_count, is_gold, gold_choice, judge_priority,
                     judge_decided, created_at)
                SELECT %(project)s,
                       CASE WHEN g < %(n)s / 2 THEN %(r1)s ELSE %(r2)s END,
                       p.prompt_id, a.id, b.id, %(overlap)s,
                       LEAST(%(overlap)s, %(votes)s - g * %(overlap)s), false, '', 0, false,
                       now()
                FROM generate_series(0, %(n)s - 1) AS g
                JOIN bench_prompt p ON p.idx = g %% %(prompts)s
                JOIN bench_completion a
                  ON a.prompt_id = p.prompt_id AND a.k = (g / %(prompts)s) %% %(completions)s
                JOIN bench_completion b
                  ON b.prompt_id = p.prompt_id
                 AND b.k = ((g / %(prompts)s) %% %(completions)s + 1
                            + (g / (%(prompts)s * %(completions)s)) %% (%(completions)s - 1))
                           %% %(completions)s
                ORDER BY g
                """,
                {
                    "project": project.id,
                    "r1": rounds[0].id,
                    "r2": rounds[1].id,
                    "n": comparisons,
                    "overlap": args.overlap,
                    "votes": args.votes,
                    "prompts": args.prompts,
                    "completions": args.completions,
                },
            )
            # Vote j of comparison c: annotator (c + 7 j) mod U (distinct for j < overlap as
            # U > 7 (overlap - 1)), A or B about 60/40 so agreement varies, some strengths.
            cursor.execute(
                """
                INSERT INTO labeling_vote
                    (comparison_id, annotator_id, choice, strength, rationale, chosen_id,
                     rejected_id, left_side, time_taken_ms, imported_from, source,
                     judge_output, client_key, created_at)
                SELECT c.id, u.user_id, d.choice,
                       (ARRAY['slight', 'clear', 'strong', ''])[1 + (c.id + j) %% 4], '',
                       CASE d.choice WHEN 'A' THEN c.completion_a_id ELSE c.completion_b_id END,
                       CASE d.choice WHEN 'A' THEN c.completion_b_id ELSE c.completion_a_id END,
                       CASE WHEN (c.id + j) %% 2 = 0 THEN 'A' ELSE 'B' END,
                       1000 + (c.id * 37 + j * 101) %% 60000, '', 'human', '{}'::jsonb, '',
                       now()
                FROM labeling_comparison c
                CROSS JOIN generate_series(0, %(overlap)s - 1) AS j
                CROSS JOIN LATERAL (
                    SELECT CASE WHEN (c.id * 31 + j * 17) %% 5 < 3 THEN 'A' ELSE 'B' END
                           AS choice
                ) d
                JOIN bench_user u ON u.idx = (c.id + 7 * j) %% %(users)s
                WHERE c.project_id = %(project)s AND j < c.vote_count
                ORDER BY c.id, j
                """,
                {"project": project.id, "overlap": args.overlap, "users": args.annotators},
            )
        jsonl_snapshot = Snapshot.objects.create(project=project, policy=Policy.EVERY_VOTE)
        build_snapshot = Snapshot.objects.create(project=project, policy=Policy.EVERY_VOTE)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.close()
    return project.id, jsonl_snapshot.id, build_snapshot.id


def table_sizes() -> list[tuple[str, int, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid))
            FROM pg_stat_user_tables
            WHERE relname IN ('labeling_vote', 'labeling_comparison', 'labeling_completion',
                              'labeling_prompt')
            ORDER BY relname
            """
        )
        return [(str(name), int(live), str(size)) for name, live, size in cursor.fetchall()]


# --------------------------------------------------------------------------------------------
# The report


def mb(kb: int) -> float:
    return kb / 1024


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def print_report(
    votes: int,
    copies: list[dict[str, Any]],
    jsonls: list[dict[str, Any]],
    build: dict[str, Any],
) -> bool:
    copy = _median_run(copies)
    jsonl = _median_run(jsonls)
    base = copy["seconds"]
    build_jsonl_s = build["seconds"] - build["parquet_seconds"]
    rows = [
        ("COPY (SELECT ...) TO STDOUT [baseline]", copy["seconds"], copy["bytes"], copy),
        ("ours: JSONL only (stream+hash+write)", jsonl["seconds"], jsonl["bytes"], jsonl),
        ("ours: build_snapshot, JSONL half", build_jsonl_s, build["bytes"], None),
        ("ours: build_snapshot, Parquet half", build["parquet_seconds"], None, None),
        ("ours: build_snapshot, whole", build["seconds"], build["parquet_bytes"], build),
    ]
    header = f"{'phase':<39} {'rows':>8} {'s':>6} {'rows/s':>7} {'x COPY':>6} {'MB out':>6}"
    header += f" {'peak MB':>7} {'growth':>6} {'cpu py':>6} {'cpu pg':>6}"
    print(header)
    print("-" * len(header))
    for name, seconds, size, proc in rows:
        count = copy["rows"] if proc is copy else jsonl["rows"]
        cells = [
            f"{name:<39} {count:>8} {seconds:6.2f} {count / seconds:7.0f} {seconds / base:5.2f}x",
            f"{size / 1e6:6.0f}" if size is not None else f"{'':>6}",
        ]
        if proc:
            cells += [
                f"{mb(proc['peak_kb']):7.0f}",
                f"{mb(proc['peak_kb'] - proc['rss_before_kb']):6.0f}",
                f"{proc['client_cpu_s']:6.1f}",
                f"{proc['backend_cpu_s']:6.1f}" if "backend_cpu_s" in proc else f"{'?':>6}",
            ]
        print(" ".join(cells).rstrip())
    print(
        "COPY and JSONL-only: the median of "
        + f"{len(copies)} and {len(jsonls)} runs (COPY "
        + ", ".join(f"{r['seconds']:.2f}" for r in copies)
        + " s; JSONL "
        + ", ".join(f"{r['seconds']:.2f}" for r in jsonls)
        + " s).\nMB out: the file written (Parquet for 'whole'). peak MB: VmHWM of the phase's"
        + " own process,\nreset before the phase; growth: peak minus RSS after Django setup."
        + " cpu py / cpu pg:\nCPU seconds of the phase's process and of its PostgreSQL backend"
        + " (parallel workers not counted)."
    )
    same_rows = all(r["rows"] == votes for r in [*copies, *jsonls, build])
    same_hash = all(r["sha256"] == build["sha256"] for r in jsonls)
    ratio = jsonl["seconds"] / base
    peak_mb = mb(max(*(r["peak_kb"] for r in jsonls), build["peak_kb"]))
    checks = [
        (f"rows: every COPY, JSONL and build run has {votes}", same_rows),
        ("JSONL-only files hash the same as build_snapshot's data.jsonl", same_hash),
        (f"goal: JSONL export <= {GOAL_RATIO:g}x COPY time (is {ratio:.2f}x)", ratio <= GOAL_RATIO),
        (
            f"goal: peak RSS < {GOAL_PEAK_MB:g} MB, JSONL and whole build (is {peak_mb:.0f} MB)",
            peak_mb < GOAL_PEAK_MB,
        ),
    ]
    if not all(r["peak_reset"] for r in [*jsonls, build]):
        print("note: /proc/self/clear_refs refused; peaks include Django setup")
    for text, ok in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")
    return all(ok for _, ok in checks)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--votes", type=int, default=1_000_000, help="decisive votes (1000000)")
    parser.add_argument("--overlap", type=int, default=3, help="votes per comparison (3)")
    parser.add_argument("--prompts", type=int, default=5000, help="distinct prompts (5000)")
    parser.add_argument("--completions", type=int, default=4, help="responses a prompt (4)")
    parser.add_argument("--annotators", type=int, default=50, help="annotators (50)")
    parser.add_argument(
        "--pg-url",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server, without a database name",
    )
    parser.add_argument("--db-name", default="preflab_bench_export", help="scratch database")
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse-db", action="store_true", help="skip the load (--keep-db'd db)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="JSONL-only runs, each followed by a COPY run (1)"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the JSONL phase")
    parser.add_argument("--profile-top", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    # Subprocess side.
    parser.add_argument("--phase", choices=("copy", "jsonl", "build"), help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--project-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.votes, args.overlap, args.prompts) < 1 or args.completions < 2:
        parser.error("--votes, --overlap, --prompts must be positive, --completions at least 2")
    if args.annotators <= 7 * (args.overlap - 1):
        parser.error("--annotators must exceed 7 x (overlap - 1) so votes have distinct authors")
    return args


def _existing_ids() -> tuple[int, int, int]:
    """For --reuse-db: the project and two fresh queued every-vote snapshots."""
    import django

    django.setup()
    from labeling.models import Project, Snapshot, SnapshotPolicy

    project = Project.objects.get(name=PROJECT_NAME)
    made = [
        Snapshot.objects.create(project=project, policy=SnapshotPolicy.EVERY_VOTE) for _ in range(2)
    ]
    return project.id, made[0].id, made[1].id


def _steps(
    env: dict[str, str], out_dir: Path, project_id: int, jsonl_id: int, build_id: int, repeat: int
) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    yield "copy", lambda: spawn("copy", env, out_dir, project_id=project_id)
    for _ in range(repeat):
        yield "jsonl", lambda: spawn("jsonl", env, out_dir, snapshot_id=jsonl_id)
        yield "copy", lambda: spawn("copy", env, out_dir, project_id=project_id)
    yield "build", lambda: spawn("build", env, out_dir, snapshot_id=build_id)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.phase:
        return run_phase(args)
    pg_url = args.pg_url.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="preflab-bench-export-") as tmp:
        tmp_dir = Path(tmp)
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_FILE")},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"{pg_url}/{args.db_name}",
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
            "ARTIFACT_ROOT": str(tmp_dir / "artifacts"),
            "PREFLAB_VAR_DIR": str(tmp_dir / "var"),
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update(env)
        try:
            started = time.perf_counter()
            if args.reuse_db:
                project_id, jsonl_id, build_id = _existing_ids()
            else:
                recreate_database(pg_url, args.db_name)
                import django

                django.setup()
                from django.core.management import call_command

                call_command("migrate", verbosity=0, interactive=False)
                migrated = time.perf_counter()
                project_id, jsonl_id, build_id = populate(args)
                print(
                    f"scratch database {args.db_name}: migrated in {migrated - started:.1f} s,"
                    f" loaded in {time.perf_counter() - migrated:.1f} s"
                )
            for name, live, size in table_sizes():
                print(f"  {name:<22} {live:>9} rows {size:>9}")
            from django.db import connections

            connections.close_all()
            results: dict[str, list[dict[str, Any]]] = {}
            for name, step in _steps(env, tmp_dir, project_id, jsonl_id, build_id, args.repeat):
                result = step()
                results.setdefault(name, []).append(result)
                cpu = f"client CPU {result['client_cpu_s']:.1f} s"
                if "backend_cpu_s" in result:
                    cpu += f", backend CPU {result['backend_cpu_s']:.1f} s"
                print(
                    f"  {name}: {result['seconds']:.2f} s, {result['rows']} rows, {cpu}",
                    flush=True,
                )
            print()
            ok = print_report(args.votes, results["copy"], results["jsonl"], results["build"][0])
            if args.profile:
                # The JSONL phase only reads its snapshot row, so the same one serves again.
                profiled = spawn(
                    "jsonl",
                    env,
                    tmp_dir,
                    snapshot_id=jsonl_id,
                    profile=True,
                    profile_top=args.profile_top,
                )
                seconds = profiled["seconds"]
                print(f"\ncProfile of the JSONL phase ({seconds:.2f} s under the profiler)")
                print(profiled["profile"])
            return 0 if ok else 1
        finally:
            from django.db import connections

            connections.close_all()
            if args.keep_db or args.reuse_db:
                print(f"kept database {pg_url}/{args.db_name}")
            else:
                recreate_database(pg_url, args.db_name, drop_only=True)
                print(f"dropped database {args.db_name}")


if __name__ == "__main__":
    sys.exit(main())
