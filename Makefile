# PrefLab: `make demo` runs the platform with a demo project; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo test lint format bench clean

# DEBUG defaults to false (production); the local commands run in debug mode. The tests get it
# from config/settings_test.py.
demo lint bench: export DEBUG = true

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "PrefLab needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed for the front-end assets"; exit 1; }
	npm ci --no-audit --no-fund --silent

setup: $(STAMP) node_modules/.package-lock.json

demo: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py prepare_demo_model
	$(BIN)/python manage.py seed_demo --base-model "$(CURDIR)/var/models/demo-sft" \
		--url "http://$(HOST):$(PORT)/"
	@echo "PrefLab is at http://$(HOST):$(PORT)/  (Ctrl+C stops it; worker log: var/worker.log)"
	@$(BIN)/celery -A workers worker --beat -Q default,gpu --concurrency 2 --loglevel INFO \
		> var/worker.log 2>&1 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# Tests get their own broker folder so a running `make demo` worker never takes their tasks.
# They run in TEST_PROCESSES pytest-xdist workers, each with its own database, broker (Redis
# database N+i of CELERY_BROKER_URL's N) and folders (tests/isolation.py); 0 runs them in one.
TEST_PROCESSES ?= 3
test: setup
	CELERY_BROKER_FOLDER="$(CURDIR)/var/test-broker" $(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy config core labeling training workers api bench evaluation judging
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/annotate_load.py

clean:
	rm -rf $(VENV) node_modules var
