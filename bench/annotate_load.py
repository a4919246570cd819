"""Annotation load benchmark: N simulated annotators over HTTP against gunicorn and PostgreSQL.

What it does, in one run:

1. Recreates a scratch PostgreSQL database (``--db-name``, default ``preflab_bench_annotate``),
   migrates it with ``manage.py migrate`` and fills it through Django in this process: N
   annotator users, one project with ``--overlap`` votes per comparison, ``--pairs`` pairs
   imported with ``labeling.importers.import_file`` (the demo project's 60 pairs cycled, so the
   Markdown and code blocks cost what they cost in use), members added with
   ``labeling.services.add_member``, then ``ANALYZE`` as autovacuum would soon do
   (``--no-analyze`` measures the state straight after a bulk import instead).
2. Starts gunicorn (``config.wsgi``) on a free loopback port with ``DEBUG=false``, persistent
   database connections (``DB_CONN_MAX_AGE``) and, by default, the worker settings of
   ``platform/entrypoint.sh`` (gthread, 2 workers x 4 threads); logs every annotator in through
   ``/accounts/login/`` with CSRF, each with its own session and keep-alive connection.
3. After an unrecorded warm-up, runs two phases of ``--duration`` seconds with the same N
   clients and the same client code:

   - baseline: ``GET /healthz``, a trivial view behind the same middleware;
   - annotate: ``GET /projects/<id>/annotate/`` (get-next, htmx) then ``POST
     /projects/<id>/vote/`` (submit, htmx, ``X-CSRFToken``), over and over, until the time is
     up or nothing is left for that annotator.

   By default each client loops with no think time (closed loop). ``--rate`` paces the fleet
   instead: it offers that many votes/s in all (and the baseline as many requests/s), and
   latency counts from when a request was due, so queueing behind a slow server shows.
   An htmx submit answers with the *next* comparison, already leased to the annotator, so the
   get-next that follows takes the "lease already held" path, as a page reload would.
   ``--submit-only`` drops it and votes on what the submit answered with, as the htmx page
   does: one request per vote.
4. Prints p50/p99 latency, votes/s, the same figures for the baseline and the ratios; where the
   CPU went (load generator, gunicorn, this database's PostgreSQL backends, anything else) and
   the CPU per vote, which other load on the machine skews far less than latency; then checks
   the database (no comparison over-voted, vote_count equal to the votes stored, no annotator
   twice on a comparison, every vote a client saw saved is stored), stops gunicorn and drops
   the scratch database unless ``--keep-db``. Exits 1 on an HTTP error or a failed check.

The load generator is one asyncio loop speaking minimal HTTP/1.1 over raw streams: on a 2-core
machine it shares the CPUs with gunicorn and PostgreSQL, so it has to be cheap (see its share in
the CPU line). Other work on the machine skews every figure: the script waits up to
``--wait-quiet`` seconds for the CPUs to be idle and warns when other processes took more than
10% of them during a phase.

In the closed loop Little's law holds: mean latency = N / (requests/s). With N=50 and two
requests per vote, 200 votes/s means a *mean* latency of 125 ms, so "p99 under 100 ms at 200
votes/s" needs ``--rate`` (an open, paced load), or a server fast enough to go well past it.

Usage::

    .venv/bin/python bench/annotate_load.py                  # 50 annotators, 20 s per phase
    .venv/bin/python bench/annotate_load.py --rate 40        # p50/p99 at 40 votes/s offered
    .venv/bin/python bench/annotate_load.py --workers 3 --threads 1 --keep-db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from _http import TRANSPORT_ERRORS, Client, HttpError
from _support import (
    CpuSample,
    cpu_sample,
    free_port,
    percentile,
    recreate_database,
    stop_process,
    wait_for_quiet,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO_PAIRS = ROOT / "labeling" / "demo" / "pairs.jsonl"
PROJECT_NAME = "bench: annotate load"
PASSWORD = "bench-annotator-password-" + secrets.token_hex(8)
CHOICES = ("A", "B", "tie", "both_bad")
IMPORT_CHUNK = 10_000  # pairs per import file

COMPARISON_RE = re.compile(rb'name="comparison" value="(\d+)"')
NOTICE_RE = re.compile(rb'<span class="notice" role="status">([^<]*)</span>')
CSRF_FIELD_RE = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
NOTHING_LEFT = b'data-testid="nothing-left"'
VOTE_SAVED = "Vote saved."


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class Recorder:
    get_next: list[float] = field(default_factory=list)
    submit: list[float] = field(default_factory=list)
    healthz: list[float] = field(default_factory=list)
    votes_saved: int = 0
    votes_rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    http_errors: dict[str, int] = field(default_factory=dict)
    annotators_done: int = 0
    submits_unanswered: int = 0

    def error(self, what: str) -> None:
        self.http_errors[what] = self.http_errors.get(what, 0) + 1


@dataclass
class Phase:
    wall: float  # seconds the phase took
    rec: Recorder
    before: CpuSample
    after: CpuSample


# --------------------------------------------------------------------------------------------
# Client behaviour
# --------------------------------------------------------------------------------------------

HTMX = {"HX-Request": "true"}


async def log_in(client: Client, username: str) -> None:
    page = await client.request("GET", "/accounts/login/")
    match = CSRF_FIELD_RE.search(page.body)
    if page.status != 200 or match is None:
        raise HttpError(f"login page answered {page.status} without a CSRF field")
    answer = await client.request(
        "POST",
        "/accounts/login/",
        form={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": match.group(1).decode(),
        },
    )
    if answer.status != 302 or "sessionid" not in client.cookies:
        raise HttpError(f"logging in {username} answered {answer.status}")


class Pacer:
    """When each of one client's iterations starts.

    interval 0: closed loop, the next iteration starts as soon as the last one ended.
    Otherwise iterations are due every interval seconds (from a random phase, so clients do
    not march in step), and latency counts from when an iteration was due, not from when a
    late client got round to it, so a slow server cannot hide its queueing delay.
    """

    def __init__(self, interval: float, start: float, rng: random.Random) -> None:
        self.interval = interval
        self.due = start + rng.uniform(0.0, interval)

    async def next(self, stop_at: float) -> float | None:
        """Wait for the next iteration; return when it was due, or None when time is up."""
        now = time.perf_counter()
        if self.interval <= 0:
            return now if now < stop_at else None
        due = self.due
        if due >= stop_at:
            return None
        self.due += self.interval
        if due > now:
            await asyncio.sleep(due - now)
        return due


async def healthz_loop(client: Client, pacer: Pacer, stop_at: float, rec: Recorder) -> None:
    while (due := await pacer.next(stop_at)) is not None:
        try:
            response = await client.request("GET", "/healthz", headers=HTMX)
        except TRANSPORT_ERRORS as exc:
            rec.error(f"healthz {type(exc).__name__}")
            continue
        rec.healthz.append(time.perf_counter() - due)
        if response.status != 200:
            rec.error(f"healthz {response.status}")


async def annotate_loop(
    client: Client,
    project_id: int,
    pacer: Pacer,
    stop_at: float,
    rec: Recorder,
    rng: random.Random,
    submit_only: bool,
) -> None:
    """Get-next then submit, over and over.

    submit_only: vote on the comparison the previous submit answered with, as the htmx page
    does, and get-next only when there is none (the first time, or after an error).
    """
    annotate_path = f"/projects/{project_id}/annotate/"
    vote_path = f"/projects/{project_id}/vote/"
    shown: bytes | None = None  # the page the annotator is looking at
    while (due := await pacer.next(stop_at)) is not None:
        submit_due: float | None = due
        if shown is None:
            try:
                page = await client.request("GET", annotate_path, headers=HTMX)
            except TRANSPORT_ERRORS as exc:
                rec.error(f"get-next {type(exc).__name__}")
                continue
            rec.get_next.append(time.perf_counter() - due)
            if page.status != 200:
                rec.error(f"get-next {page.status}")
                continue
            shown, submit_due = page.body, None
        match = COMPARISON_RE.search(shown)
        if match is None:
            if NOTHING_LEFT in shown:
                rec.annotators_done += 1
                return
            rec.error("page without a comparison")
            shown = None
            continue
        form = {
            "comparison": match.group(1).decode(),
            "choice": rng.choice(CHOICES),
            "strength": "clear",
            "rationale": "",
        }
        headers = {**HTMX, "X-CSRFToken": client.cookies.get("csrftoken", "")}
        started = submit_due if submit_due is not None else time.perf_counter()
        shown = None
        try:
            answer = await client.request("POST", vote_path, form=form, headers=headers)
        except TRANSPORT_ERRORS as exc:
            # The vote may or may not have been stored; the database check allows for it.
            rec.error(f"submit {type(exc).__name__}")
            rec.submits_unanswered += 1
            continue
        rec.submit.append(time.perf_counter() - started)
        if answer.status != 200:
            rec.error(f"submit {answer.status}")
            continue
        notice = NOTICE_RE.search(answer.body)
        text = notice.group(1).decode() if notice else "(no notice)"
        if text == VOTE_SAVED:
            rec.votes_saved += 1
        else:
            rec.votes_rejected += 1
            rec.rejections[text] = rec.rejections.get(text, 0) + 1
        if submit_only:
            shown = answer.body


Body = Callable[[int, Client, Pacer, float], Awaitable[None]]


async def run_phase(
    clients: list[Client], duration: float, interval: float, seed: int, body: Body
) -> float:
    """Run body on every client until duration is up; return the wall time taken.

    interval is the seconds between one client's iterations (0: closed loop).
    """
    started = time.perf_counter()
    stop_at = started + duration
    await asyncio.gather(
        *(
            body(i, client, Pacer(interval, started, random.Random(seed + i)), stop_at)
            for i, client in enumerate(clients)
        )
    )
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Set-up: scratch database, data, server
# --------------------------------------------------------------------------------------------


def server_env(args: argparse.Namespace, database_url: str, var_dir: Path) -> dict[str, str]:
    settings = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "DB_CONN_MAX_AGE": "600",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback: no HTTPS redirect, no Secure-only cookies, no HSTS.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "PREFLAB_VAR_DIR": str(var_dir),
        "LOG_LEVEL": args.log_level,
    }
    # config.env reads NAME_FILE before NAME; a caller's SECRET_KEY_FILE must not win.
    inherited = {
        k: v for k, v in os.environ.items() if not (k.endswith("_FILE") and k[:-5] in settings)
    }
    return {**inherited, **settings}


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def pairs_jsonl(first: int, stop: int) -> bytes:
    """Pairs first..stop-1 as JSONL: the demo pairs cycled, each prompt tagged with its index.

    The tag keeps every line distinct: imports refuse exact duplicates."""
    demo = [json.loads(line) for line in DEMO_PAIRS.read_text().splitlines() if line.strip()]
    lines = []
    for index in range(first, stop):
        row = dict(demo[index % len(demo)])
        tag = f"\n\n(bench item {index})"
        if isinstance(row.get("prompt"), str):
            row["prompt"] += tag
        else:  # a chat prompt: tag its last (user) turn, or the cycle repeats it exactly
            messages = [dict(message) for message in row["messages"]]
            messages[-1]["content"] += tag
            row["messages"] = messages
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


def populate(annotators: int, pairs: int, overlap: int, analyze: bool) -> tuple[int, list[str]]:
    """Create users, the project, its pairs and memberships; return (project id, usernames).

    With analyze, refresh the planner's statistics afterwards, as autovacuum would within a
    minute or so of an import: straight after a bulk import PostgreSQL still believes the
    tables are nearly empty and picks nested-loop plans that are many times slower.
    """
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import connection, connections, transaction

    from labeling.importers import ImportKind, import_file
    from labeling.models import Project, Role
    from labeling.services import add_member

    usernames = [f"bench-annotator-{i:03d}" for i in range(annotators)]
    encoded = make_password(PASSWORD)  # hashed once: PBKDF2 is slow on purpose
    with transaction.atomic():
        User.objects.bulk_create([User(username=name, password=encoded) for name in usernames])
        project = Project.objects.create(
            name=PROJECT_NAME, overlap=overlap, guidelines="Pick the better response."
        )
        # Files are capped (PREFLAB_IMPORT_MAX_BYTES), so big sets go in as several rounds.
        for first in range(0, pairs, IMPORT_CHUNK):
            data = pairs_jsonl(first, min(pairs, first + IMPORT_CHUNK))
            import_file(project, data, f"bench-{first}.jsonl", ImportKind.PAIRS)
        for user in User.objects.filter(username__in=usernames):
            add_member(project, user, Role.ANNOTATOR)
    if analyze:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    connections.close_all()
    return project.id, usernames


def worker_class(args: argparse.Namespace) -> str:
    return str(args.worker_class or ("gthread" if args.threads > 1 else "sync"))


def start_server(
    args: argparse.Namespace, env: dict[str, str], port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        args.wsgi_app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        worker_class(args),
        "--threads",
        str(args.threads),
        "--keep-alive",
        "30",
        "--backlog",
        "2048",
        "--worker-tmp-dir",
        "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir(),
    ]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(server: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({server.returncode}):\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


@dataclass
class Integrity:
    over_voted: int
    count_mismatch: int
    duplicate_votes: int
    votes_stored: int
    comparisons_complete: int
    comparisons: int

    def ok(self, votes_seen: int, unanswered: int) -> bool:
        """unanswered: submits whose connection failed, so the client never saw the outcome."""
        return (
            self.over_voted == 0
            and self.count_mismatch == 0
            and self.duplicate_votes == 0
            and votes_seen <= self.votes_stored <= votes_seen + unanswered
        )


def check_database(project_id: int) -> Integrity:
    from django.db import connections
    from django.db.models import Count, F, Q

    from labeling.models import Comparison, Vote

    comparisons = Comparison.objects.filter(project_id=project_id)
    result = Integrity(
        over_voted=comparisons.filter(vote_count__gt=F("votes_target")).count(),
        count_mismatch=comparisons.annotate(n=Count("votes")).exclude(n=F("vote_count")).count(),
        duplicate_votes=Vote.objects.filter(
            comparison__project_id=project_id, annotator__isnull=False
        )
        .values("comparison_id", "annotator_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count(),
        votes_stored=Vote.objects.filter(comparison__project_id=project_id).count(),
        comparisons_complete=comparisons.filter(Q(vote_count__gte=F("votes_target"))).count(),
        comparisons=comparisons.count(),
    )
    connections.close_all()
    return result


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def ratio(ours: float, base: float) -> str:
    if math.isnan(ours) or math.isnan(base) or base == 0:
        return "-"
    return f"{ours / base:.1f}x"


def cpu_used(phase: Phase) -> dict[str, float]:
    """CPU seconds each group of processes used during the phase."""
    return {k: v - phase.before.by_group.get(k, 0.0) for k, v in phase.after.by_group.items()}


def other_share(phase: Phase, cores: int) -> float:
    """Share of the machine's CPU that went to processes outside the benchmark."""
    capacity = (phase.after.wall - phase.before.wall) * cores
    busy = phase.after.busy - phase.before.busy
    return max(0.0, busy - sum(cpu_used(phase).values())) / capacity if capacity > 0 else 0.0


