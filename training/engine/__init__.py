"""PrefLab's DPO engine: plain files in (snapshot, model, config), plain files out.

Pure PyTorch + transformers + accelerate. This package never imports Django, Celery or any
other PrefLab package; run it as ``python -m training.engine``. Importing the package itself is
cheap: torch and transformers load only when a command runs.
"""

# Process exit statuses of ``python -m training.engine`` (documented in docs/engine.md).
EXIT_OK = 0
EXIT_FAILED = 1  # an unexpected error; the traceback is on stderr and in the metrics file
EXIT_BAD_INPUT = 2  # bad command line, config or data; nothing was trained
EXIT_CANCELLED = 3  # SIGTERM/SIGINT: a checkpoint was saved (when training had started)
# the loss or gradient norm became non-finite, or the loss grew past divergence_factor times its
# start: a `diverged` event names the step; no checkpoint after that step was written
EXIT_DIVERGED = 4

__all__ = ["EXIT_BAD_INPUT", "EXIT_CANCELLED", "EXIT_DIVERGED", "EXIT_FAILED", "EXIT_OK"]
