"""Per-process isolation for `make test`, which runs the suite in several pytest-xdist workers
at once (gw0, gw1, ...). config/settings_test.py calls isolate_xdist_worker() before the
settings are read, so each worker, and every subprocess its tests start (they inherit the
environment), gets its own:

- PostgreSQL/SQLite test database: pytest-django already suffixes it (test_<name>_gw0);
- Celery broker: the Redis database number in CELERY_BROKER_URL plus the worker's index
  (or the index-th entry of PREFLAB_TEST_REDIS_DBS, e.g. "14,15"), or, on the file-system
  transport, CELERY_BROKER_FOLDER/gw0;
- state folders: PREFLAB_VAR_DIR/xdist-gw0 (SQLite, broker, artifacts, cache and work folders
  default to it), and ARTIFACT_ROOT, PREFLAB_CACHE_DIR, PREFLAB_WORK_DIR with /gw0 appended
  where they are set;
- the port of the broker-restart tests' own redis-server: PREFLAB_TEST_REDIS_PORT (17179 by
  default) plus the index.

Servers that tests start themselves take a free port from the kernel (pytest-django's
live_server, the moto S3 server, the entrypoint test). Outside xdist nothing changes.
README "Tests" says what a new test that starts processes, servers or workers must do.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
REDIS_DATABASES = 16  # redis-server's default `databases`


def _redis_url_for(url: str, index: int) -> str:
    parts = urlsplit(url)
    explicit = [db.strip() for db in os.environ.get("PREFLAB_TEST_REDIS_DBS", "").split(",")]
    explicit = [db for db in explicit if db]
    if explicit:
        if index >= len(explicit):
            raise RuntimeError(
                f"PREFLAB_TEST_REDIS_DBS={','.join(explicit)} names {len(explicit)} Redis "
                f"databases, but pytest-xdist worker {index} needs one of its own: name one per "
                "worker (-n)"
            )
        db = int(explicit[index])
    else:
        base = int(parts.path.strip("/") or 0)
        db = base + index
    if not 0 <= db < REDIS_DATABASES:
        raise RuntimeError(
            f"pytest-xdist worker {index} would use Redis database {db} (CELERY_BROKER_URL "
            f"{url} plus its index), past Redis's {REDIS_DATABASES}: start from a lower "
            "database, run fewer workers (-n), or list one per worker in PREFLAB_TEST_REDIS_DBS"
        )
    return urlunsplit(parts._replace(path=f"/{db}"))


def isolate_xdist_worker() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    # Subprocesses of a test inherit both variables: they are isolated already.
    if not worker or os.environ.get("PREFLAB_TEST_ISOLATED") == worker:
        return
    index = int(worker.removeprefix("gw"))
    env = os.environ
    var_dir = Path(env.get("PREFLAB_VAR_DIR") or ROOT / "var")
    env["PREFLAB_VAR_DIR"] = str(var_dir / f"xdist-{worker}")
    for name in ("CELERY_BROKER_FOLDER", "ARTIFACT_ROOT", "PREFLAB_CACHE_DIR", "PREFLAB_WORK_DIR"):
        if env.get(name):
            env[name] = str(Path(env[name]) / worker)
    broker = env.get("CELERY_BROKER_URL", "")
    if broker.startswith(("redis://", "rediss://")):
        env["CELERY_BROKER_URL"] = _redis_url_for(broker, index)
    env["PREFLAB_TEST_REDIS_PORT"] = str(int(env.get("PREFLAB_TEST_REDIS_PORT", "17179")) + index)
    env["PREFLAB_TEST_ISOLATED"] = worker