def cpu_table(phase: Phase, cores: int) -> str:
    capacity = (phase.after.wall - phase.before.wall) * cores
    if capacity <= 0:
        return "-"
    busy = phase.after.busy - phase.before.busy
    parts = [f"{name} {100 * used / capacity:.0f}%" for name, used in cpu_used(phase).items()]
    parts.append(f"other processes {100 * other_share(phase, cores):.0f}%")
    parts.append(f"idle {100 * max(capacity - busy, 0.0) / capacity:.0f}%")
    return ", ".join(parts)


def print_report(
    args: argparse.Namespace,
    baseline: Phase,
    annotating: Phase,
    warm: Recorder,
    integrity: Integrity,
    server_desc: str,
) -> bool:
    """Print the summary; return whether the run was clean (no errors, database consistent)."""
    cores = os.cpu_count() or 1
    base, ann = baseline.rec, annotating.rec
    base_rps = len(base.healthz) / baseline.wall
    ann_rps = (len(ann.get_next) + len(ann.submit)) / annotating.wall
    votes_per_s = ann.votes_saved / annotating.wall
    mode = f"paced, {args.rate:g} votes/s offered" if args.rate > 0 else "closed loop, no think"
    if args.submit_only:
        mode += ", submit only"

    print()
    print(
        f"PrefLab annotate load: {args.annotators} annotators ({mode}), {args.duration:g} s per"
        f" phase, {args.pairs} pairs x overlap {args.overlap}, {cores} CPUs, {server_desc}"
    )
    header = f"{'':<20}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    for name, values, wall in (
        ("healthz (baseline)", base.healthz, baseline.wall),
        ("get-next", ann.get_next, annotating.wall),
        ("submit", ann.submit, annotating.wall),
    ):
        print(
            f"{name:<20}{len(values):>10}{len(values) / wall:>9.1f}"
            f"{ms(percentile(values, 0.5)):>9}{ms(percentile(values, 0.99)):>9}"
            f"{ms(max(values, default=math.nan)):>9}"
        )
    print("-" * len(header))
    print(
        f"votes/s {votes_per_s:.1f} ({ann.votes_saved} saved, {ann.votes_rejected} rejected"
        f" in {annotating.wall:.1f} s)"
    )
    if args.rate <= 0 and ann_rps > 0:
        # Little's law for a closed loop: requests in flight = throughput x mean latency.
        print(
            f"  closed loop: {args.annotators} requests in flight / {ann_rps:.0f} req/s ="
            f" {1000 * args.annotators / ann_rps:.0f} ms mean latency (Little's law)"
        )
    if ann.rejections:
        print("  rejected: " + ", ".join(f"{k!r} x{v}" for k, v in ann.rejections.items()))
    if ann.annotators_done:
        print(f"  {ann.annotators_done} annotators ran out of work before the time was up")
    base_p50, base_p99 = percentile(base.healthz, 0.5), percentile(base.healthz, 0.99)
    print(
        "ours / healthz:"
        f" get-next p50 {ratio(percentile(ann.get_next, 0.5), base_p50)},"
        f" p99 {ratio(percentile(ann.get_next, 0.99), base_p99)};"
        f" submit p50 {ratio(percentile(ann.submit, 0.5), base_p50)},"
        f" p99 {ratio(percentile(ann.submit, 0.99), base_p99)};"
        f" requests/s {ann_rps / base_rps:.3f}x ({ann_rps:.0f} vs {base_rps:.0f})"
    )

    for name, phase in (("baseline", baseline), ("annotate", annotating)):
        print(f"CPU during {name} (share of {cores} CPUs): " + cpu_table(phase, cores))
        other = other_share(phase, cores)
        if other > 0.10:
            print(
                f"  warning: {100 * other:.0f}% of the CPUs went to processes outside this"
                " benchmark during this phase; its figures are skewed"
            )
    # CPU per unit of work is much less sensitive to other load than latency is.
    base_cpu, ann_cpu = cpu_used(baseline), cpu_used(annotating)
    if base.healthz and ann.votes_saved:
        per_vote = {k: 1000 * v / ann.votes_saved for k, v in ann_cpu.items()}
        server = per_vote["gunicorn"] + per_vote["postgres"]
        print(
            f"CPU per healthz request: gunicorn"
            f" {1000 * base_cpu['gunicorn'] / len(base.healthz):.2f} ms."
            f" CPU per vote: gunicorn {per_vote['gunicorn']:.1f} ms +"
            f" postgres {per_vote['postgres']:.1f} ms = {server:.1f} ms"
            f" (load generator {per_vote['load generator']:.1f} ms):"
            f" {cores} idle CPUs cap this at ~{1000 * cores / max(server, 1e-9):.0f} votes/s"
        )

    errors = Counter(base.http_errors) + Counter(ann.http_errors) + Counter(warm.http_errors)
    print("HTTP errors: " + (", ".join(f"{k} x{v}" for k, v in errors.items()) or "none"))
    seen = warm.votes_saved + ann.votes_saved
    unanswered = warm.submits_unanswered + ann.submits_unanswered
    print(
        f"database: {integrity.over_voted} over-voted comparisons,"
        f" {integrity.count_mismatch} with vote_count != votes stored,"
        f" {integrity.duplicate_votes} duplicated (comparison, annotator);"
        f" {integrity.votes_stored} votes stored, {seen} seen saved by the clients;"
        f" {integrity.comparisons_complete}/{integrity.comparisons} comparisons complete"
    )
    consistent = integrity.ok(seen, unanswered)
    print("integrity: " + ("OK" if consistent else "FAILED"))
    goals = [
        ("p99 get-next < 100 ms", percentile(ann.get_next, 0.99) < 0.1),
        ("p99 submit < 100 ms", percentile(ann.submit, 0.99) < 0.1),
        ("votes/s >= 200", votes_per_s >= 200),
        ("zero over-voted", integrity.over_voted == 0),
    ]
    print("goals: " + ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in goals))
    return consistent and not errors


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


