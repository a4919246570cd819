"""Settings for the test suite (pyproject's DJANGO_SETTINGS_MODULE): the project's settings in
debug mode, which config.settings no longer defaults to. The tests' own subprocesses inherit
this module through DJANGO_SETTINGS_MODULE; a variable set in the environment still wins."""

import os

os.environ.setdefault("DEBUG", "true")

from config.settings import *  # noqa: F403
