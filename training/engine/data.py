"""Reading snapshot files, validating rows, tokenising, truncating and batching.

A snapshot row has ``prompt``, ``chosen`` and ``rejected``, each either a string or a list of
``{"role": ..., "content": ...}`` messages (the conversational layout: the prompt holds the
conversation so far, chosen/rejected hold the assistant reply). Extra columns are ignored.

Prompt and response are tokenised separately and concatenated, so the boundary between the
tokens that are scored and those that are not is exact:

- plain text: ``prompt_ids = tokenizer(prompt)`` (with the tokenizer's BOS, if it adds one) and
  ``response_ids = tokenizer(response, add_special_tokens=False) + [eos]``;
- chat: the prompt is the chat template rendered with the generation prompt; the response is
  what the template renders after that prefix for prompt + reply (the reply and its end-of-turn
  marker). Both are tokenised without adding special tokens (the template holds the BOS).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
SFT_RESPONSE_COLUMNS = ("completion", "response", "chosen")


class DataError(ValueError):
    """A snapshot file or one of its rows is invalid; the message names the row."""


@dataclass(frozen=True)
class Record:
    """One row as read from a file; ``where`` names it in errors ("line 7" or "row 7")."""

    where: str
    values: dict[str, Any]


@dataclass(frozen=True)
class PairExample:
    index: int  # position in the file's list of valid rows (also the reference-cache index)
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    truncated: bool
    ref_chosen: float | None = None  # reference log-probs, once the reference pass ran
    ref_rejected: float | None = None
    weight: float = 1.0  # the row's optional 'weight' column (a step's loss is a weighted mean)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass(frozen=True)
class SFTExample:
    index: int
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    truncated: bool

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


# ----------------------------------------------------------------------------------------------
# reading


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: str | Path) -> list[Record]:
    """Read a ``.jsonl`` (one JSON object per line) or ``.parquet`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl or .parquet")


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}: line {number}: undecodable text (not UTF-8: {exc})"
                ) from exc
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number}: invalid JSON ({exc})") from exc
            if not isinstance(values, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object")
            records.append(Record(f"{path}: line {number}", values))
    if not records:
        raise DataError(f"{path}: the file holds no rows")
    return records


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow); or export JSONL"
        ) from exc
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several error types for corrupt files
        raise DataError(f"{path}: cannot read Parquet ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    return [Record(f"{path}: row {i}", row) for i, row in enumerate(rows, start=1)]


# ----------------------------------------------------------------------------------------------
# validation

Messages = list[dict[str, str]]


def _check_text(text: str, where: str, column: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: '{column}' holds undecodable text ({exc.reason})") from exc
    return text


def _check_field(value: Any, where: str, column: str, allow_empty: bool = False) -> str | Messages:
    """A column value: a non-empty string or a non-empty list of {role, content} messages.

    allow_empty: a preference pair's response may be empty text (an answer that stops at
    once is informative); it is then its end token alone (Tokenization.encode)."""
    if value is None:
        raise DataError(f"{where}: missing column '{column}'")
    if isinstance(value, str):
        if not value.strip() and not allow_empty:
            raise DataError(f"{where}: '{column}' is empty")
        return _check_text(value, where, column)
    if isinstance(value, list):
        if not value:
            raise DataError(f"{where}: '{column}' is an empty list of messages")
        messages: Messages = []
        for i, message in enumerate(value):
            if not isinstance(message, dict) or not {"role", "content"} <= set(message):
                missing = (
                    f" (no {' or '.join(repr(k) for k in ('role', 'content') if k not in message)})"
                    if isinstance(message, dict)
                    else ""
                )
                raise DataError(
                    f"{where}: '{column}' message {i} must be an object with 'role' and "
                    f"'content'{missing}"
                )
            role, content = message["role"], message["content"]
            if not isinstance(role, str) or not role:
                raise DataError(f"{where}: '{column}' message {i} has no role")
            if not isinstance(content, str):
                raise DataError(f"{where}: '{column}' message {i} content must be a string")
            _check_text(content, where, column)
            _check_text(role, where, column)
            messages.append({"role": role, "content": content})
        empty = not "".join(m["content"] for m in messages).strip()
        if column != "prompt" and empty and not allow_empty:
            raise DataError(f"{where}: '{column}' is empty")
        return messages
    raise DataError(
        f"{where}: '{column}' must be a string or a list of messages, got {type(value).__name__}"
    )


def _check_weight(value: Any, where: str) -> float:
    """The optional per-pair ``weight``: a finite number, not negative."""
    if value is None:
        raise DataError(f"{where}: 'weight' is null; give every row a weight or drop the column")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: 'weight' must be a number, got {type(value).__name__}")
    weight = float(value)
    if not math.isfinite(weight) or weight < 0:
        raise DataError(f"{where}: 'weight' must be finite and not negative, got {value!r}")
    return weight


def _as_messages(value: str | Messages, role: str) -> Messages:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


# ----------------------------------------------------------------------------------------------
# tokenisation


class Tokenization:
    """Turns validated rows into prompt and response token ids (see the module docstring)."""

    def __init__(self, tokenizer: Any, max_length: int, max_prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.eos_id: int | None = tokenizer.eos_token_id
        self.bos_id: int | None = tokenizer.bos_token_id
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))

    def settings(self) -> dict[str, Any]:
        """What the token ids depend on besides the data (part of the reference-cache key)."""
        vocab = self.tokenizer.get_vocab()
        vocab_hash = hashlib.sha256(
            json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
        ).hexdigest()
        return {
            "max_length": self.max_length,
            "max_prompt_length": self.max_prompt_length,
            "tokenizer_vocab_sha256": vocab_hash,
            "chat_template": getattr(self.tokenizer, "chat_template", None),
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "format_version": 1,
        }

    def _ids(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def encode(
        self, where: str, prompt: str | Messages, responses: Sequence[str | Messages]
    ) -> tuple[list[int], list[list[int]]]:
        """Token ids of the prompt and of each response (untruncated)."""
        texts = [r for r in responses if isinstance(r, str)]
        if isinstance(prompt, str) and len(texts) == len(responses):  # plain text, no chat
            response_ids = []
            for r in texts:
                ids = self._ids(r, add_special_tokens=False)
                if self.eos_id is not None:
                    ids.append(self.eos_id)
                response_ids.append(ids)
            return self._ids(prompt, add_special_tokens=True), response_ids
        if not self.has_chat_template:
            raise DataError(f"{where}: the row is a chat but the tokenizer has no chat template")
        prompt_messages = _as_messages(prompt, "user")
        prompt_text = self._render(where, prompt_messages, add_generation_prompt=True)
        response_ids = []
        for reply in responses:
            full_text = self._render(where, prompt_messages + _as_messages(reply, "assistant"))
            if not full_text.startswith(prompt_text):
                raise DataError(
                    f"{where}: the chat template does not render the prompt as a prefix of the "
                    "prompt and reply, so the reply's tokens cannot be told apart"
                )
            response_ids.append(self._ids(full_text[len(prompt_text) :], add_special_tokens=False))
        return self._ids(prompt_text, add_special_tokens=False), response_ids

    def _render(self, where: str, messages: Messages, add_generation_prompt: bool = False) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as exc:  # the template's own checks (jinja raise_exception) and errors
            raise DataError(f"{where}: the chat template cannot render the row ({exc})") from exc
        if not isinstance(text, str):
            raise DataError(f"{where}: the chat template did not render text")
        return text

    def truncate(
        self, prompt_ids: list[int], response_ids: list[list[int]]
    ) -> tuple[list[int], list[list[int]], bool]:
        """Keep the end of the prompt and the start of the responses (DPO.md, Truncation).

        Only a sequence over ``max_length`` is cut: first its prompt to the last
        ``max_prompt_length`` tokens (a leading BOS is kept), then the responses to what is left.
        """
        longest = max(len(r) for r in response_ids)
        if len(prompt_ids) + longest <= self.max_length:
            return prompt_ids, response_ids, False
        if len(prompt_ids) > self.max_prompt_length:
            keep_bos = self.bos_id is not None and prompt_ids[0] == self.bos_id
            if keep_bos:
                prompt_ids = [prompt_ids[0], *prompt_ids[-(self.max_prompt_length - 1) :]]
            else:
                prompt_ids = prompt_ids[-self.max_prompt_length :]
        budget = self.max_length - len(prompt_ids)
        return prompt_ids, [r[:budget] for r in response_ids], True


def tokenize_pairs(
    records: Sequence[Record], tokenization: Tokenization, weights: bool = True
) -> list[PairExample]:
    """Validated, tokenised pairs; with ``weights``, each takes the row's optional ``weight``."""
    examples: list[PairExample] = []
    for record in records:
        values = record.values
        weight = 1.0
        if weights and "weight" in values:
            weight = _check_weight(values["weight"], record.where)
        fields = {}
        for column in PAIR_COLUMNS:
            if column not in values:
                raise DataError(f"{record.where}: missing column '{column}'")
            fields[column] = _check_field(
                values[column], record.where, column, allow_empty=column != "prompt"
            )
        if fields["chosen"] == fields["rejected"]:
            raise DataError(f"{record.where}: 'chosen' and 'rejected' are identical")
        prompt_ids, (chosen, rejected) = tokenization.encode(
            record.where, fields["prompt"], [fields["chosen"], fields["rejected"]]
        )
        if chosen == rejected:
            raise DataError(f"{record.where}: 'chosen' and 'rejected' tokenise identically")
        for column, ids in (("chosen", chosen), ("rejected", rejected)):
            if not ids:
                raise DataError(
                    f"{record.where}: '{column}' is empty and the tokenizer has no EOS token "
                    "to end it, so there is no token to learn from"
                )
        prompt_ids, (chosen, rejected), truncated = tokenization.truncate(
            prompt_ids, [chosen, rejected]
        )
        if chosen == rejected:
            raise DataError(
                f"{record.where}: the pair cannot fit: within max_length={tokenization.max_length} "
                f"tokens (prompt cut to {len(prompt_ids)}) 'chosen' and 'rejected' are identical"
            )
        examples.append(
            PairExample(
                len(examples),
                tuple(prompt_ids),
                tuple(chosen),
                tuple(rejected),
                truncated,
                weight=weight,
            )
        )
    return examples


def tokenize_sft(records: Sequence[Record], tokenization: Tokenization) -> list[SFTExample]:
    examples: list[SFTExample] = []
    for record in records:
        values = record.values
        if "prompt" not in values:
            raise DataError(f"{record.where}: missing column 'prompt'")
        column = next((c for c in SFT_RESPONSE_COLUMNS if c in values), None)
        if column is None:
            raise DataError(
                f"{record.where}: missing column: one of {', '.join(SFT_RESPONSE_COLUMNS)}"
            )
        prompt = _check_field(values["prompt"], record.where, "prompt")
        response = _check_field(values[column], record.where, column)
        prompt_ids, (response_ids,) = tokenization.encode(record.where, prompt, [response])
        prompt_ids, (response_ids,), truncated = tokenization.truncate(prompt_ids, [response_ids])
        examples.append(
            SFTExample(len(examples), tuple(prompt_ids), tuple(response_ids), truncated)
        )
    return examples


# ----------------------------------------------------------------------------------------------
# splitting and batching


def split_eval(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, eval) index lists; eval is ``round(n * fraction)`` rows, at least 1."""
    if fraction <= 0:
        return list(range(n)), []
    n_eval = max(1, round(n * fraction))
    if n_eval >= n:
        raise DataError(f"eval_fraction={fraction} leaves no training rows out of {n}")
    order = list(range(n))
    random.Random(f"eval-split:{seed}").shuffle(order)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def epoch_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    bucketing: bool,
    shuffle: bool = True,
) -> list[list[int]]:
    """The optimizer-step batches of one epoch, as positions into ``lengths``.

    A pure function of its arguments, which is what lets ``--resume`` pick up at any step. With
    bucketing, the shuffled rows are cut into windows of 50 batches, each window is sorted by
    length and cut into batches, and the batches are shuffled: similar lengths share a step.
    Without ``shuffle``, every epoch takes the rows in order, ``batch_size`` at a time (no
    bucketing either): step k trains rows k*batch_size .. (k+1)*batch_size - 1.
    """
    order = list(range(len(lengths)))
    if not shuffle:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(f"epoch:{seed}:{epoch}")
    rng.shuffle(order)
    if not bucketing:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def micro_batches(
    positions: Sequence[int], lengths: Sequence[int], size: int, rank: int = 0, world: int = 1
) -> Iterator[list[int]]:
    """This process's share of one step, sorted by length and cut into micro-batches."""
    ordered = sorted(positions, key=lambda i: lengths[i])[rank::world]
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


# ----------------------------------------------------------------------------------------------
# collation


def _pad(sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def collate_sequences(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``label_mask`` (response tokens only).

    Example with pad id 0, prompts ``[[1, 7], [1]]`` and responses ``[[8, 2], [9, 9, 2]]``::

        input_ids      = [[1, 7, 8, 2], [1, 9, 9, 2]]
        attention_mask = [[1, 1, 1, 1], [1, 1, 1, 1]]
        label_mask     = [[0, 0, 1, 1], [0, 1, 1, 1]]   (bool)

    and had the second row been one token shorter, its last column would be pad id 0 with
    attention_mask 0 and label_mask 0.
    """
    sequences = [list(p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    input_ids = _pad(sequences, pad_id)
    attention_mask = torch.zeros_like(input_ids)
    label_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        attention_mask[row, : len(p) + len(r)] = 1
        label_mask[row, len(p) : len(p) + len(r)] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "label_mask": label_mask}


def collate_pairs(examples: Sequence[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """One concatenated batch: rows ``0..k-1`` are the chosen sequences, ``k..2k-1`` rejected."""
    prompts = [e.prompt_ids for e in examples] * 2
    responses = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    return collate_sequences(prompts, responses, pad_id)


def collate_sft(examples: Sequence[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    return collate_sequences(
        [e.prompt_ids for e in examples], [e.response_ids for e in examples], pad_id
    )
