"""bench/judge_throughput.py's LLM part for a moment, so a change that breaks it fails here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import judge_throughput


def test_the_llm_throughput_bench_runs(capsys):
    judge_throughput.main(
        [
            "--skip-rm",
            "--comparisons",
            "8",
            "--latency",
            "0.01",
            "--concurrency",
            "4",
            "--repeat",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "concurrency 4:" in out and "ratio to concurrency / latency" in out
