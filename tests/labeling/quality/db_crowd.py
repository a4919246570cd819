"""A simulated crowd written to the database: honest annotators, one who always picks the left
response, one who votes at random, one fast clicker. Votes are Vote rows (bulk-created, as a
large import would), so the quality job reads them like any others."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from labeling.models import Choice, Comparison, Project, Role, Side, Strength, Vote
from labeling.services import add_member

HONEST = ("honest0", "honest1", "honest2")
BAD = ("lefty", "dice", "speedy")


def quick_user(username: str) -> Any:
    """A user with no usable password (tests log in with force_login): no password hashing,
    which costs a few hundred milliseconds a user on a busy machine."""
    return get_user_model().objects.create(username=username, password="!")


@dataclass
class Crowd:
    project: Project
    users: dict[str, Any]
    comparisons: list[Comparison]

    def ids(self, names: tuple[str, ...]) -> set[int]:
        return {self.users[name].pk for name in names}


def vote_row(comparison: Comparison, user: Any, choice: str, left: str, ms: int) -> Vote:
    decisive = choice in (Choice.A, Choice.B)
    chosen = comparison.completion_on(choice) if decisive else None
    rejected = (
        comparison.completion_on(Side.B if choice == Side.A else Side.A) if decisive else None
    )
    return Vote(
        comparison=comparison,
        annotator=user,
        choice=choice,
        strength=Strength.CLEAR if decisive else "",
        chosen=chosen,
        rejected=rejected,
        left_side=left,
        time_taken_ms=ms,
    )


def seed_crowd(make_project: Any, name: str = "Crowd", pairs: int = 30, seed: int = 7) -> Crowd:
    """Every crowd member votes on every comparison. The truth is A (the good model's answer,
    see tests.conftest.pairs_jsonl)."""
    rng = random.Random(seed)
    users = {n: quick_user(f"{name.lower()}-{n}") for n in HONEST + BAD}
    project = make_project(name, pairs=pairs, overlap=len(users))
    for user in users.values():
        add_member(project, user, Role.ANNOTATOR)
    comparisons = list(
        Comparison.objects.filter(project=project)
        .select_related("completion_a", "completion_b")
        .order_by("id")
    )
    votes = []
    for comparison in comparisons:
        for who, user in users.items():
            left = rng.choice([Side.A, Side.B])
            choice, ms = Choice.A, rng.randint(15_000, 40_000)
            if who == "lefty":
                choice = left
            elif who == "dice":
                choice = rng.choice(list(Choice.values))
            elif who == "speedy":
                ms = rng.randint(300, 900)
            votes.append(vote_row(comparison, user, choice, left, ms))
    Vote.objects.bulk_create(votes)
    Comparison.objects.filter(project=project).update(vote_count=len(users))
    return Crowd(project, users, comparisons)
