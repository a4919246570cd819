"""The metrics stream: one JSON object per line, each with an ``event`` field.

Events (schema documented in docs/engine.md; fields are only ever added):
``start``, ``reference``, ``train``, ``eval``, ``checkpoint``, ``done``, ``cancelled``, ``error``.
Every line also has ``time`` (Unix seconds). The file is flushed after every line so that a
process reading it (the GPU worker) sees progress as it happens.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class MetricsWriter:
    """Appends events to a JSONL file; a no-op writer when ``path`` is None (other processes)."""

    def __init__(self, path: Path | None, append: bool = False) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": round(time.time(), 3), **_clean(fields)}
        if self._fh is not None:
            self._fh.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            self._fh.flush()
        return record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All events of a metrics file (a convenience for tests, the benchmark and the workers)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
