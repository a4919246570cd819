"""Download benchmark: a large snapshot through the API against the same file from a static server.

What it does, in one run:

1. Makes a scratch directory with its own SQLite database (migrated with ``manage.py
   migrate``) and artifact root, writes a synthetic snapshot JSONL of ``--size-mb`` MiB
   (default 1024: realistic preference triples), registers it as a ready ``Snapshot`` of a
   scratch project and makes an API token for a reviewer of that project with
   ``api.tokens.create_token``.
2. Starts gunicorn (``config.wsgi``) on a free loopback port with ``DEBUG=false`` and the same
   worker settings as production (``--workers 2 --threads 4``, gthread), and the static
   baselines on their own ports: nginx (if installed; ``sendfile on``) and
   ``python -m http.server``, each serving the snapshot's directory. ``--sendfile`` runs the
   API with ``PREFLAB_API_SENDFILE = True`` (gunicorn hands the file to sendfile(2)) instead
   of the default 1 MiB user-space copies.
3. Warms the page cache, then downloads the file ``--repeat`` times from each server in turn
   (interleaved, so drift hits all alike) with the same minimal HTTP/1.1 client (one socket,
   ``recv_into`` a reused buffer, nothing kept). The API download is authenticated with the
   token and served by ``GET /api/v1/snapshots/<id>/files/jsonl``. Once, the API download is
   also hashed and checked against the snapshot's published SHA-256 (not timed).
4. While the API downloads run, samples VmRSS of the gunicorn master and workers every 10 ms
   from ``/proc/<pid>/status`` and reports each process's RSS before and its peak during.
5. Prints the best and median throughput of each server, the API's ratio to each baseline
   (goal: at least 0.8 of the static server), and the RSS table (goal: flat).

Usage::

    .venv/bin/python bench/api_download.py                 # 1 GiB, 3 rounds
    .venv/bin/python bench/api_download.py --size-mb 256 --repeat 5 --keep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _support import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MIB = 1 << 20


# -------------------------------------------------------------------------------------------
# scratch data


def scratch_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PREFLAB_VAR_DIR": str(work / "var"),
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "ARTIFACT_ROOT": str(work / "artifacts"),
            "CELERY_BROKER_FOLDER": str(work / "broker"),
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def write_synthetic_jsonl(path: Path, size_bytes: int) -> tuple[str, int]:
    """Realistic triples (a few hundred bytes to a few KB each) until the file reaches size."""
    digest = hashlib.sha256()
    rows = 0
    written = 0
    words = "the model should explain each step clearly and check the result before answering"
    filler = words.split()
    with path.open("wb") as out:
        buffer: list[bytes] = []
        buffered = 0
        while written + buffered < size_bytes:
            n = rows % 97
            row = {
                "prompt": f"Question {rows}: " + " ".join(filler[(n + i) % 13] for i in range(40)),
                "chosen": " ".join(filler[(n * 3 + i) % 13] for i in range(120 + n * 4)),
                "rejected": " ".join(filler[(n * 7 + i) % 13] for i in range(60 + n * 2)),
                "comparison_id": rows + 1,
                "round": 1 + rows // 100_000,
                "vote_count": 3,
                "agreement": round(2 / 3 if n % 3 else 1.0, 6),
                "chosen_model": "ckpt-a",
                "rejected_model": "ckpt-b",
                "vote_id": rows + 1,
                "strength": "clear",
            }
            line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
            buffer.append(line)
            buffered += len(line)
            rows += 1
            if buffered >= 8 * MIB:
                chunk = b"".join(buffer)
                digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
                buffer, buffered = [], 0
        chunk = b"".join(buffer)
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), rows


def prepare(work: Path, size_mb: int) -> dict[str, object]:
    """Migrate the scratch database and register the synthetic snapshot; returns its facts."""
    env = scratch_env(work)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from api.tokens import create_token
    from labeling.models import JobStatus, Membership, Project, Role, Snapshot, SnapshotPolicy

    user = get_user_model().objects.create_user("bench-reviewer", password=secrets.token_hex(8))
    project = Project.objects.create(name="bench: api download")
    Membership.objects.create(project=project, user=user, role=Role.REVIEWER)
    snapshot = Snapshot.objects.create(project=project, policy=SnapshotPolicy.EVERY_VOTE)
    directory = work / "artifacts" / "snapshots" / str(project.pk) / str(snapshot.pk)
    directory.mkdir(parents=True)
    path = directory / "data.jsonl"
    started = time.perf_counter()
    sha256, rows = write_synthetic_jsonl(path, size_mb * MIB)
    print(
        f"wrote {path.stat().st_size / MIB:,.0f} MiB, {rows:,} rows "
        f"in {time.perf_counter() - started:.1f} s"
    )
    # Registered as built: the row goes straight to ready, as build_snapshot would leave it.
    Snapshot.objects.filter(id=snapshot.pk).update(
        status=JobStatus.SUCCEEDED,
        row_count=rows,
        sha256=sha256,
        path=str(directory.relative_to(work / "artifacts")),
    )
    token = create_token(user, "bench", ["read", "export"], [project]).secret
    return {"path": path, "sha256": sha256, "snapshot_id": snapshot.pk, "token": token}


# -------------------------------------------------------------------------------------------
# servers


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def start_gunicorn(
    work: Path, port: int, workers: int, threads: int, sendfile: bool
) -> subprocess.Popen[bytes]:
    env = scratch_env(work)
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
        }
    )
    command = [
        str(Path(PYTHON).with_name("gunicorn")),
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--log-level",
        "warning",
    ]
    if sendfile:
        # PREFLAB_API_SENDFILE is a plain Django setting: a settings module that extends the
        # project's, on the server's import path, turns it on for this run only.
        overlay = work / "bench_settings"
        overlay.mkdir(exist_ok=True)
        (overlay / "bench_sendfile_settings.py").write_text(
            "from config.settings import *  # noqa: F403\nPREFLAB_API_SENDFILE = True\n"
        )
        env["DJANGO_SETTINGS_MODULE"] = "bench_sendfile_settings"
        env["PYTHONPATH"] = os.pathsep.join([str(overlay), str(ROOT)])
    log = (work / "gunicorn.log").open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_http_server(directory: Path, port: int) -> subprocess.Popen[bytes]:
    command = [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    command += ["--directory", str(directory)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_nginx(work: Path, directory: Path, port: int) -> subprocess.Popen[bytes] | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    prefix = work / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {directory};
    }}
}}
"""
    )
    return subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -------------------------------------------------------------------------------------------
