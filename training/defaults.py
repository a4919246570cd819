"""Run form defaults fitted to the chosen snapshot and starting model.

A fixed default does not suit every data set: 16 pairs a step and 10 warm-up steps leave a
40-pair snapshot with three steps, all of them warm-up, and a maximum length of 512 cuts long
pairs. The run form starts from values measured on the snapshot instead; the user can change
every one of them, and training.params still checks whatever is submitted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from core.artifacts import get_store
from labeling.models import Snapshot
from labeling.ranking_snapshots import is_listwise
from labeling.snapshots import snapshot_key
from training.models import Checkpoint
from training.params import RUN_PARAMS_BY_NAME

SAMPLE_ROWS = 2_000  # rows read to measure lengths; enough to find the long tail
MIN_STEPS = 24  # a first run long enough that its charts show a trend
MAX_EPOCHS = 10
WARMUP_SHARE = 0.1  # warm-up is a tenth of the run, never most of it
LENGTH_MARGIN = 32  # special tokens and the chat template's role markers
LENGTH_STEP = 64
# The default learning rate suits a 7B model (hidden size 4096). Narrower models take larger
# steps: (4096 / width) ** 1.5 times the default, capped at 3e-3, so a 768-wide model starts
# at 6.2e-5, the demo's 128-wide model at 9.1e-4 and the tests' 64-wide tiny model at 2.6e-3.
# On the tiny-model loop (tests/evaluation/test_evaluation_loop.py) Adam's plain 1 / width
# rule (3.2e-4) left the held-out win-rate at 0.58 [0.50, 0.66], and 1e-3 at 0.76 in one run
# and 0.55 [0.49, 0.62] in another; 2.6e-3 learns the rule clearly (README, The loop).
REFERENCE_WIDTH = 4096
WIDTH_EXPONENT = 1.5
LEARNING_RATE_CAP = 3e-3


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):  # chat messages
        return sum(_text_bytes(message.get("content", "")) + 8 for message in value)
    return 0


def measured_lengths(snapshot: Snapshot) -> list[int] | None:
    """Per row (the first SAMPLE_ROWS), the prompt plus its longer response in UTF-8 bytes.

    Bytes bound tokens from above for byte-level and BPE tokenizers alike (a token covers at
    least one byte), so a maximum length of this many tokens truncates no measured pair.
    """
    lengths = []
    try:
        with get_store().open(snapshot_key(snapshot)) as data:
            for index, line in enumerate(data):
                if index >= SAMPLE_ROWS:
                    break
                row = json.loads(line)
                # a ranking snapshot's row holds K responses; the longest decides, as for a pair
                answers = row.get("responses") or [row.get("chosen"), row.get("rejected")]
                response = max(_text_bytes(answer) for answer in answers)
                lengths.append(_text_bytes(row.get("prompt")) + response)
    except (OSError, ValueError):
        return None
    return lengths or None


def measured_length(snapshot: Snapshot) -> int | None:
    """The longest measured pair (measured_lengths), or None when it cannot be read."""
    lengths = measured_lengths(snapshot)
    return max(lengths) if lengths else None


def describe_truncation(snapshot: Snapshot, max_length: int) -> tuple[str, bool]:
    """How many measured pairs are longer than max_length (in bytes, which bound tokens from
    above, so this counts the pairs that may be cut), and whether any are."""
    lengths = measured_lengths(snapshot)
    if not lengths:
        return "", False
    over = sum(length + LENGTH_MARGIN > max_length for length in lengths)
    scope = f"{len(lengths):,} measured pairs" + (
        f" (the first {SAMPLE_ROWS:,})" if len(lengths) >= SAMPLE_ROWS else ""
    )
    if not over:
        return f"At maximum length {max_length:,}, none of the {scope} is truncated.", False
    return (
        f"At maximum length {max_length:,}, up to {over:,} of the {scope} may be truncated "
        f"(their prompt and longer response take more than {max_length - LENGTH_MARGIN:,} bytes; "
        f"the longest takes {max(lengths):,}). Truncated pairs teach little: raise the maximum "
        "length or accept the loss.",
        True,
    )


def _model_config(checkpoint: Checkpoint | None) -> dict[str, Any]:
    """A local checkpoint's config.json, or {} when there is none to read."""
    if checkpoint is None:
        return {}
    path = Path(checkpoint.path)
    if not path.is_absolute():
        local = get_store().local_path(checkpoint.path)
        if local is None:
            return {}
        path = local
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _positive_int(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def suggested_run_values(snapshot: Snapshot, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """Batch size, epochs, warm-up and maximum length for a first run on this snapshot."""
    params = RUN_PARAMS_BY_NAME
    rows = snapshot.row_count or 0
    eval_share = params["eval_fraction"].default
    train_rows = max(1, math.floor(rows * (1 - eval_share)))
    batch = params["batch_size"].default
    # Small snapshots: smaller batches first (down to 4), then more passes over the data.
    while batch > 4 and math.ceil(train_rows / batch) < MIN_STEPS:
        batch //= 2
    steps_per_epoch = math.ceil(train_rows / batch)
    epochs = max(1, min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch)))
    total_steps = steps_per_epoch * epochs
    values: dict[str, Any] = {
        "batch_size": batch,
        "micro_batch_size": min(params["micro_batch_size"].default, batch),
        "epochs": epochs,
        "warmup_steps": max(1, round(WARMUP_SHARE * total_steps)),
    }
    if is_listwise(snapshot.policy):
        values["loss_type"] = "plackett_luce"  # the only loss a listwise snapshot trains with
    config = _model_config(checkpoint)
    width = _positive_int(config, "hidden_size")
    if width is not None and width < REFERENCE_WIDTH:
        scaled = params["learning_rate"].default * (REFERENCE_WIDTH / width) ** WIDTH_EXPONENT
        values["learning_rate"] = float(f"{min(scaled, LEARNING_RATE_CAP):.2g}")
    length = measured_length(snapshot)
    if length is not None:
        fitted = math.ceil((length + LENGTH_MARGIN) / LENGTH_STEP) * LENGTH_STEP
        fitted = max(fitted, params["max_length"].default)
        positions = _positive_int(config, "max_position_embeddings")
        if positions is not None:
            fitted = min(fitted, positions)
        values["max_length"] = min(fitted, int(params["max_length"].maximum or fitted))
    return values


