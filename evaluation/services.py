"""Held-out prompts, evaluation rounds and their results, the gate, the leaderboard.

An evaluation is a background job (core.models.Job, kind ``evaluation``): the worker writes the
held-out prompts with one seed each, runs ``python -m training.engine sample`` once per model
with the same settings (the engine seeds each prompt alone, so every model draws with the same
seed per prompt), and opens one round (purpose evaluation) of blind comparisons in one
transaction. Results are computed from the round's votes whenever they are read and the votes
changed since (``get_results``): a count and the newest vote id decide that, in one query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from core.artifacts import get_store
from core.jobs import JobKind, Recovery, enqueue, run_job
from core.models import JobStatus
from evaluation.bradley_terry import bradley_terry_leaderboard
from evaluation.gate import GateRule, evaluate_gate
from evaluation.models import DEFAULT_MIN_VOTES, Decision, Evaluation, PromotionDecision
from evaluation.stats import length_controlled_win_rate, win_rate
from labeling import importers
from labeling.models import (
    Choice,
    Comparison,
    Completion,
    Project,
    Prompt,
    PromptSplit,
    Round,
    RoundPurpose,
    Vote,
)
from training.models import Checkpoint
from training.params import SEED_MAX, ParamError, check_sampling_params
from training.runner import EngineProcess, engine_command, follow
from training.services import (
    RunRefused,
    SamplingFailed,
    clean_model_output,
    engine_exit_message,
    model_reference,
)

logger = logging.getLogger(__name__)

EVALUATION_JOB = "evaluation"
EVALUATION_TASK = "workers.tasks.run_evaluation"
# Set on a prompt's metadata when its split was chosen (at import or by a hold-out); such a
# prompt's split never changes again.
SPLIT_CHOSEN_KEY = importers.SPLIT_CHOSEN_KEY
WIN_RATE_RESAMPLES = 2000
LC_RESAMPLES = 500
LEADERBOARD_RESAMPLES = 200


class EvaluationRefused(ValueError):
    """The evaluation (or hold-out, or promotion) cannot go ahead; the message says why."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


# --- held-out prompts -----------------------------------------------------------------------


@dataclass(frozen=True)
class HoldOutResult:
    candidates: int  # prompts whose split was not chosen yet
    held_out: int  # of them, now eval
    kept: int  # of them, now fixed as train

    def summary(self) -> str:
        if not self.candidates:
            return "Every prompt's split was already chosen; nothing changed."
        return (
            f"Held out {self.held_out:,} of {self.candidates:,} prompts whose split was not "
            f"chosen yet; the other {self.kept:,} stay in training. Both are now fixed."
        )


def undecided_prompts(project: Project) -> Any:
    """Prompts whose split is still open: never chosen at import or by a hold-out, and never
    voted on (a voted prompt may already sit in a training snapshot)."""
    voted = Vote.objects.filter(comparison__project=project).values("comparison__prompt_id")
    return (
        Prompt.objects.filter(project=project, split=PromptSplit.TRAIN)
        .exclude(metadata__has_key=SPLIT_CHOSEN_KEY)
        .exclude(id__in=voted)
    )


def hold_out_prompts(project: Project, percent: float, seed: int = 0) -> HoldOutResult:
    """Move ``percent`` % of the prompts whose split is still open to the evaluation split.

    Deterministic: the same prompts and seed hold out the same prompts (a seeded sample of
    their ids in order). Every prompt considered, held out or not, has its split fixed.
    """
    if not 0 < percent < 100:
        raise EvaluationRefused(
            f"percent: hold out between 0 and 100 % of the prompts, not {percent:g}",
            key="percent",
        )
    if not 0 <= seed <= SEED_MAX:
        raise EvaluationRefused(f"seed: must be between 0 and {SEED_MAX}, not {seed}", key="seed")
    with transaction.atomic():
        ids = sorted(undecided_prompts(project).values_list("id", flat=True))
        count = round(len(ids) * percent / 100)
        chosen = set(random.Random(seed).sample(ids, count)) if ids else set()
        stamp = f"hold-out {percent:g}% seed {seed} at {timezone.now().isoformat()}"
        updates = []
        for prompt in Prompt.objects.filter(id__in=ids):
            prompt.split = PromptSplit.EVAL if prompt.pk in chosen else PromptSplit.TRAIN
            prompt.metadata = {**prompt.metadata, SPLIT_CHOSEN_KEY: stamp}
            updates.append(prompt)
        Prompt.objects.bulk_update(updates, ["split", "metadata"], batch_size=1000)
    logger.info("project %s: held out %d of %d open prompts", project.pk, len(chosen), len(ids))
    return HoldOutResult(len(ids), len(chosen), len(ids) - len(chosen))


