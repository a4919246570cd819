"""Experiment trackers: TensorBoard event files with the numbers of metrics.jsonl."""

from __future__ import annotations

import pytest

from training.engine import EXIT_BAD_INPUT, EXIT_OK
from training.engine.config import ConfigError, DPOConfig

from .conftest import engine, events

pytest.importorskip("tensorboard", reason="tensorboard is in the train extra")


def test_tensorboard_is_the_default_tracker_and_logs_what_the_jsonl_has(
    tmp_path, pairs_file, run_config
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = pairs_file(16)
    config = run_config(data, max_steps=3, eval_fraction=0.25)
    assert engine("train", "--config", str(config)) == EXIT_OK
    out = tmp_path / "out"
    files = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert files and all(f.stat().st_size > 0 for f in files)
    (setup,) = events(out / "metrics.jsonl", "engine")
    assert setup["trackers"] == ["tensorboard"]

    scalars = EventAccumulator(str(files[0].parent))
    scalars.Reload()
    train = events(out / "metrics.jsonl", "train")
    logged = [(s.step, s.value) for s in scalars.Scalars("train/loss")]
    assert [step for step, _ in logged] == [e["step"] for e in train]
    assert all(abs(v - e["loss"]) < 1e-6 for (_, v), e in zip(logged, train, strict=True))
    (last_eval,) = events(out / "metrics.jsonl", "eval")
    (eval_loss,) = scalars.Scalars("eval/loss")
    assert abs(eval_loss.value - last_eval["loss"]) < 1e-6


def test_trackers_can_be_turned_off_and_unknown_ones_are_refused(tmp_path, pairs_file, run_config):
    data = pairs_file(8)
    config = run_config(data, max_steps=1, trackers=[])
    assert engine("train", "--config", str(config)) == EXIT_OK
    assert not (tmp_path / "out" / "tensorboard").exists()
    with pytest.raises(ConfigError, match="trackers"):
        DPOConfig(data="d", model="m", out_dir="o", trackers=("comet",))
    bad = run_config(data, name="bad.json", out_dir=str(tmp_path / "bad"), trackers=["comet"])
    assert engine("train", "--config", str(bad)) == EXIT_BAD_INPUT
