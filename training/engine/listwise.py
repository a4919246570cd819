"""Listwise DPO: the Plackett-Luce loss over K ranked responses, its data and its objective.

``loss_type: plackett_luce`` trains on rows ``{"prompt": ..., "responses": [K responses],
"ranking": [...]}`` (``training.engine.rankings`` defines the ranking format, ties included).
With implicit rewards ``u_i = beta * (log pi(y_i|x) - log pi_ref(y_i|x))`` (summed response
log-probs as for pairs; ``log pi_ref`` taken as 0 in reference-free mode) and a ranking into
groups ``G_1 > G_2 > ... > G_m`` (a group of one response is an untied position), the loss of
one ranking is the negative log-probability of the ordered partition under Plackett-Luce with
the order inside each tie group unobserved::

    L = -sum_{g=1}^{m-1} log P(G_g is drawn first, in any order, from R_g)
    R_g = G_g u G_{g+1} u ... u G_m
    P(S first from R) = sum over orders (i_1..i_s) of S of
                        prod_t exp(u_{i_t}) / sum_{j in R minus {i_1..i_{t-1}}} exp(u_j)

Without ties every group is one response and this is the DPO paper's Plackett-Luce loss
(appendix A.3), ``-sum_k log(exp(u_tau(k)) / sum_{j>=k} exp(u_tau(j)))``; for K = 2 it is
``-log sigmoid(u_w - u_l)``, the sigmoid DPO loss. The sum over a group's orders is computed
exactly by a recursion over its subsets (2^|G| terms, |G| <= 8), in log space.

A batch row is one ranking; its K responses are K sequences of one concatenated forward, the
same machinery as the chosen and rejected halves of pairs. The reference cache stores
``[rows, 2]`` pair tables, so it is not used in listwise mode (the log says so); the reference
pass runs in every listwise run that uses a reference.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .config import DPOConfig
from .data import (
    DataError,
    Record,
    Tokenization,
    _check_field,
    _check_weight,
    collate_sequences,
    micro_batches,
    read_records,
    split_eval,
)
from .logprobs import SequenceLogps
from .rankings import (
    MAX_RESPONSES,
    MIN_RESPONSES,
    Groups,
    PairPolicy,
    RankingError,
    implied_pairs,
    parse_ranking,
)
from .reference import score_with_separate_reference, score_with_starting_weights, split_examples
from .session import Cancelled, Session

logger = logging.getLogger(__name__)

LISTWISE_COLUMNS = ("prompt", "responses", "ranking")


# ----------------------------------------------------------------------------------------------
# the loss


def _group_log_prob(u: torch.Tensor, group: Sequence[int], later: Sequence[int]) -> torch.Tensor:
    """``log P(group is drawn first, in any order, from group + later)`` under Plackett-Luce
    with scores ``u`` (a 1-D tensor); ``later`` is non-empty or the value is 0."""
    if len(group) == 1:
        i = group[0]
        return u[i] - torch.logsumexp(u[[i, *later]], dim=0)
    m = len(group)
    log_f: dict[int, torch.Tensor] = {0: u.new_zeros(())}  # subset (bitmask) -> log f
    for mask in range(1, 1 << m):
        parts = []
        for b in range(m):
            if not mask >> b & 1:
                continue
            before = mask ^ (1 << b)  # the members drawn before group[b]
            left = [group[c] for c in range(m) if not before >> c & 1]
            parts.append(log_f[before] + u[group[b]] - torch.logsumexp(u[[*left, *later]], dim=0))
        log_f[mask] = torch.logsumexp(torch.stack(parts), dim=0)
    return log_f[(1 << m) - 1]


def plackett_luce_nll(u: torch.Tensor, groups: Groups) -> torch.Tensor:
    """The loss of one ranking: ``-log P(groups)`` for scores ``u`` of shape [K] (see the
    module docstring). The last group's term is 0 and is skipped."""
    total = u.new_zeros(())
    for g in range(len(groups) - 1):
        later = [i for h in groups[g + 1 :] for i in h]
        total = total - _group_log_prob(u, groups[g], later)
    return total