def split_counts(project: Project) -> dict[str, int]:
    counts = dict(
        Prompt.objects.filter(project=project)
        .values_list("split")
        .annotate(n=Count("id"))
        .values_list("split", "n")
    )
    return {
        "train": counts.get(PromptSplit.TRAIN, 0),
        "eval": counts.get(PromptSplit.EVAL, 0),
        "undecided": undecided_prompts(project).count(),
    }


# --- starting an evaluation ---------------------------------------------------------------


def default_opponents(checkpoint: Checkpoint) -> list[Checkpoint]:
    """The checkpoint's parent: the checkpoint its run started from."""
    parent = checkpoint.parent
    return [parent] if parent is not None else []


def start_evaluation(
    project: Project,
    checkpoint: Checkpoint,
    *,
    opponents: Sequence[Checkpoint] | None = None,
    generation: dict[str, Any] | None = None,
    prompt_limit: int | None = None,
    min_votes: int | None = None,
    created_by: User | None = None,
) -> Evaluation:
    """Queue an evaluation of ``checkpoint`` against ``opponents`` (default: its parent)."""
    if checkpoint.project_id != project.pk:
        raise EvaluationRefused("The checkpoint belongs to another project.", key="checkpoint")
    chosen = list(opponents) if opponents else default_opponents(checkpoint)
    if not chosen:
        raise EvaluationRefused(
            f"{checkpoint.name} has no parent to compare against: choose the opponents.",
            key="opponents",
        )
    for opponent in chosen:
        if opponent.project_id != project.pk:
            raise EvaluationRefused("Opponents must belong to the project.", key="opponents")
        if opponent.pk == checkpoint.pk:
            raise EvaluationRefused(
                "A checkpoint cannot be evaluated against itself.", key="opponents"
            )
    held_out = Prompt.objects.filter(project=project, split=PromptSplit.EVAL).count()
    if not held_out:
        raise EvaluationRefused(
            "The project has no held-out prompts: hold some out (evaluation page) or import "
            'prompts with "split": "eval".',
            key="prompt_limit",
        )
    if prompt_limit is not None and not 1 <= prompt_limit <= held_out:
        raise EvaluationRefused(
            f"prompt_limit: must be between 1 and the {held_out:,} held-out prompts",
            key="prompt_limit",
        )
    if min_votes is not None and min_votes < 0:
        raise EvaluationRefused("min_votes: must not be negative", key="min_votes")
    try:
        settings_ = check_sampling_params(generation or {})
    except ParamError as exc:
        raise EvaluationRefused(str(exc), key=exc.key) from None
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            project=project,
            checkpoint=checkpoint,
            generation=settings_,
            prompt_limit=prompt_limit,
            min_votes=DEFAULT_MIN_VOTES if min_votes is None else min_votes,
            created_by=created_by,
        )
        evaluation.opponents.set(chosen)
        enqueue(EVALUATION_TASK, evaluation.pk)
    return evaluation


def execute_evaluation(evaluation_id: int) -> Evaluation | None:
    """Run a queued evaluation through the job wrapper; the row as it ended, or None."""
    return run_job(EVALUATION_JOB, evaluation_id)  # type: ignore[return-value]


def evaluation_job_kind() -> JobKind:
    """Registered by EvaluationConfig.ready(): a lost evaluation fails (its round is written
    in one transaction at the end, so nothing of it exists); start it again."""
    return JobKind(
        name=EVALUATION_JOB,
        model=Evaluation,
        task_name=EVALUATION_TASK,
        execute=_run_evaluation,
        recovery=Recovery.FAIL,
        lost_hint="Start the evaluation again.",
    )


