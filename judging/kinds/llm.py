"""LLM judges over an OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp
server, a hosted API).

Config keys (all checked by clean_config):
- base_url: e.g. "http://vllm.internal:8000/v1"; POSTs go to {base_url}/chat/completions and
  the host must pass judging.http.check_url (PREFLAB_JUDGE_ALLOWED_HOSTS).
- model: the model name the endpoint serves.
- rubric: the user message; {prompt}, {response_a}, {response_b} and {guidelines} are
  replaced by plain text (one pass, no template engine, so nothing in a rubric or in the data
  can reach Python objects; any other brace is left as written). The answer must end with a
  verdict the parser below accepts; DEFAULT_RUBRIC asks for [[A]], [[B]] or [[tie]].
- system: an optional system message; temperature (0..2, default 0); max_tokens (default 512);
- concurrency (1..64, default 4): requests in flight; timeout_seconds (per request, default
  60); max_retries (default 4) for 429/5xx/timeouts; backoff_seconds (default 1).
- api_key_env: the name of an environment variable PREFLAB_JUDGE_KEY_<NAME> (or its _FILE
  variant) holding the API key; the key itself is never stored, shown, logged or exported.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from config.env import env_str
from judging.http import CallFailed, RetryingClient, check_url, pin_url
from judging.kinds import (
    FIRST,
    SECOND,
    TIE,
    JudgeConfigError,
    Pair,
    Verdict,
    number_in,
    reject_unknown,
    text,
)

DEFAULT_RUBRIC = """You are judging two responses to the same prompt.

Guidelines:
{guidelines}

[Prompt]
{prompt}

[Response A]
{response_a}

[Response B]
{response_b}

