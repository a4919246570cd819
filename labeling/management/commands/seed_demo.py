from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from labeling.importers import ImportKind, import_file
from labeling.models import Project, Role
from labeling.services import add_member

DEMO_PAIRS = Path(__file__).resolve().parents[2] / "demo" / "pairs.jsonl"
# 8 prompts with 4 responses each: a small round of ranking tasks beside the pairs.
DEMO_RANKINGS = DEMO_PAIRS.with_name("rankings.jsonl")
DEMO_PROJECT = "Demo: helpful assistant"
DEMO_GUIDELINES = """\
Pick the response a careful expert would rather send.

1. **Correctness first**: a wrong fact, a wrong number or buggy code loses.
2. **Then helpfulness**: does it answer every part of the question?
3. **Then clarity**: structure and length that fit the question.

Use *tie* when neither is better, *both bad* when neither is acceptable. Strength:
*slight* for a close call, *strong* when one is clearly unacceptable next to the other.
"""
# Demo credentials are printed by `make demo`; they exist only on a local demo database.
DEMO_USERS = [
    ("admin", "demo-admin-pass", Role.ADMIN, True),
    ("alice", "demo-alice-pass", Role.ANNOTATOR, False),
    ("bob", "demo-bob-pass", Role.ANNOTATOR, False),
    ("rita", "demo-rita-pass", Role.REVIEWER, False),
]


class Command(BaseCommand):
    help = "Create the demo project, its users, comparisons and ranking tasks (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-model", default="", help="the model the demo project starts from"
        )
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/",
            help="where the demo is served, for the log-in line (make demo passes HOST/PORT)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with transaction.atomic():
            project, created = Project.objects.get_or_create(
                name=DEMO_PROJECT, defaults={"guidelines": DEMO_GUIDELINES, "overlap": 2}
            )
            if options["base_model"] and project.base_model != options["base_model"]:
                project.base_model = options["base_model"]
                project.save()
            for username, password, role, staff in DEMO_USERS:
                user, _ = user_model.objects.get_or_create(username=username)
                user.set_password(password)
                user.is_staff = user.is_superuser = staff
                user.save()
                add_member(project, user, role)
            if created:
                result = import_file(
                    project, DEMO_PAIRS.read_bytes(), DEMO_PAIRS.name, ImportKind.PAIRS
                )
                self.stdout.write(result.summary())
            # Apart from the pairs, so a demo database seeded before rankings existed gains them.
            if not project.ranking_tasks.exists():
                result = import_file(
                    project, DEMO_RANKINGS.read_bytes(), DEMO_RANKINGS.name, ImportKind.RANKINGS
                )
                self.stdout.write(result.summary())
        self.stdout.write(self.style.SUCCESS(f"Demo project: {project.name}"))
        self.stdout.write(f"Log in at {options['url']} with any of:")
        for username, password, role, staff in DEMO_USERS:
            extra = " (also Django admin)" if staff else ""
            self.stdout.write(f"  {username:<6} / {password:<16} {role}{extra}")
