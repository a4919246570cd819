"""The SFT objective: mean negative log-likelihood per response token over each step."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .config import SFTConfig
from .data import SFTExample, Tokenization, collate_sft, read_records, split_eval, tokenize_sft
from .session import Session


class SFTObjective:
    command = "sft"
    unit = "examples"

    def __init__(self, config: SFTConfig) -> None:
        self.config = config
        self.train: list[SFTExample] = []
        self.eval: list[SFTExample] = []
        self.truncated = 0
        self.pad_id = 0

    def prepare(self, config: SFTConfig, tokenizer: Any) -> None:
        self.pad_id = tokenizer.pad_token_id
        tokenization = Tokenization(tokenizer, config.max_length, config.max_prompt_length)
        examples = tokenize_sft(read_records(config.data), tokenization)
        if config.eval_data:
            self.train = examples
            self.eval = tokenize_sft(read_records(config.eval_data), tokenization)
        else:
            train_idx, eval_idx = split_eval(len(examples), config.eval_fraction, config.seed)
            self.train = [examples[i] for i in train_idx]
            self.eval = [examples[i] for i in eval_idx]
        self.truncated = sum(e.truncated for e in [*self.train, *self.eval])

    def before_policy(self, session: Session) -> None:
        return None

    def after_policy(self, session: Session) -> None:
        return None

    def denominator(self, examples: Sequence[SFTExample]) -> float:
        return float(sum(len(e.response_ids) for e in examples))

    def forward(
        self,
        model: torch.nn.Module,
        examples: Sequence[SFTExample],
        denominator: float,
        session: Session,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = session.to_device(collate_sft(examples, self.pad_id))
        logps, counts = model(**batch)
        nll = -logps.sum()
        stats = {
            "examples": torch.tensor(float(len(examples)), device=logps.device),
            "nll": nll.detach(),
            "response_tokens": counts.sum().float(),
            "tokens": batch["attention_mask"].sum().float(),
        }
        return nll / denominator, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["nll"] / max(sums.get("response_tokens", 0.0), 1.0)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "examples": sums.get("examples", 0.0),
            "response_tokens": sums.get("response_tokens", 0.0),
        }