@dataclass(frozen=True)
class ListLogps:
    """One batch of rankings, flattened: ``policy`` [N] summed response log-probs of every row's
    responses in row order (row b holds ``sizes[b]`` of them), ``reference`` likewise or None
    (reference-free)."""

    policy: torch.Tensor
    sizes: tuple[int, ...]
    reference: torch.Tensor | None = None


def plackett_luce_loss(
    x: ListLogps, groups: Sequence[Groups], beta: float
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(losses [B], rewards)``: the per-ranking losses (differentiable) and each row's
    implicit rewards ``beta * (log pi - log pi_ref)``, shape [K_b], detached."""
    ratios = x.policy if x.reference is None else x.policy - x.reference.to(x.policy.dtype)
    u = beta * ratios
    if sum(x.sizes) != u.shape[0]:
        raise ValueError(f"sizes add up to {sum(x.sizes)}, but there are {u.shape[0]} log-probs")
    losses, rewards = [], []
    start = 0
    for size, row_groups in zip(x.sizes, groups, strict=True):
        row = u[start : start + size]
        losses.append(plackett_luce_nll(row, row_groups))
        rewards.append(row.detach())
        start += size
    return torch.stack(losses), rewards


# ----------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class RankingExample:
    index: int  # position in the file's list of valid rows
    prompt_ids: tuple[int, ...]
    response_ids: tuple[tuple[int, ...], ...]  # K responses, in the file's order
    groups: Groups  # the ranking, best group first
    truncated: bool
    reference: tuple[float, ...] | None = None  # per response, once the reference pass ran
    weight: float = 1.0

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(r) for r in self.response_ids)

    @property
    def k(self) -> int:
        return len(self.response_ids)


def check_ranking_row(record: Record) -> tuple[Any, list[Any], Groups]:
    """A listwise row's ``(prompt, responses, groups)``, validated (errors name the row)."""
    where, values = record.where, record.values
    for column in LISTWISE_COLUMNS:
        if column not in values:
            raise DataError(f"{where}: missing column '{column}'")
    prompt = _check_field(values["prompt"], where, "prompt")
    raw = values["responses"]
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'responses' must be a list, got {type(raw).__name__}")
    if not MIN_RESPONSES <= len(raw) <= MAX_RESPONSES:
        raise DataError(
            f"{where}: 'responses' holds {len(raw)} response(s); a ranking needs "
            f"{MIN_RESPONSES} to {MAX_RESPONSES}"
        )
    responses = [
        _check_field(r, where, f"responses[{i}]", allow_empty=True) for i, r in enumerate(raw)
    ]
    _no_duplicates(where, responses, "are identical")
    try:
        groups = parse_ranking(values["ranking"], len(responses))
    except RankingError as exc:
        raise DataError(f"{where}: {exc}") from exc
    return prompt, responses, groups


def rankings_to_pairs(src: str, dst: str, policy: PairPolicy) -> int:
    """Write the pairs every ranking of ``src`` implies under ``policy`` to ``dst`` (JSONL):
    ``prompt``, ``chosen``, ``rejected``, ``ranking_id`` (the row's ``id`` column when it has
    one, else its 1-based row number), ``chosen_position``, ``rejected_position``, and the
    row's ``weight`` when it has one. Every row is checked before anything is written; returns
    the number of pairs."""
    records = read_records(src)
    checked = [check_ranking_row(r) for r in records]
    out: list[dict[str, Any]] = []
    for number, (record, (prompt, responses, groups)) in enumerate(
        zip(records, checked, strict=True), start=1
    ):
        values = record.values
        if "weight" in values:
            _check_weight(values["weight"], record.where)
        ranking_id = values.get("id", number)
        for p in implied_pairs(groups, policy, ranking_id):
            row = {
                "prompt": prompt,
                "chosen": responses[p.chosen],
                "rejected": responses[p.rejected],
                "ranking_id": p.ranking_id,
                "chosen_position": p.chosen_position,
                "rejected_position": p.rejected_position,
            }
            if "weight" in values:
                row["weight"] = values["weight"]
            out.append(row)
    tmp = Path(f"{dst}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in out:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(dst)
    return len(out)


def tokenize_rankings(
    records: Sequence[Record], tokenization: Tokenization, weights: bool = True
) -> list[RankingExample]:
    """Validated, tokenised rankings; every error names the row (file: line N)."""
    examples: list[RankingExample] = []
    for record in records:
        where, values = record.where, record.values
        weight = 1.0
        if weights and "weight" in values:
            weight = _check_weight(values["weight"], where)
        prompt, responses, groups = check_ranking_row(record)
        prompt_ids, ids = tokenization.encode(where, prompt, responses)
        for i, r in enumerate(ids):
            if not r:
                raise DataError(
                    f"{where}: 'responses[{i}]' is empty and the tokenizer has no EOS token "
                    "to end it, so there is no token to learn from"
                )
        _no_duplicates(where, ids, "tokenise identically")
        prompt_ids, ids, truncated = tokenization.truncate(prompt_ids, ids)
        _no_duplicates(
            where,
            ids,
            f"are identical within max_length={tokenization.max_length} tokens "
            f"(prompt cut to {len(prompt_ids)}), so the ranking cannot fit",
        )
        examples.append(
            RankingExample(
                len(examples),
                tuple(prompt_ids),
                tuple(tuple(r) for r in ids),
                groups,
                truncated,
                weight=weight,
            )
        )
    return examples


def _no_duplicates(where: str, items: Sequence[Any], what: str) -> None:
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if items[i] == items[j]:
                raise DataError(f"{where}: responses {i} and {j} {what}")


def collate_rankings(examples: Sequence[RankingExample], pad_id: int) -> dict[str, torch.Tensor]:
    """One concatenated batch: each row's K responses in turn (row 0's, then row 1's, ...)."""
    prompts = [e.prompt_ids for e in examples for _ in e.response_ids]
    responses = [r for e in examples for r in e.response_ids]
    return collate_sequences(prompts, responses, pad_id)


# ----------------------------------------------------------------------------------------------
# the objective


@dataclass
class _Source:
    path: str
    examples: list[RankingExample]
    reference: torch.Tensor | None = None  # [n, MAX_RESPONSES] float32, zero-padded


class ListwiseObjective:
    """``train`` with ``loss_type: plackett_luce``: a step's batch is ``batch_size`` rankings."""

    command = "train"
    unit = "rankings"

    def __init__(self, config: DPOConfig) -> None:
        if not config.listwise:
            raise ValueError("ListwiseObjective needs loss_type plackett_luce")
        self.config = config
        self.train: list[RankingExample] = []
        self.eval: list[RankingExample] = []
        self.truncated = 0
        self.pad_id = 0
        self._sources: list[_Source] = []
        self._split: tuple[list[int], list[int]] = ([], [])
        self.reference_forwards = 0
        # the most responses of any ranking: compiled micro-batches are padded to this many
        # sequences per ranking (the loop reads it; pairs are 2)
        self.sequences_per_example = 2

    def prepare(self, config: DPOConfig, tokenizer: Any) -> None:
        self.pad_id = tokenizer.pad_token_id
        tokenization = Tokenization(tokenizer, config.max_length, config.max_prompt_length)
        weights = config.use_pair_weights
        main = _Source(
            config.data, tokenize_rankings(read_records(config.data), tokenization, weights)
        )
        self._sources = [main]
        if config.eval_data:
            other = _Source(
                config.eval_data,
                tokenize_rankings(read_records(config.eval_data), tokenization, weights),
            )
            self._sources.append(other)
            self._split = (list(range(len(main.examples))), [])
        else:
            self._split = split_eval(len(main.examples), config.eval_fraction, config.seed)
        self._assemble()
        self.sequences_per_example = max(e.k for s in self._sources for e in s.examples)
        if not any(e.weight > 0 for e in self.train):
            raise DataError(
                f"{config.data}: every training ranking has 'weight' 0, so nothing would be trained"
            )
        self.truncated = sum(e.truncated for s in self._sources for e in s.examples)
        if self.truncated:
            logger.warning("%d rankings exceeded max_length and were truncated", self.truncated)

    def _assemble(self) -> None:
        def with_ref(k: int, i: int) -> RankingExample:
            source = self._sources[k]
            e = source.examples[i]
            if source.reference is None:
                return e
            return replace(e, reference=tuple(source.reference[i, : e.k].tolist()))

        sources = [source.examples for source in self._sources]
        self.train, self.eval = split_examples(sources, self._split, with_ref)

    # -- the reference pass (no cache: its entries are pair tables) -----------------------------

    def before_policy(self, session: Session) -> None:
        config = self.config
        if not config.uses_reference:
            return
        if session.accelerator.is_main_process:
            logger.info(
                "listwise mode: the reference cache holds pair tables only, so it is not used; "
                "the reference log-probs of every ranking's responses are computed now"
            )
        score_with_separate_reference(config, session, self._compute)

    def after_policy(self, session: Session) -> None:
        if not self.config.uses_reference or all(s.reference is not None for s in self._sources):
            return
        score_with_starting_weights(self.config, session, self._compute)

    def _compute(self, model: Any, session: Session) -> None:
        config = self.config
        accelerator = session.accelerator
        t0 = time.perf_counter()
        wrapper = SequenceLogps(model, config.logprob_chunk_size, padding_free=config.padding_free)
        was_training = model.training
        model.eval()
        for source in self._sources:
            table = self._reference_logps(wrapper, source.examples, session)
            if accelerator.num_processes > 1:  # every row is non-zero on one process only
                table = accelerator.reduce(table.to(session.device), reduction="sum").cpu()
            source.reference = table
        model.train(was_training)
        forwards = torch.tensor([float(self.reference_forwards)], device=session.device)
        if accelerator.num_processes > 1:
            forwards = accelerator.reduce(forwards, reduction="sum")
        seconds = time.perf_counter() - t0
        session.timings["reference_seconds"] = seconds
        session.writer.write(
            "reference",
            cached=False,
            cache_keys=[],
            cache="not used in listwise mode (the cache holds pair tables)",
            forwards=int(forwards.item()),
            processes=accelerator.num_processes,
            seconds=seconds,
            rankings=sum(len(s.examples) for s in self._sources),
        )
        self._assemble()

    def _reference_logps(
        self, wrapper: SequenceLogps, examples: Sequence[RankingExample], session: Session
    ) -> torch.Tensor:
        accelerator = session.accelerator
        out = torch.zeros(len(examples), MAX_RESPONSES, dtype=torch.float32)
        lengths = [e.length for e in examples]
        with torch.no_grad(), session.autocast():
            batches = micro_batches(
                range(len(examples)),
                lengths,
                2 * self.config.micro_batch_size,
                accelerator.process_index,
                accelerator.num_processes,
            )
            for batch in batches:
                if session.stop.requested:
                    session.writer.write("cancelled", step=0, checkpoint=None)
                    raise Cancelled(0, None)
                rows = [examples[i] for i in batch]
                logps, _counts = wrapper(**session.to_device(collate_rankings(rows, self.pad_id)))
                self.reference_forwards += 1
                logps = logps.float().cpu()
                start = 0
                for i, e in zip(batch, rows, strict=True):
                    out[i, : e.k] = logps[start : start + e.k]
                    start += e.k
        return out

    # -- the loss -------------------------------------------------------------------------------

    def denominator(self, examples: Sequence[RankingExample]) -> float:
        """The step's summed ranking weights (1 when they are all 0: loss and gradient 0)."""
        weights = sum(e.weight for e in examples)
        return float(weights) if weights > 0 else 1.0

    def forward(
        self,
        model: torch.nn.Module,
        examples: Sequence[RankingExample],
        denominator: float,
        session: Session,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        batch = session.to_device(collate_rankings(examples, self.pad_id))
        logps, _counts = model(**batch)
        reference = None
        if config.uses_reference:
            reference = torch.tensor(
                [v for e in examples for v in (e.reference or ())], dtype=torch.float32
            ).to(logps.device)
        sizes = tuple(e.k for e in examples)
        losses, rewards = plackett_luce_loss(
            ListLogps(logps, sizes, reference), [e.groups for e in examples], config.beta
        )
        weights = torch.tensor([e.weight for e in examples], dtype=losses.dtype).to(losses.device)
        loss_sum = (weights * losses).sum()
        # the metrics on the device, without a host sync: one flat vector of every reward and
        # index lists (built on the host from the rankings alone) into it
        u = torch.cat(rewards).float()
        chosen, rejected, first, last, rest = [], [], [], [], []
        first_row, rest_row, first_w, last_w = [], [], [], []
        offset = 0
        for row, e in enumerate(examples):
            groups = [[offset + i for i in g] for g in e.groups]
            for g in range(len(groups)):
                for h in range(g + 1, len(groups)):
                    for i in groups[g]:
                        chosen.extend([i] * len(groups[h]))
                        rejected.extend(groups[h])
            first += groups[0]
            first_row += [row] * len(groups[0])
            first_w += [1.0 / len(groups[0])] * len(groups[0])
            last += groups[-1]
            last_w += [1.0 / len(groups[-1])] * len(groups[-1])
            others = [i for g in groups[1:] for i in g]
            rest += others
            rest_row += [row] * len(others)
            offset += e.k
        device = logps.device

        def index(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long).to(device)

        n = len(examples)
        lowest = torch.finfo(u.dtype).min
        best_of = torch.full((n,), lowest, device=device)
        best_of = best_of.scatter_reduce(0, index(first_row), u[index(first)], "amax")
        rest_of = torch.full((n,), lowest, device=device)
        rest_of = rest_of.scatter_reduce(0, index(rest_row), u[index(rest)], "amax")
        top1 = (best_of > rest_of).float().sum()  # a strict best
        first_weights = torch.tensor(first_w).to(device)
        last_weights = torch.tensor(last_w).to(device)
        correct = (u[index(chosen)] > u[index(rejected)]).float().sum()
        pairs = float(len(chosen))
        stats = {
            "rankings": torch.tensor(float(len(examples)), device=device),
            "weight": weights.sum(),
            "loss": loss_sum.detach(),
            "correct": correct,
            "ranked_pairs": torch.tensor(pairs, device=device),
            "top1": top1,
            "best_reward": (u[index(first)] * first_weights).sum(),
            "worst_reward": (u[index(last)] * last_weights).sum(),
            "responses": torch.tensor(float(sum(sizes)), device=device),
            "logps": logps.detach().sum(),
            "tokens": batch["attention_mask"].sum().float(),
        }
        return loss_sum / denominator, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Means over the rankings; the loss is the weighted mean. ``reward_accuracy`` is over
        the implied ordered pairs (tied responses form none)."""
        n = max(sums.get("rankings", 0.0), 1.0)
        weight = sums.get("weight", 0.0)
        return {
            "loss": sums["loss"] / weight if weight > 0 else 0.0,
            "reward_accuracy": sums["correct"] / max(sums.get("ranked_pairs", 0.0), 1.0),
            "top1_accuracy": sums["top1"] / n,
            "reward_margin": (sums["best_reward"] - sums["worst_reward"]) / n,
            "best_reward": sums["best_reward"] / n,
            "worst_reward": sums["worst_reward"] / n,
            "mean_logps": sums["logps"] / max(sums.get("responses", 0.0), 1.0),
            "rankings": sums.get("rankings", 0.0),
        }