Which response is better? Explain briefly, then end with exactly one of [[A]], [[B]] or [[tie]]."""

KEY_ENV_PATTERN = re.compile(r"PREFLAB_JUDGE_KEY_[A-Z0-9_]{1,64}")
_PLACEHOLDER = re.compile(r"\{(prompt|response_a|response_b|guidelines)\}")
_KNOWN = {
    "base_url",
    "model",
    "rubric",
    "system",
    "temperature",
    "max_tokens",
    "concurrency",
    "timeout_seconds",
    "max_retries",
    "backoff_seconds",
    "api_key_env",
}


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(config, _KNOWN)
    base_url = text(config, "base_url").rstrip("/")
    try:
        check_url(base_url)
    except ValueError as exc:
        raise JudgeConfigError(f"config.base_url: {exc}") from None
    rubric = text(config, "rubric", DEFAULT_RUBRIC)
    missing = [name for name in ("response_a", "response_b") if "{" + name + "}" not in rubric]
    if missing:
        raise JudgeConfigError(
            f"config.rubric must contain {', '.join('{' + m + '}' for m in missing)}."
        )
    key_env = text(config, "api_key_env", "")
    if key_env and not KEY_ENV_PATTERN.fullmatch(key_env):
        raise JudgeConfigError(
            "config.api_key_env must name a variable PREFLAB_JUDGE_KEY_<NAME> "
            "(capitals, digits, underscores), not the key itself."
        )
    return {
        "base_url": base_url,
        "model": text(config, "model"),
        "rubric": rubric,
        "system": text(config, "system", ""),
        "temperature": number_in(config, "temperature", float, 0.0, 0.0, 2.0),
        "max_tokens": number_in(config, "max_tokens", int, 512, 1, 32_768),
        "concurrency": number_in(config, "concurrency", int, 4, 1, 64),
        "timeout_seconds": number_in(config, "timeout_seconds", float, 60.0, 0.01, 3600.0),
        "max_retries": number_in(config, "max_retries", int, 4, 0, 20),
        "backoff_seconds": number_in(config, "backoff_seconds", float, 1.0, 0.0, 60.0),
        "api_key_env": key_env,
    }


def render_rubric(rubric: str, pair: Pair) -> str:
    """Replace the four placeholders in one pass: a value that itself contains "{prompt}" is
    inserted as written, never expanded again."""
    values = {
        "prompt": pair.prompt,
        "response_a": pair.first,
        "response_b": pair.second,
        "guidelines": pair.guidelines,
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], rubric)


_BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"[\s\*\"'`\[\]\(\)\.:]*(A|B|tie)[\s\*\"'`\[\]\(\)\.!]*", re.IGNORECASE)
_FINAL_LINE = re.compile(
    r"\**\s*(?:final\s+)?(?:verdict|answer|winner|decision)\s*\**\s*[:=\-]\s*\**\s*"
    r"\[*\s*(?:response\s+)?(A|B|tie)\s*\]*\s*\**[\s\.!]*",
    re.IGNORECASE,
)
_WINNERS = {"a": FIRST, "b": SECOND, "tie": TIE}


def parse_verdict(answer: str) -> str | None:
    """FIRST, SECOND or TIE from a judge's text, or None: never a guess.

    Accepted, in this order: bracketed verdicts [[A]] / [[B]] / [[tie]] when all of them in the
    answer name the same side; an answer that is only A, B or tie (with quotes, stars or
    brackets around it); a last line "Verdict: A" (or Answer/Winner/Decision). Anything else,
    including an answer whose bracketed verdicts contradict each other, is unparseable.
    """
    bracketed = {match.lower() for match in _BRACKETED.findall(answer)}
    if len(bracketed) == 1:
        return _WINNERS[bracketed.pop()]
    if bracketed:
        return None
    bare = _BARE.fullmatch(answer)
    if bare:
        return _WINNERS[bare.group(1).lower()]
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    if lines:
        final = _FINAL_LINE.fullmatch(lines[-1].strip())
        if final:
            return _WINNERS[final.group(1).lower()]
    return None


def api_key(config: dict[str, Any]) -> str:
    name = config.get("api_key_env") or ""
    if not name:
        return ""
    # Read at call time, so rotating the key needs no config change. env_str honours NAME_FILE.
    key = env_str(name, "") or os.environ.get(name, "")
    if not key:
        raise JudgeConfigError(f"the API key variable {name} is not set on this worker.")
    return key


class LLMJudge:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.url = pin_url(config["base_url"] + "/chat/completions")
        headers = {"Content-Type": "application/json"}
        key = api_key(config)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.http = RetryingClient(
            timeout=config["timeout_seconds"],
            max_retries=config["max_retries"],
            backoff=config["backoff_seconds"],
            concurrency=config["concurrency"],
            headers=headers,
        )
        self.pool = ThreadPoolExecutor(
            max_workers=config["concurrency"], thread_name_prefix="llm-judge"
        )

    def _payload(self, pair: Pair) -> dict[str, Any]:
        messages = []
        if self.config["system"]:
            messages.append({"role": "system", "content": self.config["system"]})
        messages.append({"role": "user", "content": render_rubric(self.config["rubric"], pair)})
        return {
            "model": self.config["model"],
            "messages": messages,
            "temperature": self.config["temperature"],
            "max_tokens": self.config["max_tokens"],
        }

    def _one(self, pair: Pair, deadline: float) -> Verdict:
        try:
            response = self.http.post_json(self.url, self._payload(pair), deadline)
        except CallFailed as exc:
            return Verdict(None, {}, error=str(exc), calls=exc.calls)
        body = response.body
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        tokens = tokens if isinstance(tokens, int) and tokens >= 0 else 0
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            return Verdict(
                None,
                {"response": _clip(body)},
                error="the answer has no choices[0].message.content",
                calls=response.calls,
                tokens=tokens,
            )
        raw = {"answer": content, "model": body.get("model", "")}
        return Verdict(parse_verdict(content), raw, calls=response.calls, tokens=tokens)

    def judge(self, pairs: list[Pair], deadline: float) -> list[Verdict]:
        return list(self.pool.map(lambda pair: self._one(pair, deadline), pairs))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()


def _clip(body: dict[str, Any]) -> str:
    return repr(body)[:2000]


def build(judge: Any) -> LLMJudge:
    return LLMJudge(clean_config(judge.config))