def describe(snapshot: Snapshot, values: dict[str, Any]) -> str:
    steps = "about {:,} steps".format(
        values["epochs"]
        * math.ceil(
            max(1, (snapshot.row_count or 0) * (1 - RUN_PARAMS_BY_NAME["eval_fraction"].default))
            / values["batch_size"]
        )
    )
    length = (
        f", maximum length {values['max_length']:,} to fit its longest pair"
        if "max_length" in values
        else ""
    )
    rate = (
        f" Learning rate {values['learning_rate']:g}, scaled to the model's width."
        if "learning_rate" in values
        else ""
    )
    return (
        f"Defaults fitted to snapshot {snapshot.pk} ({snapshot.row_count or 0:,} rows): "
        f"{values['batch_size']} pairs a step over {values['epochs']} "
        f"epoch{'s' if values['epochs'] != 1 else ''} ({steps}), "
        f"{values['warmup_steps']} warm-up steps{length}.{rate}"
    )


# --- label smoothing from measured agreement (quality control; kept apart from the rest) ---
SMOOTHING_CAP = 0.3  # never suggest more: past this the labels are too noisy to train on


def _flip_rate(percent_agreement: float) -> float:
    """The per-vote flip probability e that explains an agreement a between two votes when
    each is wrong independently with probability e: a = (1 - e)^2 + e^2, so
    e = (1 - sqrt(2a - 1)) / 2 (0.5 at chance agreement or below)."""
    return (1.0 - math.sqrt(max(0.0, 2.0 * percent_agreement - 1.0))) / 2.0


def _majority_flip(e: float, k: int) -> float:
    """The probability that a strict majority of k independent votes, each wrong with
    probability e, is wrong (a tied split is exported by no policy, so it is left out)."""
    wrong = sum(math.comb(k, j) * e**j * (1 - e) ** (k - j) for j in range(k // 2 + 1, k + 1))
    right = sum(math.comb(k, j) * (1 - e) ** j * e ** (k - j) for j in range(k // 2 + 1, k + 1))
    return wrong / (wrong + right) if wrong + right > 0 else e


def suggested_label_smoothing(snapshot: Snapshot) -> tuple[float, str] | None:
    """Conservative DPO's eps (the probability that a label is flipped) for this snapshot,
    from the project's newest quality report, and the sentence that says how; None when
    there is no report or no agreement to measure (docs/quality.md, "Label smoothing").

    every_vote: the per-vote flip rate e from the percent agreement of the snapshot's round
    (or the project). majority and reliability_weighted: the chance that the majority of the
    typical number of votes per comparison is wrong, under the same e. Percent agreement
    counts ties and both-bad as choices, so e errs on the high (conservative) side."""
    from labeling.models import RANKING_POLICIES, SnapshotPolicy
    from labeling.quality.jobs import latest_report

    # Rankings: the report's agreement is of pair votes, and plackett_luce takes no smoothing.
    if snapshot.policy == SnapshotPolicy.RAW_VOTES or snapshot.policy in RANKING_POLICIES:
        return None
    report = latest_report(snapshot.project)
    if report is None or not report.data.get("votes"):
        return None
    rounds = (snapshot.filters or {}).get("rounds") or []
    section = report.data["project"]
    where = "the project"
    if len(rounds) == 1 and str(rounds[0]) in report.data.get("rounds", {}):
        section = report.data["rounds"][str(rounds[0])]
        where = f"round {rounds[0]}"
    agreement = section["agreement"]["percent_agreement"]
    if agreement is None:
        return None
    e = _flip_rate(agreement)
    how = f"a per-vote flip rate of {e:.3f}"
    if snapshot.policy != SnapshotPolicy.EVERY_VOTE:
        sizes = {int(k): v for k, v in section["agreement"]["votes_per_comparison"].items()}
        k = max(sizes, key=lambda size: (sizes[size], size))
        e = _majority_flip(e, k)
        how += f", {e:.3f} for a majority of {k} votes"
    eps = round(min(e, SMOOTHING_CAP), 3)
    return eps, (
        f"Label smoothing {eps:g} from the measured agreement: {agreement:.1%} of vote pairs "
        f"agree in {where} (quality report {report.pk}), {how}."
    )
