"""compose.yaml: valid against the Compose specification's JSON schema, and shaped as the
deployment needs (docs/deploy.md). No Docker engine is involved."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import pytest

from tests.conftest import skip_or_fail
from tests.platform.support import (
    APP_SERVICES,
    COMPOSE_FILE,
    ENTRYPOINT,
    SAMPLE_ENV,
    MissingVariableError,
    entrypoint_argv,
    interpolate,
    load_compose,
    option,
    process_env,
    resolved_compose,
)

SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_PIN = "check-jsonschema==0.39.0"


def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema, as vendored by the installed check-jsonschema."""
    try:
        schema_file = resources.files(SCHEMA_PACKAGE).joinpath("compose-spec.json")
        text = schema_file.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        skip_or_fail(f"needs the Compose schema from {SCHEMA_PIN}: pip install '{SCHEMA_PIN}'")
    schema = json.loads(text)
    assert "services" in schema["properties"], "not the Compose specification's schema"
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return resolved_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def needs_database(service: dict[str, Any]) -> bool:
    return "DATABASE_URL" in service.get("environment", {})


# --- (a) the Compose specification --------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification():
    assert schema_errors(load_compose()) == []


def test_compose_file_is_valid_after_variable_interpolation(compose):
    assert schema_errors(compose) == []


def test_the_schema_check_is_not_vacuous(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0][
        "capabilities"
    ] = "gpu"
    errors = schema_errors(broken)
    assert any("intervall" in error for error in errors), errors
    assert any("capabilities" in error for error in errors), errors


def test_no_obsolete_version_key():
    assert "version" not in load_compose()


def test_required_settings_are_refused_when_missing():
    for name in SAMPLE_ENV:
        partial = {key: value for key, value in SAMPLE_ENV.items() if key != name}
        with pytest.raises(MissingVariableError, match=name):
            interpolate(load_compose(), partial)


# --- (b) structure --------------------------------------------------------------------------


def test_services(services):
    expected = {"postgres", "redis", "migrate", "web", "worker", "gpu-worker", "beat"}
    assert expected <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert build["dockerfile"] == "platform/Dockerfile", name
        assert build["target"] == "app", name


def test_common_environment_comes_from_the_x_preflab_extension(compose, services):
    shared = environment(compose["x-preflab"])
    for name in APP_SERVICES:
        env = environment(services[name])
        assert {key: env.get(key) for key in shared} == shared, name
    # Written once, merged everywhere: not copied into each service.
    assert COMPOSE_FILE.read_text(encoding="utf-8").count("DATABASE_URL:") == 1


def test_application_environment(compose, services):
    for name in APP_SERVICES:
        env = environment(services[name])
        database = dj_database_url.parse(env["DATABASE_URL"])
        assert database["ENGINE"] == "django.db.backends.postgresql", name
        assert (database["HOST"], database["PORT"], database["NAME"], database["USER"]) == (
            "postgres",
            5432,
            "preflab",
            "preflab",
        )
        assert database["PASSWORD"] == SAMPLE_ENV["POSTGRES_PASSWORD"]
        broker = urlsplit(env["CELERY_BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port, broker.path) == (
            "redis",
            "redis",
            6379,
            "/0",
        )
        assert broker.password == SAMPLE_ENV["REDIS_PASSWORD"]
        assert env["DEBUG"] == "false"
        assert env["ALLOWED_HOSTS"] == SAMPLE_ENV["ALLOWED_HOSTS"]
        assert env["ARTIFACT_ROOT"] == "/srv/preflab/artifacts"
        # The secret key is a compose secret, never a value in the file.
        assert "SECRET_KEY" not in env, name
        secret_path = env["SECRET_KEY_FILE"]
        assert secret_path.startswith("/run/secrets/")
        secret_name = secret_path.removeprefix("/run/secrets/")
        assert secret_name in services[name]["secrets"], name
        assert "file" in compose["secrets"][secret_name]


def test_everything_that_uses_the_database_waits_for_migrations(services):
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    users = [name for name, service in services.items() if needs_database(service)]
    assert set(APP_SERVICES) <= set(users)
    for name in users:
        if name == "migrate":
            continue
        depends_on = services[name].get("depends_on", {})
        assert depends_on.get("migrate", {}).get("condition") == (
            "service_completed_successfully"
        ), name
        assert depends_on.get("redis", {}).get("condition") == "service_healthy", name


def test_gpu_worker_reserves_an_nvidia_gpu_and_takes_one_gpu_task_at_a_time(services, tmp_path):
    gpu = services["gpu-worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia" and "gpu" in device["capabilities"] for device in devices
    )
    assert gpu["command"] == ["gpu-worker"]
    # Left out of a plain `up` on machines without GPUs.
    assert gpu["profiles"] == ["gpu"]
    argv = entrypoint_argv("gpu-worker", env=_role_env(gpu, tmp_path))
    assert argv[:4] == ["celery", "-A", "workers", "worker"]
    assert option(argv, "-Q") == "gpu"
    assert option(argv, "--concurrency") == "1"
    assert option(argv, "--prefetch-multiplier") == "1"
    # Only the gpu worker holds GPUs.
    for name, service in services.items():
        reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        assert name == "gpu-worker" or "devices" not in reservations, name


def test_cpu_worker_and_beat_commands(services, tmp_path):
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    argv = entrypoint_argv("worker", env=_role_env(worker, tmp_path))
    assert argv[:4] == ["celery", "-A", "workers", "worker"]
    assert option(argv, "-Q") == "default"
    assert option(argv, "--concurrency") == "2"

    beat = services["beat"]
    assert beat["command"] == ["beat"]
    assert beat["deploy"]["replicas"] == 1
    argv = entrypoint_argv("beat", env=_role_env(beat, tmp_path))
    assert argv[:4] == ["celery", "-A", "workers", "beat"]


def test_web_runs_gunicorn_on_port_8000(services, tmp_path):
    web = services["web"]
    assert web["command"] == ["web"]
    argv = entrypoint_argv("web", env=_role_env(web, tmp_path))
    assert argv[:2] == ["gunicorn", "config.wsgi:application"]
    assert option(argv, "--bind") == "0.0.0.0:8000"
    assert option(argv, "--access-logfile") == "-"
    assert "8000" in [str(port) for port in web["expose"]]


def test_volumes_for_the_database_and_the_shared_artifacts(compose, services):
    volumes = compose["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "postgres-data" in volumes
    assert "artifacts" in volumes
    for name in ("web", "worker", "gpu-worker"):
        assert "artifacts:/srv/preflab/artifacts" in services[name]["volumes"], name


def test_healthchecks(services):
    postgres = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in postgres
    redis = " ".join(services["redis"]["healthcheck"]["test"])
    assert "redis-cli" in redis
    assert "ping" in redis
    # The web check runs the entrypoint's healthcheck role, which GETs /healthz
    # (tests/platform/test_entrypoint.py runs it against a live server).
    assert services["web"]["healthcheck"]["test"] == ["CMD", "preflab", "healthcheck"]
    assert "/healthz" in ENTRYPOINT.read_text(encoding="utf-8")


def _role_env(service: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The service's own environment, run from the repository instead of the image."""
    return process_env(tmp_path, **environment(service))
