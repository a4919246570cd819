#!/usr/bin/env bash
# PrefLab process entrypoint: one role per container (or per plain process outside one).
#
#   entrypoint.sh ROLE [EXTRA ARGS...]
#
# Roles: web, worker, gpu-worker, beat, migrate, manage, healthcheck, worker-alive (see usage).
# Extra arguments are appended to the role's command. Every role ends in `exec`, so the
# server process replaces this shell and receives SIGTERM from `docker stop` directly.
#
# The image sets PREFLAB_APP_DIR; elsewhere the project is the directory above this script.
# With PREFLAB_ENTRYPOINT_DRY_RUN=1 the command is printed (one argument a line) instead of run.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: entrypoint.sh ROLE [EXTRA ARGS...]

roles:
  web          gunicorn serving config.wsgi on ${BIND_HOST:-0.0.0.0}:${PORT:-8000}
  worker       Celery worker for the "default" queue (imports, snapshots, housekeeping)
  gpu-worker   Celery worker for the "gpu" queue: one task at a time, prefetch 1
  beat         Celery beat: periodic tasks such as the stale-training-run watchdog
  migrate      apply database migrations, then exit
  manage       run manage.py with the extra arguments (e.g. createsuperuser)
  healthcheck  exit 0 when the local web server answers /healthz with "ok"
  worker-alive exit 0 when the local worker consumes (PREFLAB_WORKER_ALIVE_FILE is fresh)
EOF
}

die() {
    echo "entrypoint.sh: $*" >&2
    exit 64
}

run() {
    if [[ "${PREFLAB_ENTRYPOINT_DRY_RUN:-}" == "1" ]]; then
        printf '%s\n' "$@"
        exit 0
    fi
    exec "$@"
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH (install the project: pip install '.[train]')"
}

if [[ $# -lt 1 ]]; then
    usage
    die "no role given"
fi
role="$1"
shift

script_path="$(readlink -f "${BASH_SOURCE[0]}")"
APP_DIR="${PREFLAB_APP_DIR:-$(cd "$(dirname "$script_path")/.." && pwd)}"
[[ -f "$APP_DIR/manage.py" ]] || die "no manage.py in $APP_DIR (set PREFLAB_APP_DIR to the project directory)"
cd "$APP_DIR"
# Import the project from its source tree: templates, static files and manage.py live there.
export PYTHONPATH="$APP_DIR${PYTHONPATH:+:$PYTHONPATH}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings}"
PYTHON="${PYTHON:-python}"
VAR_DIR="${PREFLAB_VAR_DIR:-$APP_DIR/var}"
LOG_LEVEL="${LOG_LEVEL:-INFO}"

case "$role" in
    web)
        need gunicorn
        args=(
            gunicorn config.wsgi:application
            --bind "${BIND_HOST:-0.0.0.0}:${PORT:-8000}"
            --workers "${WEB_CONCURRENCY:-2}"
            --threads "${GUNICORN_THREADS:-4}"
            --timeout "${GUNICORN_TIMEOUT:-60}"
            --graceful-timeout "${GUNICORN_GRACEFUL_TIMEOUT:-30}"
            --keep-alive "${GUNICORN_KEEPALIVE:-5}"
            --max-requests "${GUNICORN_MAX_REQUESTS:-1000}"
            --max-requests-jitter "${GUNICORN_MAX_REQUESTS_JITTER:-100}"
            --access-logfile -
            --error-logfile -
            --log-level "${LOG_LEVEL,,}"
            --no-control-socket
        )
        # Heartbeat files on tmpfs: a container's overlay file system can stall them.
        if [[ -d /dev/shm && -w /dev/shm ]]; then
            args+=(--worker-tmp-dir /dev/shm)
        fi
        run "${args[@]}" "$@"
        ;;
    worker)
        need celery
        run celery -A workers worker -Q default --concurrency "${WORKER_CONCURRENCY:-2}" \
            --hostname "default@%h" --loglevel "$LOG_LEVEL" "$@"
        ;;
    gpu-worker)
        # One training or sampling task at a time per machine, and no task reserved ahead of
        # it: a queued run must stay free for another GPU machine to take.
        need celery
        run celery -A workers worker -Q gpu --concurrency 1 --prefetch-multiplier 1 \
            --hostname "gpu@%h" --loglevel "$LOG_LEVEL" "$@"
        ;;
    beat)
        # Exactly one beat per deployment; its schedule state is a local file.
        need celery
        mkdir -p "$VAR_DIR"
        run celery -A workers beat --schedule "${CELERY_BEAT_SCHEDULE:-$VAR_DIR/celerybeat-schedule}" \
            --loglevel "$LOG_LEVEL" "$@"
        ;;
    migrate)
        need "$PYTHON"
        run "$PYTHON" manage.py migrate --noinput "$@"
        ;;
    manage)
        need "$PYTHON"
        run "$PYTHON" manage.py "$@"
        ;;
    healthcheck)
        # Ask the local gunicorn for /healthz the way the proxy does: with a Host from
        # ALLOWED_HOSTS and X-Forwarded-Proto: https, so the HTTPS redirect does not answer.
        need "$PYTHON"
        run "$PYTHON" -c '
import os, sys, urllib.request
hosts = [h.strip().lstrip(".") for h in os.environ.get("ALLOWED_HOSTS", "").split(",")]
host = next((h for h in hosts if h and h != "*"), "localhost")
url = "http://127.0.0.1:%s/healthz" % os.environ.get("PORT", "8000")
request = urllib.request.Request(url, headers={"Host": host, "X-Forwarded-Proto": "https"})
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
except Exception as error:
    sys.exit("healthcheck: %s: %s" % (url, error))
sys.exit(0 if body == b"ok" else "healthcheck: unexpected body %r" % body[:100])
' "$@"
        ;;
    worker-alive)
        # A worker's consumer touches PREFLAB_WORKER_ALIVE_FILE while it consumes; one that
        # stopped (a broker restart it did not survive) also exits by itself (core/liveness.py).
        need "$PYTHON"
        run "$PYTHON" manage.py worker_alive "$@"
        ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    *)
        usage
        die "unknown role '$role'"
        ;;
esac
