"""A reliability-weighted snapshot, as PrefLab exports it, feeds the engine its pair weights:
the engine reads `weight` and ignores the other quality columns (`p_chosen`, `adjudicated`)."""

from __future__ import annotations

import json

import pytest

from training.engine.data import Tokenization, read_records, tokenize_pairs


@pytest.mark.django_db
def test_the_engine_reads_the_weights_of_a_reliability_weighted_snapshot(
    tokenizer, make_project, settings, tmp_path
):
    from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file
    from tests.labeling.quality.db_crowd import seed_crowd

    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    crowd = seed_crowd(make_project, "Weights", pairs=20)
    snapshot = build_snapshot(request_snapshot(crowd.project, "reliability_weighted").pk)
    assert snapshot is not None and snapshot.row_count
    path = snapshot_file(snapshot)
    exported = [json.loads(line)["weight"] for line in path.read_text().splitlines()]
    examples = tokenize_pairs(read_records(path), Tokenization(tokenizer, 256, 128))
    assert [e.weight for e in examples] == pytest.approx(exported, abs=1e-12)
    assert min(exported) < 1.0  # the random voter's both-bad votes leave some doubt
