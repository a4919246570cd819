"""Atomic imports of prompts, ready-made pairs, ranking tasks and existing preference data.

Every row is validated before anything is written: one bad row and nothing is imported, and
the error lists every bad row (up to a cap) with its line number and what is wrong.

Accepted layouts (JSONL: one object per line; CSV: a header row):
- prompts:     {"prompt": str} or {"messages": [{"role", "content"}, ...]}; optional "source",
               "split" ("train" or "eval": fixes the prompt's split; eval prompts are held out),
               "metadata". CSV columns: prompt[, source].
- pairs:       a prompt as above plus "response_a", "response_b"; optional "model_a", "model_b",
               and "gold" ("a", "b" or "tie": the known answer, which makes the row a gold
               item). CSV columns: prompt, response_a, response_b[, model_a, model_b, gold].
- preferences: "prompt", "chosen", "rejected", each a string, or the conversational layout
               (prompt a list of messages, chosen/rejected lists ending in the assistant turn;
               with no prompt, the shared leading turns of chosen and rejected are the prompt).
- rankings:    a prompt as above plus "responses", a list of K (3-8) distinct non-empty strings
               (with a chat prompt, each may instead be a one-message list holding the assistant
               turn; all responses then take that shape); optional "model_names" (K strings),
               "split", "metadata". Each row becomes a ranking task of a new round.
- ranked:      a rankings row plus "ranking", best first over the indices of "responses" with
               a nested list for a tie group ([2, [0, 3], 1]; training.engine.rankings); each
               row becomes a task with one imported ranking. CSV for both: columns prompt,
               responses[, model_names, ranking, source, split], the list-valued cells in JSON.

A chat prompt, under "messages" or as a list under "prompt", must end with a user turn. JSONL
lines are split on line feeds only (U+2028 and U+0085 inside strings are text); values nested deeper
than MAX_JSON_DEPTH and non-finite numbers (NaN, Infinity, 1e999) are refused, and so is a CSV
field longer than the csv module's field limit. Exact duplicate rows are reported with their
line numbers; the caller chooses to refuse the file (the default) or skip the repeats.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from labeling.models import (
    RANKING_K_RANGE,
    Choice,
    Comparison,
    Completion,
    Project,
    Prompt,
    PromptSplit,
    Ranking,
    RankingTask,
    Round,
    Side,
    Vote,
    VoteSource,
)
from labeling.rankings import TaskSpec, create_ranking_tasks
from training.engine.rankings import RankingError, canonical_ranking


class ImportKind:
    PROMPTS = "prompts"
    PAIRS = "pairs"
    PREFERENCES = "preferences"
    RANKINGS = "rankings"
    RANKED = "ranked"
    ALL = (PROMPTS, PAIRS, PREFERENCES, RANKINGS, RANKED)
    RANKING_KINDS = (RANKINGS, RANKED)


CHAT_ROLES = {"system", "user", "assistant"}
MAX_REPORTED_ERRORS = 50
# Deepest nesting of objects and lists a JSONL value may have (a chat message list is 3 deep).
MAX_JSON_DEPTH = 32


class OnDuplicate:
    """What to do with a row that repeats an earlier row of the same file exactly."""

    REFUSE = "refuse"
    SKIP = "skip"
    ALL = (REFUSE, SKIP)


class ImportFailed(Exception):
    """Raised with every problem found; nothing was imported."""

    def __init__(self, errors: list[str], total_errors: int | None = None) -> None:
        self.errors = errors
        self.total_errors = total_errors if total_errors is not None else len(errors)
        shown = "; ".join(errors[:5])
        more = f" (and {self.total_errors - 5} more)" if self.total_errors > 5 else ""
        super().__init__(f"Nothing was imported: {shown}{more}")


class RowError(ValueError):
    pass


@dataclass
class ParsedRow:
    line: int
    text: str = ""
    messages: list[dict[str, str]] | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    response_a: str = ""
    response_b: str = ""
    model_a: str = ""
    model_b: str = ""
    chosen_is_a: bool = False
    gold: str = ""  # a Choice value (A, B or tie) for a gold item, else empty
    split: str = ""  # "train" or "eval" when the file chose the prompt's split, else empty
    responses: list[str] = field(default_factory=list)  # a ranking task's K, canonical order
    model_names: list[str] = field(default_factory=list)  # empty, or one per response
    ranking: list[Any] | None = None  # an imported ranking, canonical (format_ranking)

    def identity(self) -> str:
        """What makes two rows exact duplicates: the same prompt, responses and models (and,
        for rankings, the same ranking)."""
        return json.dumps(
            [self.text, self.messages, self.response_a, self.response_b, self.model_a,
             self.model_b, self.chosen_is_a, self.gold, self.responses, self.model_names,
             self.ranking],
            ensure_ascii=False,
        )  # fmt: skip


@dataclass(frozen=True)
class ImportResult:
    kind: str
    prompts: int
    comparisons: int
    votes: int
    round_number: int | None
    skipped_duplicates: list[int] = field(default_factory=list)  # their line numbers
    ranking_tasks: int = 0
    rankings: int = 0  # imported rankings (kind "ranked")

    def summary(self) -> str:
        parts = [f"{self.prompts} prompts"]
        if self.comparisons:
            parts.append(f"{self.comparisons} comparisons in round {self.round_number}")
        if self.votes:
            parts.append(f"{self.votes} preference votes")
        if self.ranking_tasks:
            parts.append(f"{self.ranking_tasks} ranking tasks in round {self.round_number}")
        if self.rankings:
            parts.append(f"{self.rankings} imported rankings")
        text = "Imported " + ", ".join(parts) + "."
        if self.skipped_duplicates:
            lines = ", ".join(str(line) for line in self.skipped_duplicates[:10])
            more = " …" if len(self.skipped_duplicates) > 10 else ""
            text += (
                f" Skipped {len(self.skipped_duplicates)} duplicate row(s): line(s) {lines}{more}."
            )
        return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFailed(
            [f"line {line}: the file is not valid UTF-8 (bad byte at offset {exc.start})"]
        ) from None


class _NonFinite(ValueError):
    pass


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NonFinite(literal)
    return value


def _no_constant(literal: str) -> Any:
    raise _NonFinite(literal)


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _json_record(line: str) -> Any:
    try:
        record = json.loads(line, parse_float=_finite_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        return RowError(f"not valid JSON ({exc.msg} at column {exc.colno})")
    except _NonFinite as exc:
        return RowError(f"the number {exc} is not finite; NaN and infinities are not allowed")
    except RecursionError:
        return RowError(f"values are nested more than {MAX_JSON_DEPTH} levels deep")
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return RowError(f"a number cannot be read ({exc})")
    if _depth(record) > MAX_JSON_DEPTH:
        return RowError(f"values are nested more than {MAX_JSON_DEPTH} levels deep")
    return record


def _records(text: str, file_format: str) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record) pairs; a record that does not parse is yielded as RowError."""
    if file_format == "jsonl":
        # "\n" only: str.splitlines() also splits on U+2028, U+0085 and others, which JSON
        # allows raw inside strings, and would miscount the lines.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            yield number, _json_record(line.removesuffix("\r"))
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames:
            return
        for record in reader:
            # DictReader puts surplus cells under the None key: more cells than headers.
            if None in record:
                yield reader.line_num, RowError("more cells than the header has columns")
                continue
            yield reader.line_num, {key.strip(): value for key, value in record.items() if key}
    except csv.Error as exc:
        limit = csv.field_size_limit()
        message = str(exc)
        if "field larger than field limit" in message:
            message = f"a field is longer than {limit:,} characters"
        # The reader cannot go on after this; the file is refused with this as its last error.
        raise _CsvStopped(reader.line_num + 1, f"CSV cannot be read: {message}") from None


