"""platform/Dockerfile and its companions, read as text: no Docker engine is involved."""

from __future__ import annotations

import re
import tomllib

from tests.platform.support import DOCKERFILE, PLATFORM, ROOT, load_compose

DOCKERIGNORE = PLATFORM / "Dockerfile.dockerignore"
NGINX_CONF = PLATFORM / "nginx.conf"


def dockerfile() -> str:
    # Join continuation lines so each instruction is one line.
    return DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")


def stages() -> dict[str, str]:
    """Stage name -> the instructions of that stage."""
    parts = re.split(r"^FROM\s+", dockerfile(), flags=re.MULTILINE)
    found = {}
    for part in parts[1:]:
        header, _, body = part.partition("\n")
        match = re.search(r"\bAS\s+(\S+)", header, flags=re.IGNORECASE)
        assert match, f"unnamed stage: FROM {header}"
        found[match.group(1)] = header + "\n" + body
    return found


def arg_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S*)", dockerfile(), flags=re.MULTILINE)
    assert match, f"ARG {name} has no default"
    return match.group(1).strip('"')


def test_app_stage_is_python_311_slim_and_runs_as_a_non_root_user():
    app = stages()["app"]
    assert app.startswith("${PYTHON_IMAGE} AS app")
    assert arg_default("PYTHON_IMAGE") == "python:3.11-slim"
    users = re.findall(r"^USER\s+(\S+)", app, flags=re.MULTILINE)
    assert users, "the app stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric USER lets orchestrators check it is not root"
    assert uid != "0"
    assert re.search(rf"useradd .*--uid {uid}\b", app)
    assert 'ENTRYPOINT ["/srv/preflab/app/platform/entrypoint.sh"]' in app
    # The web healthcheck in compose.yaml calls `preflab healthcheck`.
    assert "/usr/local/bin/preflab" in app


def test_app_stage_installs_the_project_with_training_extras_and_htmx():
    app = stages()["app"]
    assert 'pip install ".[train]"' in app
    assert "npm ci" in stages()["assets"]
    assert "COPY package.json package-lock.json" in stages()["assets"]
    assert "COPY --from=assets /build/node_modules ./node_modules" in app


def test_static_files_are_collected_at_build_time_with_a_dummy_secret():
    app = stages()["app"]
    match = re.search(r"SECRET_KEY=(\S+) DEBUG=false .*manage\.py collectstatic --noinput", app)
    assert match, "collectstatic must run with DEBUG=false and a build-time dummy SECRET_KEY"
    assert not re.search(r"^ENV .*SECRET_KEY", dockerfile(), flags=re.MULTILINE)


def test_torch_comes_from_a_configurable_index_at_the_pinned_version():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = dict(
        requirement.split("==", 1)
        for requirement in pyproject["project"]["optional-dependencies"]["train"]
    )
    assert arg_default("TORCH_VERSION") == pins["torch"]
    assert arg_default("TORCH_INDEX_URL") == ""
    assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in stages()["app"]


def test_compose_build_targets_exist():
    names = set(stages())
    for name, service in load_compose()["services"].items():
        build = service.get("build")
        if build:
            assert build["dockerfile"] == "platform/Dockerfile", name
            assert build.get("target") in names, name


def test_build_context_leaves_out_secrets_and_local_state():
    ignored = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    assert {".git", ".env", "secrets", ".venv", "node_modules", "var"} <= ignored


def test_proxy_serves_the_collected_static_files_and_forwards_to_web():
    proxy = stages()["proxy"]
    copied = re.search(r"COPY --from=app (\S+) (\S+)", proxy)
    assert copied
    var_dir = re.search(r"PREFLAB_VAR_DIR=(\S+)", stages()["app"])
    assert var_dir
    # settings.STATIC_ROOT is PREFLAB_VAR_DIR/static.
    assert copied.group(1) == f"{var_dir.group(1)}/static"
    conf = NGINX_CONF.read_text(encoding="utf-8")
    assert f"alias {copied.group(2)}/;" in conf
    assert "location /static/" in conf
    assert "server web:8000;" in conf
    assert "X-Forwarded-Proto" in conf


def test_no_python_files_in_platform():
    # A top-level `platform` package would shadow the standard library's platform module.
    assert not list(PLATFORM.rglob("*.py"))
