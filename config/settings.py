"""PrefLab settings. Every value comes from an environment variable with a safe local default.

The defaults run the whole platform on one machine with nothing installed: SQLite and a
file-system Celery broker under var/. Production sets DATABASE_URL, CELERY_BROKER_URL,
SECRET_KEY, DEBUG=false and ALLOWED_HOSTS (see .env.example).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PREFLAB_VAR_DIR", str(BASE_DIR / "var")))

_PLACEHOLDER_SECRET = "insecure-local-development-key-do-not-deploy"
# Off unless asked for: a deployment that forgets DEBUG runs in production mode (and then
# refuses the placeholder secret). `make demo` and the tests set it explicitly.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", _PLACEHOLDER_SECRET)
if not DEBUG and SECRET_KEY == _PLACEHOLDER_SECRET:
    raise RuntimeError("SECRET_KEY must be set when DEBUG is false (production refuses to start)")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    # Login throttling (django-axes) and the Content-Security-Policy header (django-csp).
    "axes",
    "csp",
    # Serves the API docs page's Swagger UI assets locally instead of from a CDN.
    "ninja",
    "core",
    "labeling",
    "training",
    "judging",
    "evaluation",
    "api",
]

MIDDLEWARE = [
    # First: proxy headers count only from TRUSTED_PROXIES, before anything reads them.
    "config.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A database outage answers a plain 503 page instead of a traceback (config/middleware.py).
    "config.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'preflab.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A fresh clone has no var/ yet; SQLite cannot create the file's directory itself.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # A file, not memory: tests start real worker processes that must see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    # WAL lets the web server read while a worker writes; the timeout waits out short writes
    # instead of failing with "database is locked". Transactions take the write lock when they
    # begin (IMMEDIATE): a transaction that reads and then writes (update_or_create) would
    # otherwise fail at once, not wait, when another connection (a job's heartbeat thread, a
    # second worker) wrote in between.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# API rate limits per token (api/ratelimit.py), "N/second|minute|hour|day": every request but
# file downloads, and downloads in a bucket of their own.
PREFLAB_API_RATE_LIMIT = env_str("PREFLAB_API_RATE_LIMIT", "600/minute")
PREFLAB_API_DOWNLOAD_RATE_LIMIT = env_str("PREFLAB_API_DOWNLOAD_RATE_LIMIT", "120/minute")
# Downloads from the local store through sendfile(2) (api/downloads.py says when it pays).
PREFLAB_API_SENDFILE = env_bool("PREFLAB_API_SENDFILE", False)

# API rate limits count in this cache: per process by default, shared across web processes
# when CACHE_URL names a Redis server (e.g. redis://127.0.0.1:6379/1).
_CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
        if _CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
if _CACHE_URL:
    # A shared cache in front of the session table saves a query per request; with a
    # per-process cache a logout in one process would linger in the others, so only then.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-axes counts failed logins (site and admin alike) in the database. After
# AXES_FAILURE_LIMIT failures for one user name, or from one address, within AXES_COOLOFF_MINUTES,
# that user name or address is locked out for AXES_COOLOFF_MINUTES. Staff unlock in the admin
# (Axes > Access attempts: delete the rows) or with `manage.py axes_reset`,
# `axes_reset_username NAME`, `axes_reset_ip ADDRESS`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each counted on its own
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.lockout.locked_out"  # 429 with the limits, Retry-After
# The client's address is REMOTE_ADDR, which TrustedProxyMiddleware sets from the proxy's
# X-Forwarded-For only when the request came through a trusted proxy.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "labeling:project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# htmx comes from the npm registry (package.json), never copied into the repo.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/htmx", BASE_DIR / "node_modules/htmx.org/dist"),
    ("vendor/uplot", BASE_DIR / "node_modules/uplot/dist"),
    ("vendor/sortablejs", BASE_DIR / "node_modules/sortablejs"),
]

# The artifact store (core/artifacts.py, docs/deploy.md): snapshots and checkpoints under keys.
# Unset ARTIFACT_STORAGE_URL: the local file system under ARTIFACT_ROOT. s3://bucket/prefix:
# S3-compatible object storage, and then web and workers need no shared disk.
ARTIFACT_ROOT = Path(env_str("ARTIFACT_ROOT", str(VAR_DIR / "artifacts")))
ARTIFACT_STORAGE_URL = env_str("ARTIFACT_STORAGE_URL", "")
# S3 endpoint (MinIO, Ceph, R2…; empty: AWS), region and credentials. Empty credentials use
# botocore's own chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role.
PREFLAB_S3_ENDPOINT_URL = env_str(
    "PREFLAB_S3_ENDPOINT_URL", env_str("AWS_ENDPOINT_URL_S3", env_str("AWS_ENDPOINT_URL", ""))
)
PREFLAB_S3_REGION = env_str("PREFLAB_S3_REGION", env_str("AWS_DEFAULT_REGION", ""))
PREFLAB_S3_ACCESS_KEY_ID = env_str("PREFLAB_S3_ACCESS_KEY_ID", "")
PREFLAB_S3_SECRET_ACCESS_KEY = env_str("PREFLAB_S3_SECRET_ACCESS_KEY", "")
# S3 downloads: false streams through the web process; true redirects (302) to a presigned
# URL valid for PREFLAB_S3_PRESIGN_SECONDS.
PREFLAB_S3_PRESIGNED_DOWNLOADS = env_bool("PREFLAB_S3_PRESIGNED_DOWNLOADS", False)
PREFLAB_S3_PRESIGN_SECONDS = env_int("PREFLAB_S3_PRESIGN_SECONDS", 3600)
# Worker-local directories: staged copies of snapshots and checkpoints (safe to delete while
# no job runs), and what a run writes before it is published (S3 store only).
PREFLAB_CACHE_DIR = Path(env_str("PREFLAB_CACHE_DIR", str(VAR_DIR / "cache")))
PREFLAB_WORK_DIR = Path(env_str("PREFLAB_WORK_DIR", str(VAR_DIR / "work")))

# Celery: file-system transport under var/ unless a real broker is configured.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_FOLDER = Path(env_str("CELERY_BROKER_FOLDER", str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's file-system transport with atomic message writes (workers/broker.py).
    CELERY_BROKER_TRANSPORT = "workers.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "processed_folder": str(CELERY_BROKER_FOLDER / "processed"),
        # Without it kombu writes broadcast (control) messages to ./control in the cwd.
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged message after this long. Training outlives any sane
    # value, so correctness never rests on it: a redelivered run finds its row already claimed
    # and does nothing, and the watchdog, not redelivery, recovers runs whose worker died.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "workers.tasks.train_run": {"queue": "gpu"},
    "workers.tasks.sample_round": {"queue": "gpu"},
    "workers.tasks.judge_comparisons_gpu": {"queue": "gpu"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Background jobs (core/jobs.py, docs/deploy.md "Jobs and the watchdog"): a running job's
# worker sets its heartbeat every PREFLAB_HEARTBEAT_SECONDS; the watchdog, run by beat every
# PREFLAB_WATCHDOG_SECONDS, resumes or fails a job whose heartbeat is older than
# PREFLAB_HEARTBEAT_TIMEOUT_SECONDS, so a dead worker's job moves on within timeout + watchdog
# period (40 s by default), and re-sends the message of a job queued longer than
# PREFLAB_REQUEUE_AFTER_SECONDS (a duplicate finds the job claimed and does nothing).
PREFLAB_HEARTBEAT_SECONDS = env_int("PREFLAB_HEARTBEAT_SECONDS", 5)
PREFLAB_HEARTBEAT_TIMEOUT_SECONDS = env_int("PREFLAB_HEARTBEAT_TIMEOUT_SECONDS", 30)
PREFLAB_WATCHDOG_SECONDS = env_int("PREFLAB_WATCHDOG_SECONDS", 10)
PREFLAB_REQUEUE_AFTER_SECONDS = env_int("PREFLAB_REQUEUE_AFTER_SECONDS", 300)
if not 0 < PREFLAB_HEARTBEAT_SECONDS * 3 <= PREFLAB_HEARTBEAT_TIMEOUT_SECONDS:
    raise ValueError(
        "PREFLAB_HEARTBEAT_TIMEOUT_SECONDS must be at least 3 x PREFLAB_HEARTBEAT_SECONDS"
    )
CELERY_BEAT_SCHEDULE = {
    "watchdog": {
        "task": "workers.tasks.watchdog",
        "schedule": PREFLAB_WATCHDOG_SECONDS,
        # A watchdog message that waited a whole period is superseded by the next one.
        "options": {"expires": PREFLAB_WATCHDOG_SECONDS},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Worker liveness (core/liveness.py): the worker touches this file while its consumer runs and
# exits when it has not consumed for PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS; `manage.py
# worker_alive` (compose's healthcheck) checks the file's age. One file per worker process.
PREFLAB_WORKER_ALIVE_FILE = Path(
    env_str("PREFLAB_WORKER_ALIVE_FILE", str(VAR_DIR / "worker-alive"))
)
PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS = env_int("PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS", 60)

# What the watchdog does with a lost training run (and the worker with an engine killed
# alone, e.g. out of memory): "resume" from its last checkpoint, or "fail".
PREFLAB_LOST_RUN_POLICY = env_str("PREFLAB_LOST_RUN_POLICY", "resume")
if PREFLAB_LOST_RUN_POLICY not in {"resume", "fail"}:
    raise ValueError("PREFLAB_LOST_RUN_POLICY must be resume or fail")
# How many times a lost job (a run resumed, a snapshot rebuilt) is started before it is failed.
PREFLAB_MAX_RUN_ATTEMPTS = env_int("PREFLAB_MAX_RUN_ATTEMPTS", 3)
# The Python that runs the engine subprocess (the worker's own by default).
PREFLAB_ENGINE_PYTHON = env_str("PREFLAB_ENGINE_PYTHON", "")
# Launch training under `accelerate launch` with this many processes (0/1: a plain process).
PREFLAB_TRAIN_PROCESSES = env_int("PREFLAB_TRAIN_PROCESSES", 1)

# AI judges (docs/judges.md): hosts an LLM judge may call (names, IPs or CIDRs; loopback,
# link-local/metadata and private addresses only when named explicitly), a judging job's
# total-time limit, where reward-model judges' checkpoints live, and the modules programmatic
# judges' callables may come from.
PREFLAB_JUDGE_ALLOWED_HOSTS = env_list("PREFLAB_JUDGE_ALLOWED_HOSTS", [])
PREFLAB_JUDGE_JOB_SECONDS = env_int("PREFLAB_JUDGE_JOB_SECONDS", 6 * 3600)
PREFLAB_JUDGE_MODELS_DIR = Path(env_str("PREFLAB_JUDGE_MODELS_DIR", str(VAR_DIR / "judge-models")))
PREFLAB_JUDGE_CALLABLE_MODULES = env_list("PREFLAB_JUDGE_CALLABLE_MODULES", ["judging.checks"])

# Annotation: how long a taken comparison stays reserved for its annotator.
PREFLAB_LEASE_SECONDS = env_int("PREFLAB_LEASE_SECONDS", 600)
# How long after voting an annotator may still take the vote back.
PREFLAB_UNDO_SECONDS = env_int("PREFLAB_UNDO_SECONDS", 60)
# Upper bound on an import file, checked before parsing.
PREFLAB_IMPORT_MAX_BYTES = env_int("PREFLAB_IMPORT_MAX_BYTES", 50 * 1024 * 1024)
PREFLAB_IMPORT_MAX_ROWS = env_int("PREFLAB_IMPORT_MAX_ROWS", 200_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
# X-Forwarded-Proto and X-Forwarded-For are believed only from these addresses or networks
# (comma-separated, CIDR allowed): config.middleware.TrustedProxyMiddleware drops the headers
# from anyone else, so a client cannot claim HTTPS or another address.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", ["127.0.0.1", "::1"])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts and styles only from this site; an inline
# <script> needs the request's nonce ({{ request.csp_nonce }}). Style attributes stay allowed
# (progress bars, Swagger UI); no eval, no plugins, no framing, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
