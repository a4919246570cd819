from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.importers import ImportFailed, ImportKind, OnDuplicate, import_file
from labeling.models import Project


class Command(BaseCommand):
    help = (
        "Import prompts, pairs, preferences, ranking tasks or rankings (JSONL or CSV) into a "
        "project, all or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="Project name or id.")
        parser.add_argument("file", type=Path)
        parser.add_argument("--kind", choices=ImportKind.ALL, required=True)
        parser.add_argument(
            "--duplicates",
            choices=OnDuplicate.ALL,
            default=OnDuplicate.REFUSE,
            help="Rows that repeat an earlier row exactly: refuse the file (default) or skip them.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ref: str = options["project"]
        project = Project.objects.filter(name=ref).first()
        if project is None and ref.isdigit():
            project = Project.objects.filter(id=int(ref)).first()
        if project is None:
            raise CommandError(f"No project named or numbered {ref!r}.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        try:
            result = import_file(
                project, path.read_bytes(), path.name, options["kind"], options["duplicates"]
            )
        except ImportFailed as exc:
            lines = "\n".join(f"  {error}" for error in exc.errors)
            more = exc.total_errors - len(exc.errors)
            tail = f"\n  … and {more} more" if more > 0 else ""
            raise CommandError(f"Nothing was imported from {path}:\n{lines}{tail}") from None
        self.stdout.write(self.style.SUCCESS(result.summary()))