def prompt_seed(base_seed: int, prompt: Prompt) -> int:
    """The seed every model draws ``prompt`` with: fixed by the base seed and the prompt's
    content (not its row id), so the same settings reproduce the same draws in any database."""
    content = json.dumps(prompt.messages if prompt.is_chat else prompt.text, ensure_ascii=False)
    digest = hashlib.sha256(f"{base_seed}:{content}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def select_eval_prompts(evaluation: Evaluation) -> list[Prompt]:
    prompts = list(
        Prompt.objects.filter(project=evaluation.project, split=PromptSplit.EVAL).order_by("id")
    )
    if evaluation.prompt_limit is not None and evaluation.prompt_limit < len(prompts):
        rng = random.Random(int(evaluation.generation.get("seed", 0)))
        keep = set(rng.sample([p.id for p in prompts], evaluation.prompt_limit))
        prompts = [p for p in prompts if p.id in keep]
    return prompts


def _generate(
    evaluation: Evaluation, model: Checkpoint, prompts_path: Path, out_path: Path
) -> dict[int, dict[str, Any]]:
    generation = evaluation.generation
    args = [
        "sample", "--model", model_reference(model), "--prompts", str(prompts_path),
        "--out", str(out_path), "--num-samples", "1",
        "--temperature", str(generation["temperature"]), "--top-p", str(generation["top_p"]),
        "--max-new-tokens", str(generation["max_new_tokens"]),
        "--seed", str(generation["seed"]),
    ]  # fmt: skip
    if model.trust_remote_code:
        args.append("--trust-remote-code")
    engine = EngineProcess(engine_command(*args), out_path.with_suffix(".log"))
    engine.start()

    def cancelled() -> bool:
        return Evaluation.objects.filter(id=evaluation.pk, cancel_requested=True).exists()

    code = follow(engine, cancelled)
    if code != 0:
        raise SamplingFailed(f"{model.name}: {engine_exit_message(code)}\n{engine.log_tail()}")
    with out_path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {int(row["id"]): row for row in rows}


def _run_evaluation(claimed: Evaluation) -> None:
    evaluation = Evaluation.objects.select_related("project", "checkpoint").get(id=claimed.pk)
    opponents = list(evaluation.opponents.order_by("id"))
    prompts = select_eval_prompts(evaluation)
    if not prompts:
        raise EvaluationRefused("The project has no held-out prompts left to evaluate on.")
    seeds = {p.id: prompt_seed(int(evaluation.generation["seed"]), p) for p in prompts}
    work_dir = get_store().work_dir(f"evaluations/{evaluation.pk}")
    work_dir.mkdir(parents=True, exist_ok=True)
    prompts_path = work_dir / "prompts.jsonl"
    with prompts_path.open("w", encoding="utf-8") as handle:
        for prompt in prompts:
            content: Any = prompt.messages if prompt.is_chat else prompt.text
            handle.write(json.dumps({"id": prompt.id, "prompt": content, "seed": seeds[prompt.id]}))
            handle.write("\n")
    outputs = {
        model.pk: _generate(evaluation, model, prompts_path, work_dir / f"model-{model.pk}.jsonl")
        for model in [evaluation.checkpoint, *opponents]
    }
    created, dropped, round_ = _open_round(evaluation, prompts, opponents, outputs)
    Evaluation.objects.filter(
        id=evaluation.pk, status=JobStatus.RUNNING, worker=claimed.worker
    ).update(
        status=JobStatus.SUCCEEDED,
        round=round_,
        prompt_seeds={str(k): v for k, v in seeds.items()},
        comparisons_created=created,
        dropped_identical=dropped,
        finished_at=timezone.now(),
    )


GENERATION_KEYS = (
    "temperature", "top_p", "max_new_tokens", "seed", "finish_reason", "completion_tokens",
)  # fmt: skip


def _completion(prompt: Prompt, model: Checkpoint, row: dict[str, Any]) -> Completion:
    return Completion.objects.create(
        prompt=prompt,
        text=clean_model_output(str(row["completion"])),
        model_name=model.name,
        checkpoint=model,
        generation_params={key: row.get(key) for key in GENERATION_KEYS},
    )


def _open_round(
    evaluation: Evaluation,
    prompts: list[Prompt],
    opponents: list[Checkpoint],
    outputs: dict[int, dict[int, dict[str, Any]]],
) -> tuple[int, int, Round | None]:
    """One comparison per prompt and opponent; which side holds which model is random
    (seeded by the evaluation), and the annotation page randomises left and right again."""
    project = evaluation.project
    sides = random.Random(f"evaluation {evaluation.pk}")
    mine = outputs[evaluation.checkpoint_id]
    dropped = 0
    with transaction.atomic():
        latest = project.rounds.aggregate(latest=Max("number"))["latest"] or 0
        round_ = Round.objects.create(
            project=project,
            number=latest + 1,
            source=f"evaluation {evaluation.pk}: {evaluation.checkpoint.name} against "
            + ", ".join(o.name for o in opponents),
            purpose=RoundPurpose.EVALUATION,
            checkpoint=evaluation.checkpoint,
        )
        comparisons = []
        for prompt in prompts:
            row = mine.get(prompt.id)
            if row is None:
                continue
            own = None
            for opponent in opponents:
                other = outputs[opponent.pk].get(prompt.id)
                if other is None:
                    continue
                if str(other["completion"]).strip() == str(row["completion"]).strip():
                    dropped += 1  # no preference to learn between two equal answers
                    continue
                own = own or _completion(prompt, evaluation.checkpoint, row)
                theirs = _completion(prompt, opponent, other)
                a, b = (own, theirs) if sides.random() < 0.5 else (theirs, own)
                comparisons.append(
                    Comparison(
                        project=project,
                        round=round_,
                        prompt=prompt,
                        completion_a=a,
                        completion_b=b,
                        votes_target=project.overlap,
                    )
                )
        Comparison.objects.bulk_create(comparisons)
    return len(comparisons), dropped, round_


# --- results ---------------------------------------------------------------------------------


def gate_rule_for(project: Project) -> GateRule:
    """The project's promotion rule (Project.gate_rule), defaults for keys it does not set."""
    return parse_gate_rule(project.gate_rule or {})


GATE_KEYS = ("min_ci_low", "min_lc_win_rate", "min_win_rate", "min_votes")


def parse_gate_rule(data: dict[str, Any]) -> GateRule:
    if not isinstance(data, dict):
        raise ValueError("the gate rule must be an object")
    unknown = sorted(set(data) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"unknown gate rule key(s): {', '.join(unknown)}")
    return GateRule(**data)


def _votes_key(round_id: int | None) -> str:
    if round_id is None:
        return ""
    stats = Vote.objects.filter(comparison__round_id=round_id).aggregate(
        n=Count("id"), last=Max("id")
    )
    return f"{stats['n']}:{stats['last'] or 0}"


def _outcome(choice: str, chosen_checkpoint: int | None, me: int) -> str:
    if choice in (Choice.TIE, Choice.BOTH_BAD):
        return "tie"  # both-bad: neither answer was preferred
    return "win" if chosen_checkpoint == me else "loss"


def _tokens(completion: Any) -> float:
    params = completion.get("generation_params") or {}
    tokens = params.get("completion_tokens")
    return float(tokens) if isinstance(tokens, int) else float(len(completion["text"]))


def compute_results(evaluation: Evaluation) -> dict[str, Any]:
    """Every figure of an evaluation from its round's votes (ties and both-bad count half)."""
    me = evaluation.checkpoint_id
    round_id = evaluation.round_id or 0
    opponents = {o.pk: o.name for o in evaluation.opponents.all()}
    in_round = Comparison.objects.filter(round_id=round_id)
    completions = {
        c["id"]: c
        for c in Completion.objects.filter(
            Q(id__in=in_round.values("completion_a")) | Q(id__in=in_round.values("completion_b"))
        ).values("id", "checkpoint_id", "text", "generation_params")
    }
    votes = list(
        Vote.objects.filter(comparison__round_id=round_id)
        .values_list(
            "comparison__prompt_id",
            "comparison__completion_a_id",
            "comparison__completion_b_id",
            "choice",
            "chosen__checkpoint_id",
            "source",
        )
        .order_by("id")
    )
    limit = float(evaluation.generation.get("max_new_tokens") or 0)
    lengths: dict[int, list[float]] = {}
    at_limit: dict[int, list[bool]] = {}
    for completion in completions.values():
        key = completion["checkpoint_id"]
        lengths.setdefault(key, []).append(_tokens(completion))
        finish = (completion["generation_params"] or {}).get("finish_reason")
        at_limit.setdefault(key, []).append(
            finish == "length" if finish else bool(limit) and _tokens(completion) >= limit
        )
    names = {me: evaluation.checkpoint.name, **opponents}
    length_rows = [
        {
            "checkpoint": key,
            "name": names.get(key, str(key)),
            "responses": len(values),
            "mean_length": sum(values) / len(values),
            "at_limit_share": sum(at_limit[key]) / len(values),
        }
        for key, values in sorted(lengths.items(), key=lambda item: item[0] != me)
    ]
    sources: dict[str, int] = {}
    for *_, source in votes:
        sources[source] = sources.get(source, 0) + 1
    per_opponent = []
    for opponent_id, name in opponents.items():
        outcomes, groups, len_me, len_them = [], [], [], []
        for prompt_id, a, b, choice, chosen_checkpoint, _ in votes:
            ca, cb = completions.get(a), completions.get(b)
            if ca is None or cb is None:
                continue
            pair = {ca["checkpoint_id"], cb["checkpoint_id"]}
            if pair != {me, opponent_id}:
                continue
            mine, theirs = (ca, cb) if ca["checkpoint_id"] == me else (cb, ca)
            outcomes.append(_outcome(choice, chosen_checkpoint, me))
            groups.append(prompt_id)
            len_me.append(_tokens(mine))
            len_them.append(_tokens(theirs))
        row: dict[str, Any] = {"opponent": opponent_id, "name": name, "votes": len(outcomes)}
        if outcomes:
            rate = win_rate(outcomes, groups, n_resamples=WIN_RATE_RESAMPLES, seed=evaluation.pk)
            row["win_rate"] = asdict(rate)
            try:
                lc = length_controlled_win_rate(
                    outcomes, groups, len_me, len_them, n_resamples=LC_RESAMPLES, seed=evaluation.pk
                )
                row["length_controlled"] = asdict(lc)
            except ValueError as exc:
                row["length_controlled"] = None
                row["length_controlled_error"] = str(exc)
        per_opponent.append(row)
    total = len(votes)
    return {
        "votes": total,
        "votes_by_source": sources,
        "min_votes": evaluation.min_votes,
        "provisional": total < evaluation.min_votes,
        "opponents": per_opponent,
        "lengths": length_rows,
        "length_limit": limit or None,
        "gate": asdict(gate_decision(evaluation, per_opponent, total)),
    }


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reasons: list[str]
    rule: dict[str, Any]


def gate_decision(
    evaluation: Evaluation, per_opponent: list[dict[str, Any]], votes: int
) -> GateVerdict:
    """The project's rule against every opponent; provisional figures never pass."""
    from evaluation.stats import LengthControlledWinRate, WinRate

    rule = gate_rule_for(evaluation.project)
    reasons: list[str] = []
    if votes < evaluation.min_votes:
        reasons.append(
            f"the figures are provisional: {votes} of the {evaluation.min_votes} votes "
            "this evaluation needs are in"
        )
    for row in per_opponent:
        if "win_rate" not in row:
            reasons.append(f"against {row['name']}: no votes yet")
            continue
        lc = row.get("length_controlled")
        decision = evaluate_gate(
            rule, WinRate(**row["win_rate"]), LengthControlledWinRate(**lc) if lc else None
        )
        reasons.extend(f"against {row['name']}: {reason}" for reason in decision.reasons)
    if not per_opponent:
        reasons.append("the evaluation has no opponents")
    return GateVerdict(passed=not reasons, reasons=reasons, rule=asdict(rule))


def get_results(evaluation: Evaluation) -> dict[str, Any]:
    """The evaluation's figures, recomputed (and stored) only when its votes changed."""
    if evaluation.status != JobStatus.SUCCEEDED or evaluation.round_id is None:
        return {}
    key = (
        _votes_key(evaluation.round_id)
        + f"|{json.dumps(evaluation.project.gate_rule, sort_keys=True)}"
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    if evaluation.results_key == digest and evaluation.results:
        return evaluation.results
    results = compute_results(evaluation)
    Evaluation.objects.filter(id=evaluation.pk).update(
        results=results,
        results_key=digest,
        results_at=timezone.now(),
        provisional=results["provisional"],
    )
    evaluation.results, evaluation.results_key = results, digest
    evaluation.provisional = results["provisional"]
    return results


# --- the gate ------------------------------------------------------------------------------


def apply_gate(evaluation: Evaluation, decided_by: User | None = None) -> PromotionDecision:
    """Check the evaluation's checkpoint against the project's rule: promote it if it passes,
    record the refusal and its reasons if not."""
    results = get_results(evaluation)
    if not results:
        raise EvaluationRefused(
            f"Evaluation {evaluation.pk} is {evaluation.status}: it has no results to gate on."
        )
    gate = results["gate"]
    checkpoint = evaluation.checkpoint
    with transaction.atomic():
        if gate["passed"]:
            _set_promoted(checkpoint, True)
        return PromotionDecision.objects.create(
            checkpoint=checkpoint,
            evaluation=evaluation,
            decision=Decision.PROMOTED if gate["passed"] else Decision.REFUSED,
            rule=gate["rule"],
            reasons=gate["reasons"],
            decided_by=decided_by,
        )


def override_promotion(
    checkpoint: Checkpoint,
    *,
    promote: bool,
    note: str,
    decided_by: User | None,
    evaluation: Evaluation | None = None,
) -> PromotionDecision:
    """An admin promotes a checkpoint the gate refused (or withdraws a promotion): recorded
    with who, when and the reason they gave."""
    if not note.strip():
        raise EvaluationRefused("note: say why you override the gate", key="note")
    with transaction.atomic():
        _set_promoted(checkpoint, promote)
        return PromotionDecision.objects.create(
            checkpoint=checkpoint,
            evaluation=evaluation,
            decision=Decision.OVERRIDE_PROMOTED if promote else Decision.OVERRIDE_DEMOTED,
            rule=asdict(gate_rule_for(checkpoint.project)),
            note=note.strip(),
            decided_by=decided_by,
        )


def _set_promoted(checkpoint: Checkpoint, promoted: bool) -> None:
    checkpoint.promoted = promoted
    checkpoint.promoted_at = timezone.now() if promoted else None
    checkpoint.save(update_fields=["promoted", "promoted_at"])


def promoted_checkpoint(project: Project) -> Checkpoint | None:
    """The newest promoted checkpoint: where the next round starts and samples from."""
    return (
        Checkpoint.objects.filter(project=project, promoted=True)
        .order_by("-promoted_at", "-id")
        .first()
    )


# --- leaderboard and lineage ---------------------------------------------------------------


def leaderboard(project: Project) -> dict[str, Any]:
    """Bradley-Terry (Davidson ties) over every checkpoint that took part in an evaluation
    round of the project, with prompt-bootstrap intervals; cached until the votes change."""
    votes = Vote.objects.filter(
        comparison__project=project, comparison__round__purpose=RoundPurpose.EVALUATION
    )
    stats = votes.aggregate(n=Count("id"), last=Max("id"))
    if not stats["n"]:
        return {"rows": [], "votes": 0}
    cache_key = f"evaluation:leaderboard:{project.pk}:{stats['n']}:{stats['last']}"
    cached = cache.get(cache_key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    rows = list(
        votes.values_list(
            "comparison__prompt_id",
            "comparison__completion_a__checkpoint_id",
            "comparison__completion_b__checkpoint_id",
            "choice",
            "chosen_id",
            "comparison__completion_a_id",
        ).order_by("id")
    )
    item_a, item_b, outcomes, groups = [], [], [], []
    for prompt_id, a, b, choice, chosen, completion_a in rows:
        if a is None or b is None or a == b:
            continue
        item_a.append(a)
        item_b.append(b)
        groups.append(prompt_id)
        if choice in (Choice.TIE, Choice.BOTH_BAD):
            outcomes.append("tie")
        else:
            outcomes.append("win" if chosen == completion_a else "loss")
    if not outcomes:
        return {"rows": [], "votes": 0}
    min_votes = gate_rule_for(project).min_votes or DEFAULT_MIN_VOTES
    board = bradley_terry_leaderboard(
        item_a, item_b, outcomes, groups,
        min_votes=min_votes, n_resamples=LEADERBOARD_RESAMPLES, seed=project.pk,
    )  # fmt: skip
    names: dict[Any, str] = dict(
        Checkpoint.objects.filter(id__in=[row.item for row in board.rows]).values_list("id", "name")
    )
    promoted = set(
        Checkpoint.objects.filter(project=project, promoted=True).values_list("id", flat=True)
    )
    result: dict[str, Any] = {
        "votes": len(outcomes),
        "confidence": board.confidence,
        "n_prompts": board.n_prompts,
        "n_resamples": board.n_resamples,
        "ties_nu": board.fit.nu,
        "rows": [
            {
                **asdict(row),
                "checkpoint": row.item,
                "name": names.get(row.item, str(row.item)),
                "promoted": row.item in promoted,
            }
            for row in board.rows
        ],
    }
    for row in result["rows"]:
        row.pop("item")
    cache.set(cache_key, result, 3600)
    return result


@dataclass
class LineageNode:
    checkpoint: Checkpoint
    children: list[LineageNode]
    evaluations: list[Evaluation]
    sampled_rounds: list[Round]
    trained_rounds: list[int]

    def as_dict(self) -> dict[str, Any]:
        run = self.checkpoint.run
        return {
            "checkpoint": self.checkpoint.pk,
            "name": self.checkpoint.name,
            "promoted": self.checkpoint.promoted,
            "run": run.pk if run else None,
            "snapshot": run.snapshot_id if run else None,
            "trained_on_rounds": self.trained_rounds,
            "sampled_rounds": [r.number for r in self.sampled_rounds],
            "evaluations": [
                {
                    "id": e.pk,
                    "status": e.status,
                    "provisional": e.provisional,
                    "win_rates": [
                        {"opponent": row["name"], **(row.get("win_rate") or {})}
                        for row in (e.results or {}).get("opponents", [])
                    ],
                }
                for e in self.evaluations
            ],
            "children": [child.as_dict() for child in self.children],
        }


def snapshot_rounds(snapshot_ids: Iterable[int]) -> dict[int, list[int]]:
    """Round numbers each snapshot drew its votes from: its `rounds` filter when it has one,
    else the training rounds holding votes cast before the snapshot was requested (one query
    per snapshot; the files are never read)."""
    from labeling.models import Snapshot

    result: dict[int, list[int]] = {}
    for snapshot in Snapshot.objects.filter(id__in=set(snapshot_ids)):
        chosen = (snapshot.filters or {}).get("rounds")
        if chosen:
            result[snapshot.pk] = sorted(int(number) for number in chosen)
            continue
        numbers = (
            Round.objects.filter(
                project_id=snapshot.project_id,
                purpose=RoundPurpose.TRAINING,
                comparisons__votes__created_at__lte=snapshot.created_at,
            )
            .values_list("number", flat=True)
            .distinct()
        )
        result[snapshot.pk] = sorted(numbers)
    return result


def lineage(project: Project) -> list[LineageNode]:
    """The project's checkpoint tree: base models at the roots, each run's final checkpoint
    under the checkpoint the run started from (intermediate step checkpoints are left out)."""
    checkpoints = list(
        Checkpoint.objects.filter(project=project)
        .filter(Q(run__isnull=True) | Q(is_final=True))
        .select_related("run", "run__snapshot", "run__start_checkpoint")
        .order_by("id")
    )
    evaluations: dict[int, list[Evaluation]] = {}
    for evaluation in Evaluation.objects.filter(project=project).order_by("id"):
        evaluations.setdefault(evaluation.checkpoint_id, []).append(evaluation)
    rounds: dict[int, list[Round]] = {}
    for round_ in Round.objects.filter(
        project=project, purpose=RoundPurpose.TRAINING, checkpoint__isnull=False
    ):
        assert round_.checkpoint_id is not None
        rounds.setdefault(round_.checkpoint_id, []).append(round_)
    trained = snapshot_rounds(c.run.snapshot_id for c in checkpoints if c.run is not None)
    nodes = {
        c.pk: LineageNode(
            c,
            [],
            evaluations.get(c.pk, []),
            rounds.get(c.pk, []),
            trained.get(c.run.snapshot_id, []) if c.run is not None else [],
        )
        for c in checkpoints
    }
    roots: list[LineageNode] = []
    for checkpoint in checkpoints:
        parent = checkpoint.run.start_checkpoint_id if checkpoint.run is not None else None
        if parent is not None and parent in nodes:
            nodes[parent].children.append(nodes[checkpoint.pk])
        elif parent is not None:
            # started from an intermediate checkpoint: hang it under that run's final one
            start = checkpoint.run.start_checkpoint if checkpoint.run else None
            holder = next(
                (n for n in nodes.values() if start and n.checkpoint.run_id == start.run_id),
                None,
            )
            (holder.children if holder else roots).append(nodes[checkpoint.pk])
        else:
            roots.append(nodes[checkpoint.pk])
    return roots


__all__ = [
    "EvaluationRefused",
    "RunRefused",
    "apply_gate",
    "default_opponents",
    "get_results",
    "hold_out_prompts",
    "leaderboard",
    "lineage",
    "override_promotion",
    "promoted_checkpoint",
    "start_evaluation",
]
