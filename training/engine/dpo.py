"""The DPO objective: data, the reference pass and its cache, and the per-batch loss."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from .config import DPOConfig
from .data import (
    DataError,
    PairExample,
    Tokenization,
    collate_pairs,
    file_sha256,
    micro_batches,
    read_records,
    split_eval,
    tokenize_pairs,
)
from .logprobs import SequenceLogps
from .losses import LossSpec, PairLogps, combine
from .refcache import ReferenceCache, cache_key, model_fingerprint, tokenizer_fingerprint
from .reference import score_with_separate_reference, score_with_starting_weights, split_examples
from .session import Cancelled, Session

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Source:
    """One input file and its tokenised pairs (the reference cache is per file)."""

    path: str
    examples: list[PairExample]
    sha256: str = ""  # of the file's bytes: the snapshot hash in the reference-cache key
    reference: torch.Tensor | None = None  # [n, 2] float32: chosen, rejected
    cache_key: str = ""  # the reference-cache key (training.engine.refcache), once computed


class DPOObjective:
    command = "train"
    unit = "pairs"

    def __init__(self, config: DPOConfig) -> None:
        self.config = config
        self.train: list[PairExample] = []
        self.eval: list[PairExample] = []
        self.truncated = 0
        self.pad_id = 0
        self._sources: list[_Source] = []
        self._split: tuple[list[int], list[int]] = ([], [])
        self._tokenization: Tokenization | None = None
        self._tokenizer_sha256 = ""
        self.loss_spec = LossSpec(
            config.loss_types,
            config.loss_weight_values,
            config.beta,
            config.label_smoothing,
            config.simpo_gamma,
        )
        # the current step's weighted chosen tokens per unit of pair weight (see denominator)
        self._tokens_per_weight = 1.0
        # micro-batches the reference model ran on, this process (0 when the cache was hit)
        self.reference_forwards = 0

    # -- data -----------------------------------------------------------------------------------

    def prepare(self, config: DPOConfig, tokenizer: Any) -> None:
        self.pad_id = tokenizer.pad_token_id
        self._tokenization = Tokenization(tokenizer, config.max_length, config.max_prompt_length)
        self._tokenizer_sha256 = tokenizer_fingerprint(tokenizer)
        main = _Source(
            config.data,
            tokenize_pairs(read_records(config.data), self._tokenization, config.use_pair_weights),
            file_sha256(config.data),
        )
        self._sources = [main]
        if config.eval_data:
            other = _Source(
                config.eval_data,
                tokenize_pairs(
                    read_records(config.eval_data), self._tokenization, config.use_pair_weights
                ),
                file_sha256(config.eval_data),
            )
            self._sources.append(other)
            self._split = (list(range(len(main.examples))), [])
        else:
            self._split = split_eval(len(main.examples), config.eval_fraction, config.seed)
        self._assemble()
        if not any(e.weight > 0 for e in self.train):
            raise DataError(
                f"{config.data}: every training pair has 'weight' 0, so nothing would be trained"
            )
        self.truncated = sum(e.truncated for s in self._sources for e in s.examples)
        if self.truncated:
            logger.warning("%d pairs exceeded max_length and were truncated", self.truncated)

    def _assemble(self) -> None:
        """(Re)build the train and eval lists, with reference log-probs once known."""

        def with_ref(k: int, i: int) -> PairExample:
            source = self._sources[k]
            e = source.examples[i]
            if source.reference is None:
                return e
            chosen, rejected = source.reference[i].tolist()
            return dataclasses.replace(e, ref_chosen=chosen, ref_rejected=rejected)

        sources = [source.examples for source in self._sources]
        self.train, self.eval = split_examples(sources, self._split, with_ref)

    # -- the reference pass ---------------------------------------------------------------------

    def _cache_keys(self, session: Session) -> None:
        config = self.config
        if self._tokenization is None:
            raise RuntimeError("prepare() must run before the reference cache is used")
        reference = model_fingerprint(config.reference_model or config.model, config.cache_path)
        for source in self._sources:
            source.cache_key = cache_key(
                data_sha256=source.sha256,
                rows=len(source.examples),
                reference=reference,
                tokenizer_sha256=self._tokenizer_sha256,
                tokenization=self._tokenization.settings(),
                precision=session.precision,
            )

    def before_policy(self, session: Session) -> None:
        """Load cached reference log-probs, or compute them with a separately loaded reference
        (a distinct reference model, or the starting weights when resuming a full fine-tune).

        On a cache hit for every data file no reference model is loaded and no reference forward
        runs; ``reference_forwards`` stays 0 and the log says which entry was used.
        """
        config = self.config
        if not config.uses_reference:
            return
        t0 = time.perf_counter()
        self._cache_keys(session)
        cache = ReferenceCache(config.cache_path)
        for source in self._sources:
            source.reference = cache.load(source.cache_key, len(source.examples))
            if source.reference is not None and session.accelerator.is_main_process:
                logger.info(
                    "reference log-probs loaded from cache %s (%s)", source.cache_key, source.path
                )
        hits = [s.cache_key for s in self._sources if s.reference is not None]
        if len(hits) == len(self._sources):
            seconds = time.perf_counter() - t0
            session.timings["reference_seconds"] = seconds
            session.writer.write(
                "reference",
                cached=True,
                cache_keys=hits,
                forwards=0,
                seconds=seconds,
                pairs=sum(len(s.examples) for s in self._sources),
            )
            self._assemble()
            return
        score_with_separate_reference(config, session, self._compute)

    def after_policy(self, session: Session) -> None:
        if not self.config.uses_reference or all(s.reference is not None for s in self._sources):
            return
        score_with_starting_weights(self.config, session, self._compute)

    def _compute(self, model: Any, session: Session) -> None:
        """Score the rows not found in the cache; each process takes every ``world``-th row of
        the length-sorted order and a sum over processes assembles the table (exact: every row
        is non-zero on one process only). The main process writes the cache entries."""
        config = self.config
        accelerator = session.accelerator
        t0 = time.perf_counter()
        pending = [s for s in self._sources if s.reference is None]
        wrapper = SequenceLogps(model, config.logprob_chunk_size, padding_free=config.padding_free)
        was_training = model.training
        model.eval()
        cache = ReferenceCache(config.cache_path)
        for source in pending:
            table = self._reference_logps(wrapper, source.examples, session)
            if accelerator.num_processes > 1:
                table = accelerator.reduce(table.to(session.device), reduction="sum").cpu()
            source.reference = table
            if accelerator.is_main_process:
                cache.store(source.cache_key, table)
        model.train(was_training)
        forwards = torch.tensor([float(self.reference_forwards)], device=session.device)
        if accelerator.num_processes > 1:  # also the barrier before anyone trains
            forwards = accelerator.reduce(forwards, reduction="sum")
        seconds = time.perf_counter() - t0
        session.timings["reference_seconds"] = seconds
        session.writer.write(
            "reference",
            cached=False,
            cache_keys=[s.cache_key for s in pending],
            forwards=int(forwards.item()),  # over all processes
            processes=accelerator.num_processes,
            seconds=seconds,
            pairs=sum(len(s.examples) for s in pending),
        )
        self._assemble()

    def _reference_logps(
        self, wrapper: SequenceLogps, examples: Sequence[PairExample], session: Session
    ) -> torch.Tensor:
        """This process's share of the ``[n, 2]`` table (other processes' rows stay 0)."""
        accelerator = session.accelerator
        out = torch.zeros(len(examples), 2, dtype=torch.float32)
        lengths = [e.length for e in examples]
        with torch.no_grad(), session.autocast():
            # no activations are kept for backward, so twice the training micro-batch fits
            size = 2 * self.config.micro_batch_size
            batches = micro_batches(
                range(len(examples)),
                lengths,
                size,
                accelerator.process_index,
                accelerator.num_processes,
            )
            for batch in batches:
                if session.stop.requested:
                    session.writer.write("cancelled", step=0, checkpoint=None)
                    raise Cancelled(0, None)
                k = len(batch)
                tensors = session.to_device(
                    collate_pairs([examples[i] for i in batch], self.pad_id)
                )
                logps, _counts = wrapper(**tensors)
                self.reference_forwards += 1
                logps = logps.float().cpu()
                out[batch, 0] = logps[:k]
                out[batch, 1] = logps[k:]
        return out

    # -- the loss -------------------------------------------------------------------------------

    def denominator(self, examples: Sequence[PairExample]) -> float:
        """The step's summed pair weights (its pair count when there are no weights).

        The loss is ``sum_i w_i L_i / sum_i w_i`` over the whole step, plus, for ``sft``, the
        weighted chosen-token NLL over the step's weighted chosen tokens: so the step's token
        total is recorded here too (the loop calls this once per step, before its forwards).
        A step whose pairs all weigh 0 gets denominator 1: its loss and gradient are 0.
        """
        weights = sum(e.weight for e in examples)
        tokens = sum(e.weight * len(e.chosen_ids) for e in examples)
        if weights <= 0:
            self._tokens_per_weight = 1.0
            return 1.0
        self._tokens_per_weight = tokens / weights
        return float(weights)

    def forward(
        self,
        model: torch.nn.Module,
        examples: Sequence[PairExample],
        denominator: float,
        session: Session,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        k = len(examples)
        batch = session.to_device(collate_pairs(examples, self.pad_id))
        logps, counts = model(**batch)  # one pass: rows 0..k-1 chosen, k..2k-1 rejected
        policy_chosen, policy_rejected = logps[:k], logps[k:]
        ref_chosen = ref_rejected = None
        if config.uses_reference:
            ref = torch.tensor(
                [[e.ref_chosen, e.ref_rejected] for e in examples], dtype=torch.float32
            ).to(session.device)
            ref_chosen, ref_rejected = ref[:, 0], ref[:, 1]
        counts = counts.to(logps.dtype)
        combined = combine(
            PairLogps(
                policy_chosen, policy_rejected, counts[:k], counts[k:], ref_chosen, ref_rejected
            ),
            self.loss_spec,
        )
        chosen_rewards, rejected_rewards = combined.chosen_rewards, combined.rejected_rewards
        weights = torch.tensor([e.weight for e in examples], dtype=logps.dtype).to(logps.device)
        pair_sum = (weights * combined.pair).sum()
        token_sum = (weights * combined.token).sum()
        # losses.batch_loss over the whole step: each sum over the step's denominator
        loss = pair_sum / denominator + token_sum / (denominator * self._tokens_per_weight)
        stats = {
            "pairs": torch.tensor(float(k), device=logps.device),
            "weight": weights.sum(),
            "loss": pair_sum.detach(),
            "sft_nll": token_sum.detach(),
            "sft_tokens": (weights * counts[:k]).sum(),
            "correct": (chosen_rewards > rejected_rewards).float().sum(),
            "margin": (chosen_rewards - rejected_rewards).sum(),
            "chosen_reward": chosen_rewards.sum(),
            "rejected_reward": rejected_rewards.sum(),
            "chosen_logps": policy_chosen.detach().sum(),
            "rejected_logps": policy_rejected.detach().sum(),
            "tokens": batch["attention_mask"].sum().float(),
        }
        return loss, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Means over the pairs; the loss is the weighted mean (with sft's token mean added)."""
        n = max(sums.get("pairs", 0.0), 1.0)
        weight, tokens = sums.get("weight", 0.0), sums.get("sft_tokens", 0.0)
        loss = sums["loss"] / weight if weight > 0 else 0.0
        if tokens > 0:
            loss += sums.get("sft_nll", 0.0) / tokens
        return {
            "loss": loss,
            "reward_accuracy": sums["correct"] / n,
            "reward_margin": sums["margin"] / n,
            "chosen_reward": sums["chosen_reward"] / n,
            "rejected_reward": sums["rejected_reward"] / n,
            "chosen_logps": sums["chosen_logps"] / n,
            "rejected_logps": sums["rejected_logps"] / n,
            "pairs": sums.get("pairs", 0.0),
        }