async def drive(
    args: argparse.Namespace, port: int, project_id: int, usernames: list[str], server_pid: int
) -> tuple[Phase, Phase, Recorder]:
    """Log everyone in, warm up, run the baseline and the annotate phase."""
    clients = [Client("127.0.0.1", port) for _ in usernames]
    login_slots = asyncio.Semaphore(max(2, args.workers * args.threads))

    async def login(client: Client, name: str) -> None:
        async with login_slots:
            await log_in(client, name)

    started = time.perf_counter()
    await asyncio.gather(*(login(c, n) for c, n in zip(clients, usernames, strict=True)))
    print(f"logged in {len(clients)} annotators in {time.perf_counter() - started:.1f} s")

    choosers = [random.Random(args.seed + i) for i in range(len(clients))]
    # --rate paces the fleet: one vote (two requests, or one with --submit-only) per client
    # every n/rate seconds, and the baseline offers the same number of requests per second.
    vote_interval = len(clients) / args.rate if args.rate > 0 else 0.0
    request_interval = vote_interval if args.submit_only else vote_interval / 2

    def annotate(rec: Recorder) -> Body:
        def body(i: int, client: Client, pacer: Pacer, stop_at: float) -> Awaitable[None]:
            return annotate_loop(
                client, project_id, pacer, stop_at, rec, choosers[i], args.submit_only
            )

        return body

    def healthz(rec: Recorder) -> Body:
        def body(i: int, client: Client, pacer: Pacer, stop_at: float) -> Awaitable[None]:
            return healthz_loop(client, pacer, stop_at, rec)

        return body

    warm = Recorder()
    if args.warmup > 0:
        await run_phase(clients, args.warmup, 0.0, args.seed, annotate(warm))
        await run_phase(clients, min(args.warmup, 1.0), 0.0, args.seed, healthz(warm))
        print(f"warm-up: {warm.votes_saved} votes, {len(warm.healthz)} healthz requests")

    base = Recorder()
    before = cpu_sample(server_pid, args.db_name)
    wall = await run_phase(clients, args.duration, request_interval, args.seed, healthz(base))
    baseline = Phase(wall, base, before, cpu_sample(server_pid, args.db_name))
    print(f"baseline: {len(base.healthz)} requests in {wall:.1f} s")

    ann = Recorder()
    before = cpu_sample(server_pid, args.db_name)
    wall = await run_phase(clients, args.duration, vote_interval, args.seed, annotate(ann))
    annotating = Phase(wall, ann, before, cpu_sample(server_pid, args.db_name))
    print(f"annotate: {ann.votes_saved} votes in {wall:.1f} s")

    for client in clients:
        await client.close()
    return baseline, annotating, warm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--annotators", type=int, default=50, help="simulated annotators (50)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded warm-up s (3)")
    parser.add_argument("--pairs", type=int, default=5000, help="pairs to import (5000)")
    parser.add_argument("--overlap", type=int, default=3, help="votes per comparison (3)")
    parser.add_argument(
        "--submit-only",
        action="store_true",
        help="vote on the comparison each submit answers with, as the htmx page does,"
        " instead of a get-next before every submit",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offer this many votes/s in all, paced, instead of a closed loop (0: closed loop)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument(
        "--worker-class", default="", help="gunicorn worker class (gthread if threads > 1)"
    )
    parser.add_argument(
        "--wsgi-app",
        default="config.wsgi:application",
        help="the WSGI application gunicorn serves (config.wsgi:application)",
    )
    parser.add_argument(
        "--pg-url",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server, without a database name",
    )
    parser.add_argument("--db-name", default="preflab_bench_annotate", help="scratch database")
    parser.add_argument(
        "--db-options",
        default="",
        help="query string added to DATABASE_URL, e.g. server_side_binding=true",
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip ANALYZE after the import (measures the state right after a bulk import)",
    )
    parser.add_argument("--log-level", default="INFO", help="the app's LOG_LEVEL (INFO)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        help="wait up to this many seconds for other load on the machine to stop (30)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.annotators < 1 or args.pairs < 1 or args.overlap < 1 or args.duration <= 0:
        parser.error("--annotators, --pairs, --overlap and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    pg_url = args.pg_url.rstrip("/")
    database_url = f"{pg_url}/{args.db_name}"
    if args.db_options:
        database_url += "?" + args.db_options.lstrip("?")
    with tempfile.TemporaryDirectory(prefix="preflab-bench-") as tmp:
        var_dir = Path(tmp)
        env = server_env(args, database_url, var_dir)
        # This process sets up data and checks it through Django against the scratch database.
        os.environ.update(env)
        server: subprocess.Popen[bytes] | None = None
        log_path = var_dir / "gunicorn.log"
        try:
            wait_for_quiet(args.wait_quiet)
            started = time.perf_counter()
            recreate_database(pg_url, args.db_name)
            migrate(env)
            project_id, usernames = populate(
                args.annotators, args.pairs, args.overlap, analyze=not args.no_analyze
            )
            print(
                f"scratch database {args.db_name}: {args.pairs} pairs x overlap {args.overlap},"
                f" {args.annotators} annotators, ready in {time.perf_counter() - started:.1f} s"
            )
            port = free_port()
            server = start_server(args, env, port, log_path)
            wait_until_up(server, port, log_path)
            server_desc = (
                f"gunicorn {worker_class(args)} --workers {args.workers} --threads {args.threads}"
            )
            print(f"{server_desc} on 127.0.0.1:{port}")
            baseline, annotating, warm = asyncio.run(
                drive(args, port, project_id, usernames, server.pid)
            )
            stop_process(server)
            integrity = check_database(project_id)
            ok = print_report(args, baseline, annotating, warm, integrity, server_desc)
            if not ok:
                tail = log_path.read_text(errors="replace").splitlines()[-30:]
                print("gunicorn log (last 30 lines):\n" + "\n".join(tail))
            return 0 if ok else 1
        finally:
            if server is not None:
                stop_process(server)
            if args.keep_db:
                print(f"kept database {database_url}")
            else:
                from django.db import connections

                connections.close_all()
                recreate_database(pg_url, args.db_name, drop_only=True)
                print(f"dropped database {args.db_name}")


if __name__ == "__main__":
    sys.exit(main())
