"""The sample command: batched generation, reproducible with a seed."""

from __future__ import annotations

import json

from training.engine import EXIT_OK

from .conftest import engine, write_jsonl


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sampling_is_reproducible_with_a_seed(tmp_path, tiny_model):
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"id": "a", "prompt": "hello"},
            {"id": "b", "prompt": [{"role": "user", "content": "what is up?"}]},
            {"id": "c", "prompt": "a much longer prompt than the others"},
        ],
    )
    outs = []
    for name, seed in (("one", 7), ("two", 7), ("three", 8)):
        out = tmp_path / f"{name}.jsonl"
        assert (
            engine(
                "sample",
                "--model",
                str(tiny_model),
                "--prompts",
                str(prompts),
                "--out",
                str(out),
                "--num-samples",
                "2",
                "--max-new-tokens",
                "12",
                "--seed",
                str(seed),
                "--batch-size",
                "2",
            )
            == EXIT_OK
        )
        outs.append(read(out))
    assert outs[0] == outs[1]
    assert [r["completion"] for r in outs[0]] != [r["completion"] for r in outs[2]]
    rows = outs[0]
    assert len(rows) == 6
    assert [(r["id"], r["sample_index"]) for r in rows] == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
        ("c", 0),
        ("c", 1),
    ]
    assert all(
        r["completion_tokens"] <= 12 and r["finish_reason"] in ("stop", "length") for r in rows
    )
    assert rows[2]["prompt"] == [{"role": "user", "content": "what is up?"}]


def test_greedy_sampling_gives_identical_samples(tmp_path, tiny_model):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hello"}])
    out = tmp_path / "greedy.jsonl"
    assert (
        engine(
            "sample",
            "--model",
            str(tiny_model),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--temperature",
            "0",
            "--max-new-tokens",
            "8",
        )
        == EXIT_OK
    )
    first, second = read(out)
    assert first["completion"] == second["completion"]
