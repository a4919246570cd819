"""Batched sampling of completions (the ``sample`` command): prompts JSONL in, completions out."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError
from .data import DataError, _check_field, read_records
from .modeling import load_causal_lm, load_tokenizer, quiet_transformers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSettings:
    num_samples: int = 2  # completions per prompt
    temperature: float = 1.0  # 0 means greedy decoding
    top_p: float = 1.0  # nucleus sampling threshold (1 disables it)
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 8  # prompts per generate() call (each repeated num_samples times)
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {self.num_samples}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must not be negative, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")


def _prompt_ids(tokenizer: Any, prompt: str | list[dict[str, str]], where: str) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{where}: the prompt is a chat but the tokenizer has no chat template")
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    candidates = configured if isinstance(configured, list) else [configured]
    ids: list[int] = [int(i) for i in candidates if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _record_seed(record: Any, where: str) -> int | None:
    value = record.values.get("seed")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise DataError(f"{where}: {record.where}: 'seed' must be a whole number in [0, 2^32)")
    return value


def run_sample(model_path: str, prompts: str, out: str, settings: SampleSettings) -> int:
    """Write ``num_samples`` completions per prompt to ``out``; returns the number of lines."""
    quiet_transformers()
    records = read_records(prompts)
    parsed = []
    for record in records:
        if "prompt" not in record.values:
            raise DataError(f"{prompts}: {record.where}: missing column 'prompt'")
        parsed.append((record, _check_field(record.values["prompt"], record.where, "prompt")))

    tokenizer = load_tokenizer(model_path, settings.trust_remote_code)
    encoded = [_prompt_ids(tokenizer, prompt, r.where) for r, prompt in parsed]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_causal_lm(model_path, settings.trust_remote_code)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        model = model.to(torch.bfloat16)
    model.to(device).eval()
    stop_ids = _stop_ids(model, tokenizer)
    greedy = settings.temperature == 0
    torch.manual_seed(settings.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(settings.seed)

    # A prompt record may carry its own "seed": it is then generated alone, right after
    # torch.manual_seed(seed), so two models given the same file draw with the same seed per
    # prompt whatever else the file holds (evaluation rounds rely on this).
    seeds = [_record_seed(record, prompts) for record, _ in parsed]
    per_prompt = any(seed is not None for seed in seeds)
    chunks = (
        [[i] for i in range(len(parsed))]
        if per_prompt
        else [
            list(range(start, min(start + settings.batch_size, len(parsed))))
            for start in range(0, len(parsed), settings.batch_size)
        ]
    )

    written = 0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for chunk in chunks:
            seed = seeds[chunk[0]] if per_prompt else None
            if seed is not None:
                torch.manual_seed(seed)
                if device.type == "cuda":
                    torch.cuda.manual_seed_all(seed)
            rows = [i for i in chunk for _ in range(settings.num_samples)]
            width = max(len(encoded[i]) for i in rows)
            input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for row, i in enumerate(rows):  # left padding: every prompt ends at the same column
                input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                attention_mask[row, width - len(encoded[i]) :] = 1
            with torch.no_grad():
                generated = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    do_sample=not greedy,
                    temperature=None if greedy else settings.temperature,
                    top_p=None if greedy else settings.top_p,
                    top_k=None,
                    max_new_tokens=settings.max_new_tokens,
                    eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = generated[:, width:].cpu().tolist()
            for row, i in enumerate(rows):
                tokens = new_tokens[row]
                stopped = next((n for n, t in enumerate(tokens) if t in stop_ids), None)
                kept = tokens if stopped is None else tokens[:stopped]
                record, prompt = parsed[i]
                line = {
                    "prompt_index": i,
                    "id": record.values.get("id"),
                    "prompt": prompt,
                    "sample_index": row % settings.num_samples,
                    "completion": tokenizer.decode(kept, skip_special_tokens=True),
                    "finish_reason": "length" if stopped is None else "stop",
                    "completion_tokens": len(kept),
                    "model": model_path,
                    "temperature": settings.temperature,
                    "top_p": settings.top_p,
                    "max_new_tokens": settings.max_new_tokens,
                    "seed": settings.seed if seed is None else seed,
                }
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                written += 1
    logger.info("wrote %d completions to %s", written, out)
    return written
