"""An evaluated checkpoint without the engine: the rows an evaluation job writes, made directly,
then voted through labeling.services.cast_vote by annotators following a fixed rule."""

from __future__ import annotations

import random
from typing import Any

from core.models import JobStatus
from evaluation.models import Evaluation
from labeling.models import (
    Choice,
    Comparison,
    Completion,
    Project,
    Prompt,
    PromptSplit,
    Role,
    Round,
    RoundPurpose,
)
from labeling.services import VoteInput, add_member, cast_vote
from tests.conftest import make_user
from training.models import Checkpoint, TrainingRun


def child_checkpoint(project: Project, base: Checkpoint, snapshot: Any, name: str) -> Checkpoint:
    run = TrainingRun.objects.create(
        project=project, snapshot=snapshot, start_checkpoint=base, config={}, status="succeeded"
    )
    return Checkpoint.objects.create(
        project=project, run=run, name=name, path=f"runs/{run.pk}/final", is_final=True
    )


def evaluated(
    project: Project,
    checkpoint: Checkpoint,
    opponent: Checkpoint,
    *,
    prompts: int = 40,
    win_share: float = 0.8,
    min_votes: int = 20,
    seed: int = 0,
) -> Evaluation:
    """An evaluation round on new held-out prompts in which the checkpoint wins about
    ``win_share`` of the votes (the rest split between ties and losses)."""
    rng = random.Random(seed)
    latest = project.rounds.order_by("-number").values_list("number", flat=True).first() or 0
    round_ = Round.objects.create(
        project=project, number=latest + 1, purpose=RoundPurpose.EVALUATION, checkpoint=checkpoint
    )
    evaluation = Evaluation.objects.create(
        project=project,
        checkpoint=checkpoint,
        round=round_,
        status=JobStatus.SUCCEEDED,
        generation={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 0},
        min_votes=min_votes,
    )
    evaluation.opponents.set([opponent])
    voter = make_user(f"voter-{evaluation.pk}")
    add_member(project, voter, Role.ANNOTATOR)
    for index in range(prompts):
        prompt = Prompt.objects.create(
            project=project, text=f"held-out {evaluation.pk}/{index}", split=PromptSplit.EVAL
        )
        mine, theirs = (
            Completion.objects.create(
                prompt=prompt,
                text=f"{who} answer {index}",
                model_name=model.name,
                checkpoint=model,
                generation_params={"completion_tokens": 10 + rng.randrange(5), "seed": index},
            )
            for who, model in (("mine", checkpoint), ("theirs", opponent))
        )
        a, b = (mine, theirs) if rng.random() < 0.5 else (theirs, mine)
        comparison = Comparison.objects.create(
            project=project, round=round_, prompt=prompt, completion_a=a, completion_b=b,
            votes_target=1,
        )  # fmt: skip
        draw = rng.random()
        if draw < win_share:
            choice = Choice.A if a == mine else Choice.B
        elif draw < win_share + (1 - win_share) / 2:
            choice = Choice.TIE
        else:
            choice = Choice.B if a == mine else Choice.A
        strength = "" if choice == Choice.TIE else "clear"
        cast_vote(voter, project, comparison.pk, VoteInput(choice, strength))
    return evaluation