class _CsvStopped(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


def _no_nul(value: str, key: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here keeps SQLite and PostgreSQL alike.
    if "\x00" in value:
        raise RowError(f"field {key!r} contains a NUL character")
    return value


def _text(record: dict[str, Any], key: str, *, required: bool = True) -> str:
    if key not in record or record[key] is None:
        if required:
            raise RowError(f"missing field {key!r}")
        return ""
    value = record[key]
    if not isinstance(value, str):
        raise RowError(f"field {key!r} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise RowError(f"field {key!r} is empty")
    return _no_nul(value, key)


def _messages(value: Any, key: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(f"field {key!r} must be a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not {"role", "content"} <= message.keys():
            raise RowError(f"{key}[{index}] must be an object with 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in CHAT_ROLES:
            raise RowError(f"{key}[{index}] has role {role!r}; use system, user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise RowError(f"{key}[{index}] has empty or non-string content")
        messages.append({"role": role, "content": _no_nul(content, f"{key}[{index}]")})
    return messages


def _chat_prompt(value: Any, key: str) -> list[dict[str, str]]:
    messages = _messages(value, key)
    if messages[-1]["role"] != "user":
        raise RowError(f"a chat prompt ({key!r}) must end with a user message")
    return messages


def _prompt_fields(record: dict[str, Any], row: ParsedRow) -> None:
    if "messages" in record and record["messages"] not in (None, ""):
        row.messages = _chat_prompt(record["messages"], "messages")
    elif isinstance(record.get("prompt"), list):
        row.messages = _chat_prompt(record["prompt"], "prompt")
    else:
        row.text = _text(record, "prompt")


def _response(value: Any, key: str) -> str:
    """A response is a string, or a conversational list whose last turn is the assistant's."""
    if isinstance(value, list):
        messages = _messages(value, key)
        if messages[-1]["role"] != "assistant":
            raise RowError(f"field {key!r} must end with an assistant message")
        return messages[-1]["content"]
    if value is None:
        raise RowError(f"missing field {key!r}")
    if not isinstance(value, str):
        raise RowError(f"field {key!r} must be a string or a list of messages")
    if not value.strip():
        raise RowError(f"field {key!r} is empty")
    return _no_nul(value, key)


def _parse_preference(record: dict[str, Any], row: ParsedRow) -> None:
    for key in ("chosen", "rejected"):
        if key not in record:
            hint = ""
            if "response_a" in record and "response_b" in record:
                hint = ": this file looks like pairs (response_a/response_b): choose the Pairs kind"
            raise RowError(f"missing field {key!r}{hint}")
    chosen, rejected = record["chosen"], record["rejected"]
    if "prompt" not in record and isinstance(chosen, list) and isinstance(rejected, list):
        # Implicit prompt: the conversation turns that chosen and rejected share.
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise RowError("no 'prompt' and chosen/rejected share no leading turns")
        row.messages = _chat_prompt(chosen[:shared], "chosen")
        chosen, rejected = chosen[shared:], rejected[shared:]
    else:
        _prompt_fields(record, row)
    row.response_a = _response(chosen, "chosen")
    row.response_b = _response(rejected, "rejected")
    row.chosen_is_a = True


GOLD_ANSWERS = {"a": Choice.A, "b": Choice.B, "tie": Choice.TIE}


def _gold(record: dict[str, Any]) -> str:
    """A pair's optional known answer: "a", "b" or "tie" (any case); empty or absent: none."""
    value = record.get("gold")
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value.strip().lower() not in GOLD_ANSWERS:
        raise RowError(f'field \'gold\' must be "a", "b" or "tie", not {value!r}')
    return GOLD_ANSWERS[value.strip().lower()]


# Written into a prompt's metadata when its split was chosen (here, or by a hold-out in
# evaluation.services): such a prompt's split is fixed and never changes again.
SPLIT_CHOSEN_KEY = "split_chosen"
SPLITS = {"train": PromptSplit.TRAIN, "eval": PromptSplit.EVAL}


def _split(record: dict[str, Any]) -> str:
    """A prompt's optional split: "train" or "eval"; empty or absent: not chosen yet."""
    value = record.get("split")
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value.strip().lower() not in SPLITS:
        raise RowError(f'field \'split\' must be "train" or "eval", not {value!r}')
    return SPLITS[value.strip().lower()]


def _list_field(record: dict[str, Any], key: str, file_format: str) -> Any:
    """A list-valued field; in CSV its cell holds the list as JSON. Absent or empty: None."""
    value = record.get(key)
    if value is None or value == "":
        return None
    if file_format != "csv" or not isinstance(value, str):
        return value
    parsed = _json_record(value)
    if isinstance(parsed, RowError):
        raise RowError(f"column {key!r} must hold a JSON list: {parsed}")
    return parsed


def _ranking_response(value: Any, key: str) -> str:
    """A ranked response: a non-empty string, or (chat) a list of one assistant message."""
    if isinstance(value, list):
        messages = _messages(value, key)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise RowError(
                f"{key} must be a list of exactly one assistant message, the response "
                "(the conversation before it belongs in the prompt)"
            )
        return messages[0]["content"]
    if value is None or not isinstance(value, str):
        raise RowError(f"{key} must be a non-empty string, not {_json_kind(value)}")
    if not value.strip():
        raise RowError(f"{key} is empty")
    return _no_nul(value, key)


def _json_kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _parse_ranking_fields(
    record: dict[str, Any], row: ParsedRow, kind: str, file_format: str
) -> None:
    low, high = RANKING_K_RANGE
    responses = _list_field(record, "responses", file_format)
    if responses is None:
        hint = ""
        if "response_a" in record and "response_b" in record:
            hint = ": this file looks like pairs (response_a/response_b): choose the Pairs kind"
        elif "chosen" in record and "rejected" in record:
            hint = (
                ": this file looks like preferences (chosen/rejected): choose the Preferences kind"
            )
        raise RowError(f"missing field 'responses'{hint}")
    if not isinstance(responses, list):
        raise RowError(
            f"field 'responses' must be a list of {low} to {high} responses, "
            f"not {_json_kind(responses)}"
        )
    if not low <= len(responses) <= high:
        raise RowError(
            f"field 'responses' holds {len(responses)} "
            f"{'response' if len(responses) == 1 else 'responses'}; a ranking task needs "
            f"{low} to {high}"
        )
    # One shape for all K: a chat prompt may take one-message lists, never a mix of shapes.
    chat = [isinstance(response, list) for response in responses]
    if any(chat) and not all(chat):
        raise RowError(
            f"responses[{chat.index(True)}] is a list of messages but "
            f"responses[{chat.index(False)}] is not; give every response the same shape"
        )
    if any(chat) and row.messages is None:
        raise RowError(
            "the responses are chat messages but the prompt is plain text; give the prompt "
            "as messages too, or the responses as strings"
        )
    row.responses = [
        _ranking_response(response, f"responses[{index}]")
        for index, response in enumerate(responses)
    ]
    seen: dict[str, int] = {}
    for index, text in enumerate(row.responses):
        earlier = seen.setdefault(text.strip(), index)
        if earlier != index:
            raise RowError(
                f"responses[{earlier}] and responses[{index}] are identical; a ranking needs "
                "distinct responses"
            )
    names = _list_field(record, "model_names", file_format)
    if names is not None:
        if not isinstance(names, list) or len(names) != len(row.responses):
            count = f"{len(names)} names" if isinstance(names, list) else _json_kind(names)
            raise RowError(
                f"field 'model_names' must be a list of {len(row.responses)} strings, one per "
                f"response, got {count}"
            )
        for index, name in enumerate(names):
            if not isinstance(name, str):
                raise RowError(f"model_names[{index}] must be a string, not {_json_kind(name)}")
        row.model_names = [_no_nul(name, f"model_names[{i}]") for i, name in enumerate(names)]
    value = _list_field(record, "ranking", file_format)
    if kind == ImportKind.RANKINGS:
        if value is not None:
            # Refused rather than ignored: importing a ranked file as tasks would drop them.
            raise RowError(
                "field 'ranking' is read only by the Ranked kind (existing rankings): choose "
                "it, or leave the field out to create tasks to rank"
            )
        return
    if value is None:
        raise RowError("missing field 'ranking'")
    try:
        row.ranking = canonical_ranking(value, len(row.responses))
    except RankingError as exc:
        raise RowError(str(exc)) from None


def _parse_row(kind: str, record: Any, line: int, file_format: str = "jsonl") -> ParsedRow:
    if isinstance(record, RowError):
        raise record
    if not isinstance(record, dict):
        raise RowError(f"expected a JSON object, got {type(record).__name__}")
    row = ParsedRow(line=line)
    if kind == ImportKind.PREFERENCES:
        _parse_preference(record, row)
    else:
        _prompt_fields(record, row)
    if kind == ImportKind.PAIRS:
        if "response_a" not in record and "chosen" in record and "rejected" in record:
            raise RowError(
                "missing field 'response_a': this file looks like preferences "
                "(chosen/rejected): choose the Preferences kind"
            )
        row.response_a = _text(record, "response_a")
        row.response_b = _text(record, "response_b")
        row.model_a = _text(record, "model_a", required=False)
        row.model_b = _text(record, "model_b", required=False)
        row.gold = _gold(record)
    if kind in ImportKind.RANKING_KINDS:
        _parse_ranking_fields(record, row, kind, file_format)
    elif kind != ImportKind.PROMPTS and row.response_a.strip() == row.response_b.strip():
        raise RowError("the two responses are identical")
    if kind != ImportKind.PREFERENCES:
        row.split = _split(record)
    row.source = _text(record, "source", required=False)
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RowError("field 'metadata' must be an object")
    row.metadata = metadata
    return row


@dataclass
class ParsedFile:
    rows: list[ParsedRow]
    duplicates: list[int]  # line numbers of the rows that repeat an earlier one (skipped)


def parse_import(
    data: bytes, kind: str, file_format: str, on_duplicate: str = OnDuplicate.REFUSE
) -> ParsedFile:
    """Validate a whole file; raise ImportFailed naming every bad row (up to a cap).

    Exact duplicate rows refuse the file (on_duplicate="refuse", naming each repeat and the
    line it repeats) or are left out (on_duplicate="skip", listed in ParsedFile.duplicates)."""
    if kind not in ImportKind.ALL:
        raise ImportFailed([f"unknown import kind {kind!r}; use {', '.join(ImportKind.ALL)}"])
    if file_format not in ("jsonl", "csv"):
        raise ImportFailed([f"unknown file format {file_format!r}; use jsonl or csv"])
    if on_duplicate not in OnDuplicate.ALL:
        raise ImportFailed(
            [f"unknown duplicate handling {on_duplicate!r}; use {', '.join(OnDuplicate.ALL)}"]
        )
    limit = settings.PREFLAB_IMPORT_MAX_BYTES
    if len(data) > limit:
        raise ImportFailed(
            [f"the file is {len(data):,} bytes; the limit is {limit:,} bytes (split it up)"]
        )
    text = _decode(data)
    rows: list[ParsedRow] = []
    errors: list[str] = []
    error_count = 0
    first_seen: dict[str, int] = {}
    duplicates: list[int] = []

    def report(message: str) -> None:
        nonlocal error_count
        error_count += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(message)

    max_rows = settings.PREFLAB_IMPORT_MAX_ROWS
    try:
        for line, record in _records(text, file_format):
            if len(rows) + len(duplicates) + error_count >= max_rows:
                raise ImportFailed([f"the file has more than {max_rows:,} rows (split it up)"])
            try:
                row = _parse_row(kind, record, line, file_format)
            except RowError as exc:
                report(f"line {line}: {exc}")
                continue
            identity = row.identity()
            if identity in first_seen:
                duplicates.append(line)
                if on_duplicate == OnDuplicate.REFUSE:
                    report(
                        f"line {line}: duplicates line {first_seen[identity]} exactly "
                        "(choose to skip duplicates to import the file without them)"
                    )
                continue
            first_seen[identity] = line
            rows.append(row)
    except _CsvStopped as stopped:
        report(f"line {stopped.line}: {stopped.message}")
    if error_count:
        raise ImportFailed(errors, error_count)
    if not rows:
        raise ImportFailed(["the file holds no rows"])
    return ParsedFile(rows, duplicates)


def _next_round(project: Project, source: str) -> Round:
    latest = project.rounds.aggregate(latest=Max("number"))["latest"] or 0
    return Round.objects.create(project=project, number=latest + 1, source=source)


def import_rows(
    project: Project,
    rows: list[ParsedRow],
    kind: str,
    source: str,
    skipped_duplicates: list[int] | None = None,
) -> ImportResult:
    """Write validated rows in one transaction. Pairs, preferences and rankings open a new
    round."""
    skipped = skipped_duplicates or []
    with transaction.atomic():
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(
                    project=project,
                    text=row.text,
                    messages=row.messages,
                    source=row.source or source,
                    metadata={
                        **row.metadata,
                        "import_line": row.line,
                        **({SPLIT_CHOSEN_KEY: "import"} if row.split else {}),
                    },
                    split=row.split or PromptSplit.TRAIN,
                )
                for row in rows
            ],
            batch_size=1000,
        )
        if kind == ImportKind.PROMPTS:
            return ImportResult(kind, len(prompts), 0, 0, None, skipped)
        round_ = _next_round(project, source)
        if kind in ImportKind.RANKING_KINDS:
            tasks, rankings = _write_ranking_tasks(project, round_, prompts, rows, kind, source)
            return ImportResult(
                kind, len(prompts), 0, 0, round_.number, skipped, len(tasks), len(rankings)
            )
        completions = Completion.objects.bulk_create(
            [
                Completion(prompt=prompt, text=text, model_name=model)
                for prompt, row in zip(prompts, rows, strict=True)
                for text, model in ((row.response_a, row.model_a), (row.response_b, row.model_b))
            ],
            batch_size=1000,
        )
        imported_votes = kind == ImportKind.PREFERENCES
        comparisons = Comparison.objects.bulk_create(
            [
                Comparison(
                    project=project,
                    round=round_,
                    prompt=prompt,
                    completion_a=completions[2 * index],
                    completion_b=completions[2 * index + 1],
                    votes_target=1 if imported_votes else project.overlap,
                    vote_count=1 if imported_votes else 0,
                    # A gold item's votes never count (labeling.services.cast_vote), so every
                    # annotator answers it once whatever its votes_target.
                    is_gold=bool(rows[index].gold),
                    gold_choice=rows[index].gold,
                )
                for index, prompt in enumerate(prompts)
            ],
            batch_size=1000,
        )
        votes = []
        if imported_votes:
            votes = Vote.objects.bulk_create(
                [
                    Vote(
                        comparison=comparison,
                        choice=Choice.A,
                        chosen=comparison.completion_a,
                        rejected=comparison.completion_b,
                        left_side=Side.A,
                        imported_from=source,
                        source=VoteSource.IMPORTED,
                    )
                    for comparison in comparisons
                ],
                batch_size=1000,
            )
    return ImportResult(kind, len(prompts), len(comparisons), len(votes), round_.number, skipped)


def _write_ranking_tasks(
    project: Project,
    round_: Round,
    prompts: list[Prompt],
    rows: list[ParsedRow],
    kind: str,
    source: str,
) -> tuple[list[RankingTask], list[Ranking]]:
    """A ranking task per row, its completions in the file's order (the canonical positions);
    for existing rankings, one imported ranking each, which completes the task as an imported
    preference completes its comparison."""
    completions = Completion.objects.bulk_create(
        [
            Completion(
                prompt=prompt,
                text=text,
                model_name=row.model_names[index] if row.model_names else "",
            )
            for prompt, row in zip(prompts, rows, strict=True)
            for index, text in enumerate(row.responses)
        ],
        batch_size=1000,
    )
    imported = kind == ImportKind.RANKED
    specs, start = [], 0
    for prompt, row in zip(prompts, rows, strict=True):
        end = start + len(row.responses)
        specs.append(TaskSpec(prompt, completions[start:end], 1 if imported else project.overlap))
        start = end
    tasks = create_ranking_tasks(round_, specs)
    if not imported:
        return tasks, []
    # The round is new, so it holds exactly these tasks.
    RankingTask.objects.filter(round=round_).update(vote_count=1)
    rankings = Ranking.objects.bulk_create(
        [
            Ranking(
                task=task,
                ranking=row.ranking,
                source=VoteSource.IMPORTED,
                imported_from=source,
            )
            for task, row in zip(tasks, rows, strict=True)
        ],
        batch_size=1000,
    )
    return tasks, rankings


def guess_format(filename: str) -> str:
    lowered = filename.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ImportFailed([f"cannot tell the format of {filename!r}; name it .jsonl or .csv"])


def import_file(
    project: Project,
    data: bytes,
    filename: str,
    kind: str,
    on_duplicate: str = OnDuplicate.REFUSE,
) -> ImportResult:
    parsed = parse_import(data, kind, guess_format(filename), on_duplicate)
    return import_rows(
        project,
        parsed.rows,
        kind,
        source=f"import:{filename}",
        skipped_duplicates=parsed.duplicates,
    )