# client and memory sampling


@dataclass
class Download:
    seconds: float
    size: int
    status: int
    sha256: str | None = None


def download(port: int, path: str, headers: dict[str, str], verify: bool = False) -> Download:
    """GET with one socket; read the body into a reused buffer (optionally hashing it)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    request += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    buffer = bytearray(4 * MIB)
    view = memoryview(buffer)
    digest = hashlib.sha256() if verify else None
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the headers ended")
            head += chunk
        raw_headers, _, body_start = head.partition(b"\r\n\r\n")
        lines = raw_headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        length = int(fields.get("content-length", "0"))
        received = len(body_start)
        if digest is not None:
            digest.update(body_start)
        while received < length:
            count = sock.recv_into(view, min(len(buffer), length - received))
            if count == 0:
                break
            if digest is not None:
                digest.update(view[:count])
            received += count
    seconds = time.perf_counter() - started
    if received != length:
        raise RuntimeError(f"short read: {received} of {length} bytes (status {status})")
    return Download(seconds, received, status, digest.hexdigest() if digest else None)


def warm_up(port: int, path: str, headers: dict[str, str]) -> None:
    """Small ranged requests from several threads, so every worker has imported the whole
    app before memory is measured (a worker loads the URLconf on its first request)."""
    ranged = {**headers, "Range": "bytes=0-1023"}

    def fetch() -> None:
        for _ in range(10):
            download(port, path, ranged)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def process_tree(pid: int) -> list[int]:
    import psutil

    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class RssSampler:
    pids: list[int]
    interval: float = 0.01
    peak: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak.get(pid, 0), rss_kib(pid))
            time.sleep(self.interval)


# -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="snapshot size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="downloads per server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--sendfile",
        action="store_true",
        help="serve with PREFLAB_API_SENDFILE=True (gunicorn uses sendfile(2))",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="preflab-api-download-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started as root
    servers: list[subprocess.Popen[bytes] | None] = []
    try:
        facts = prepare(work, args.size_mb)
        path = Path(str(facts["path"]))
        size = path.stat().st_size
        api_port, http_port, nginx_port = free_port(), free_port(), free_port()
        gunicorn = start_gunicorn(work, api_port, args.workers, args.threads, args.sendfile)
        http_server = start_http_server(path.parent, http_port)
        nginx = start_nginx(work, path.parent, nginx_port)
        servers = [gunicorn, http_server, nginx]
        wait_for_port(api_port, gunicorn)
        wait_for_port(http_port, http_server)
        if nginx is not None:
            wait_for_port(nginx_port, nginx)
        time.sleep(1.0)  # let gunicorn's workers finish booting

        api_path = f"/api/v1/snapshots/{facts['snapshot_id']}/files/jsonl"
        auth = {"Authorization": f"Bearer {facts['token']}"}
        targets: dict[str, tuple[int, str, dict[str, str]]] = {
            "api (gunicorn)": (api_port, api_path, auth),
            "http.server": (http_port, "/data.jsonl", {}),
        }
        if nginx is not None:
            targets["nginx"] = (nginx_port, "/data.jsonl", {})

        with path.open("rb") as handle:  # page cache warm for everyone
            while handle.read(16 * MIB):
                pass
        check = download(api_port, api_path, auth, verify=True)
        if check.status != 200 or check.sha256 != facts["sha256"]:
            print(f"API download wrong: status {check.status}, sha256 {check.sha256}")
            return 1
        print(f"API download verified: {check.size:,} bytes, sha256 {str(facts['sha256'])[:16]}…")
        warm_up(api_port, api_path, auth)

        pids = process_tree(gunicorn.pid)
        before = {pid: rss_kib(pid) for pid in pids}
        times: dict[str, list[float]] = {name: [] for name in targets}
        with RssSampler(pids) as sampler:
            for _ in range(args.repeat):
                for name, (port, url, headers) in targets.items():
                    result = download(port, url, headers)
                    if result.status != 200 or result.size != size:
                        print(f"{name}: status {result.status}, {result.size} bytes")
                        return 1
                    times[name].append(result.seconds)

        print(f"\nfile: {size / MIB:,.0f} MiB, {args.repeat} downloads per server (interleaved)")
        print(f"{'server':<16} {'best MiB/s':>11} {'median MiB/s':>13}")
        best = {}
        for name, seconds in times.items():
            best[name] = size / MIB / min(seconds)
            median = size / MIB / statistics.median(seconds)
            print(f"{name:<16} {best[name]:>11,.0f} {median:>13,.0f}")
        api_name = "api (gunicorn)"
        print()
        for name in targets:
            if name != api_name:
                ratio = best[api_name] / best[name]
                verdict = "meets" if ratio >= 0.8 else "misses"
                print(f"ratio api / {name}: {ratio:.2f} ({verdict} the 0.8 goal)")
        print("\ngunicorn RSS (MiB): process, before, peak during the API downloads, growth")
        for pid in pids:
            role = "master" if pid == gunicorn.pid else "worker"
            start, peak = before[pid] / 1024, sampler.peak.get(pid, 0) / 1024
            print(f"  {role:<7} {pid:>7} {start:>8.1f} {peak:>8.1f} {peak - start:>+8.1f}")
        growth = max(sampler.peak.get(pid, 0) - before[pid] for pid in pids) / 1024
        print(f"largest growth: {growth:+.1f} MiB for a {size / MIB:,.0f} MiB file")
        return 0
    finally:
        for server in servers:
            stop_process(server, timeout=10)
        if args.keep:
            print(f"scratch directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
