"""Parity with TRL 1.16 for every loss both offer: 20 optimizer steps on the tiny model, the data
in file order on both sides, per-step losses within 1e-5.

TRL's DPOTrainer runs the reference forward inside every step; the engine runs it once, before
training: the two agree to float32 rounding. SimPO is compared with TRL's CPOTrainer
(``loss_type="simpo"``, ``cpo_alpha=0``). TRL is a test dependency (the ``dev`` extra); without
it these tests are skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from training.engine import EXIT_OK

from .conftest import engine, events, synthetic_pairs, write_jsonl

trl = pytest.importorskip("trl", minversion="1.16.0")

STEPS = 20
PAIRS = 8  # 2 steps per epoch, so 20 steps also cross 9 epoch boundaries
BATCH = 4
LR = 3e-4

# TRL name -> (engine config, TRL DPOConfig settings): the same loss in both vocabularies. The
# bound is absolute, and ipo and sppo_hard are of the order of 1/beta^2 (25 and 50 at the default
# beta 0.1), where float32 rounding of the summed log-probs alone moves them by ~1e-5: they run at
# a larger beta (sppo_hard, whose steps also amplify that rounding, at a smaller learning rate).
DPO_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sigmoid": ({"loss_type": "sigmoid"}, {"loss_type": ["sigmoid"]}),
    "robust": (
        {"loss_type": "robust", "label_smoothing": 0.1},
        {"loss_type": ["robust"], "label_smoothing": 0.1},
    ),
    "hinge": ({"loss_type": "hinge"}, {"loss_type": ["hinge"]}),
    "ipo": ({"loss_type": "ipo", "beta": 0.5}, {"loss_type": ["ipo"], "beta": 0.5}),
    "sigmoid_norm": ({"loss_type": "sigmoid_norm"}, {"loss_type": ["sigmoid_norm"]}),
    "nca_pair": ({"loss_type": "nca_pair"}, {"loss_type": ["nca_pair"]}),
    "bco_pair": ({"loss_type": "bco_pair"}, {"loss_type": ["bco_pair"]}),
    "sppo_hard": (
        {"loss_type": "sppo_hard", "beta": 2.0, "learning_rate": 1e-4},
        {"loss_type": ["sppo_hard"], "beta": 2.0, "learning_rate": 1e-4},
    ),
    "apo_zero": ({"loss_type": "apo_zero"}, {"loss_type": ["apo_zero"]}),
    "apo_down": ({"loss_type": "apo_down"}, {"loss_type": ["apo_down"]}),
    "exo_pair": (
        {"loss_type": "exo_pair", "label_smoothing": 1e-3},
        {"loss_type": ["exo_pair"], "label_smoothing": 1e-3},
    ),
    "rpo": (  # sigmoid + the NLL of the chosen replies, weighted
        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]},
        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]},
    ),
}


@pytest.fixture(scope="module")
def parity_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    rows = synthetic_pairs(PAIRS, seed=11)
    return write_jsonl(tmp_path_factory.mktemp("parity") / "pairs.jsonl", rows), rows


def ours(tmp_path: Path, data: Path, run_config: Any, **settings: Any) -> list[float]:
    values = {
        "batch_size": BATCH,
        "micro_batch_size": BATCH,
        "max_steps": STEPS,
        "learning_rate": LR,
        "lr_schedule": "constant",
        "warmup_steps": 0,
        "beta": 0.1,
        "shuffle": False,
        "divergence_factor": None,
        **settings,
    }
    assert engine("train", "--config", str(run_config(data, **values))) == EXIT_OK
    return [e["loss"] for e in events(tmp_path / "out" / "metrics.jsonl", "train")]


def trl_arguments(out: Path) -> dict[str, Any]:
    """The engine's settings above in Hugging Face Trainer terms."""
    return {
        "output_dir": str(out),
        "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": 1,
        "max_steps": STEPS,
        "learning_rate": LR,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "train_sampling_strategy": "sequential",  # the file's order, as shuffle: false
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "disable_tqdm": True,
        "gradient_checkpointing": False,  # TRL 1.16's default is on: same numbers, slower
        "seed": 0,
    }


def trl_losses(trainer: Any) -> list[float]:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    trainer.train()
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DPO_CASES))
def test_per_step_losses_equal_trl_dpo_trainer(case, tmp_path, tiny_model, parity_data, run_config):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    data, rows = parity_data
    our_settings, trl_settings = DPO_CASES[case]
    mine = ours(tmp_path, data, run_config, **our_settings)

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype="float32")
    args = DPOConfig(
        **{
            **trl_arguments(tmp_path / "trl"),
            "beta": 0.1,
            "max_length": 128,
            "precompute_ref_log_probs": True,  # like the engine: one reference pass first
            **trl_settings,
        }
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    theirs = trl_losses(trainer)

    assert len(mine) == len(theirs) == STEPS
    assert mine == pytest.approx(theirs, abs=1e-5, rel=0), case
    assert abs(mine[-1] - mine[0]) > 1e-3  # the runs trained


@pytest.mark.slow
def test_simpo_per_step_losses_equal_trl_cpo_trainer(tmp_path, tiny_model, parity_data, run_config):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    data, rows = parity_data
    beta, gamma = 2.0, 0.5
    mine = ours(tmp_path, data, run_config, beta=beta, loss_type="simpo", simpo_gamma=gamma)

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype="float32")
    args = CPOConfig(
        **trl_arguments(tmp_path / "trl"),
        beta=beta,
        loss_type="simpo",
        cpo_alpha=0.0,
        simpo_gamma=gamma,
        max_length=128,
    )
    trainer = CPOTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    theirs = trl_losses(trainer)

    assert len(mine) == len(theirs) == STEPS
    assert mine == pytest.approx(theirs, abs=1e-5, rel=0)
    assert abs(mine[-1] - mine[0]) > 1e-3
