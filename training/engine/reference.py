"""The reference pass that the pair and the ranking objectives share: which model scores the
reference log-probs, and the train/eval lists once those are known."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from .config import DPOConfig
from .logprobs import check_supported
from .modeling import load_causal_lm
from .session import Session

Example = TypeVar("Example")
Compute = Callable[[Any, Session], None]


def score_with_separate_reference(config: DPOConfig, session: Session, compute: Compute) -> None:
    """Load the reference apart and score with it when it is not the policy's starting weights:
    a distinct reference model, or the starting weights when resuming a full fine-tune."""
    separate = config.reference_model is not None or (
        session.resume_from is not None and not config.lora
    )
    if not separate:
        return
    # every process loads the reference and scores its share of the rows
    reference = load_causal_lm(config.reference_model or config.model, config.trust_remote_code)
    check_supported(reference)
    reference.to(session.device)
    compute(reference, session)
    del reference  # the reference is never in memory while the policy trains
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_with_starting_weights(config: DPOConfig, session: Session, compute: Compute) -> None:
    """Reference = the policy's starting weights (with LoRA: the adapter disabled)."""
    policy = session.policy
    if config.lora:
        with policy.disable_adapter():
            compute(policy, session)
    else:
        compute(policy, session)


def split_examples(
    sources: Sequence[Sequence[Any]],
    split: tuple[list[int], list[int]],
    with_ref: Callable[[int, int], Example],
) -> tuple[list[Example], list[Example]]:
    """The train and eval lists: train from the main file's split, eval from a second file
    when there is one, else from the main file's held-out indices. ``with_ref(source, i)``
    returns example i of source with its reference log-probs once known."""
    train_idx, eval_idx = split
    train = [with_ref(0, i) for i in train_idx]
    if len(sources) > 1:
        return train, [with_ref(1, i) for i in range(len(sources[1]))]
    return train, [with_ref(0, i) for i in eval_idx]
