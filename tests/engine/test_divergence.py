"""A diverging run stops with EXIT_DIVERGED and writes no checkpoint after the step that diverged;
a failed save leaves no temporary directory behind."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from training.engine import EXIT_DIVERGED, EXIT_FAILED, EXIT_OK
from training.engine.checkpoint import list_checkpoints

from .conftest import engine, events


def all_finite(checkpoint: Path) -> bool:
    return all(
        t.isfinite().all() for t in load_file(str(checkpoint / "model.safetensors")).values()
    )


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("log_every", [1, 10])
def test_a_nan_run_stops_with_exit_4_and_no_nan_checkpoint(
    tmp_path, pairs_file, run_config, log_every
):
    """lr 1e30 (the issue's case): step 1 is finite, step 2's loss is NaN. With log_every 10 the
    check runs only where the loop syncs anyway, and still names step 2."""
    out = tmp_path / "out"
    config = run_config(
        pairs_file(32), learning_rate=1e30, max_steps=8, save_every=1, log_every=log_every
    )
    assert engine("train", "--config", str(config)) == EXIT_DIVERGED
    (diverged,) = events(out / "metrics.jsonl", "diverged")
    assert diverged["reason"] == "non_finite" and diverged["step"] == 2
    assert "step 2" in diverged["message"] and "not finite" in diverged["message"]
    saved = [e["step"] for e in events(out / "metrics.jsonl", "checkpoint")]
    assert saved == [1]
    assert [step for step, _ in list_checkpoints(out)] == [1]
    assert diverged["checkpoint"] == str(list_checkpoints(out)[0][1])
    assert all(all_finite(path) for _, path in list_checkpoints(out))
    assert not events(out / "metrics.jsonl", "done") and not (out / "summary.json").exists()
    assert leftovers(out) == []


def test_a_nan_run_saving_only_at_the_end_writes_no_checkpoint(tmp_path, pairs_file, run_config):
    out = tmp_path / "out"
    config = run_config(pairs_file(32), learning_rate=1e30, max_steps=4, log_every=10)
    assert engine("train", "--config", str(config)) == EXIT_DIVERGED
    assert events(out / "metrics.jsonl", "diverged")[0]["step"] == 2
    assert not events(out / "metrics.jsonl", "checkpoint") and list_checkpoints(out) == []


def test_a_loss_that_explodes_is_reported_as_diverged(tmp_path, pairs_file, run_config):
    """lr 10 (the issue's case, which used to end "succeeded"): the loss jumps from ln 2 to
    ~129 at step 2, past divergence_factor 10 times the start."""
    out = tmp_path / "out"
    config = run_config(pairs_file(32), learning_rate=10.0, max_steps=8, save_every=1)
    assert engine("train", "--config", str(config)) == EXIT_DIVERGED
    (diverged,) = events(out / "metrics.jsonl", "diverged")
    assert diverged["reason"] == "loss_growth" and diverged["step"] == 2
    assert diverged["initial_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert diverged["loss"] > 10 * diverged["initial_loss"] and diverged["divergence_factor"] == 10
    assert [e["step"] for e in events(out / "metrics.jsonl", "checkpoint")] == [1]

    # the same run with the check switched off trains to the end: the check is what stopped it
    off = run_config(
        pairs_file(32),
        name="off.json",
        out_dir=str(tmp_path / "off"),
        learning_rate=10.0,
        max_steps=8,
        divergence_factor=None,
    )
    assert engine("train", "--config", str(off)) == EXIT_OK
    losses = [e["loss"] for e in events(tmp_path / "off" / "metrics.jsonl", "train")]
    assert max(losses) > 10 * losses[0]


def test_the_starting_loss_survives_a_resume(tmp_path, pairs_file, run_config):
    """The divergence check compares with the run's first step, also after --resume (and not
    with the first step after the resume)."""
    out = tmp_path / "out"
    config = run_config(pairs_file(16), max_steps=3, save_every=1)
    assert engine("train", "--config", str(config)) == EXIT_OK
    losses = [e["loss"] for e in events(out / "metrics.jsonl", "train")]
    shutil.rmtree(out / "checkpoint-000003")
    shutil.rmtree(out / "checkpoint-000002")
    assert engine("train", "--config", str(config), "--resume") == EXIT_OK
    state = json.loads((out / "checkpoint-000003" / "trainer_state.json").read_text())
    assert state["initial_loss"] == pytest.approx(math.log(2), abs=1e-5) == losses[0]
    assert abs(losses[1] - losses[0]) > 1e-4  # the resumed run's first step differs


def test_a_failed_save_removes_its_temporary_directory(
    tmp_path, pairs_file, run_config, monkeypatch
):
    """The disk fills up while the checkpoint is moved into place (the outside world is faked:
    os.rename raises ENOSPC); the run fails and leaves no .checkpoint-*.tmp behind."""
    real_rename = os.rename

    def full_disk(src, dst, *args, **kwargs):
        if Path(src).name.startswith(".checkpoint-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", full_disk)
    out = tmp_path / "out"
    config = run_config(pairs_file(16), max_steps=1)
    assert engine("train", "--config", str(config)) == EXIT_FAILED
    (error,) = events(out / "metrics.jsonl", "error")
    assert "No space left on device" in error["message"]
    assert leftovers(out) == [] and list_checkpoints(out) == []
    assert not events(out / "metrics.jsonl", "checkpoint")


def test_a_temporary_directory_left_by_a_killed_save_is_removed(tmp_path, pairs_file, run_config):
    out = tmp_path / "out"
    stale = out / ".checkpoint-000005.tmp"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half written")
    config = run_config(pairs_file(16), max_steps=1)
    assert engine("train", "--config", str(config)) == EXIT_OK
    assert leftovers(out) == [] and [s for s, _ in list_checkpoints(out)] == [1]
