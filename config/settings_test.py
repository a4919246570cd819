"""Settings for the test suite (pyproject's DJANGO_SETTINGS_MODULE): the project's settings in
debug mode, which config.settings no longer defaults to. The tests' own subprocesses inherit
this module through DJANGO_SETTINGS_MODULE; a variable set in the environment still wins."""

import os

os.environ.setdefault("DEBUG", "true")

# `make test` runs pytest-xdist workers side by side: each gets its own broker, Redis database
# and state folders before the settings read them (tests/isolation.py).
if os.environ.get("PYTEST_XDIST_WORKER"):
    from tests.isolation import isolate_xdist_worker

    isolate_xdist_worker()

from config.settings import *  # noqa: F403
