"""Reward-model judges: a local sequence-classification checkpoint (safetensors) through
transformers, batched, on the GPU when the worker has one (CPU otherwise, as in the tests).

Config keys:
- model: a directory *relative to* PREFLAB_JUDGE_MODELS_DIR holding config.json, the weights
  as *.safetensors and the tokenizer (a Bradley-Terry reward model's usual layout). Paths that
  leave that directory are refused; no remote code is ever run (trust_remote_code=False).
- mode: "pointwise" (default): each response is scored alone, as the prompt followed by the
  response, and the first response wins when its reward is higher (a Bradley-Terry RM);
  "pairwise": one input holds the prompt and both responses in the order asked, and the
  model's first logit > 0 means the first response is better (a pairwise RM, e.g. PairRM).
- batch_size (default 16), max_length (tokens, default 1024), tie_epsilon (a reward
  difference at or below it is a tie, default 0), device ("auto", "cpu" or "cuda").

Staff only: the weights are loaded into the worker.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from django.conf import settings

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

MODES = ("pointwise", "pairwise")
DEVICES = ("auto", "cpu", "cuda")


def model_dir(relative: str) -> Path:
    root = Path(settings.PREFLAB_JUDGE_MODELS_DIR).resolve()
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise JudgeConfigError(
            f"config.model {relative!r} must be a path relative to PREFLAB_JUDGE_MODELS_DIR."
        )
    path = (root / relative).resolve()
    if root not in path.parents and path != root:
        raise JudgeConfigError(f"config.model {relative!r} leaves PREFLAB_JUDGE_MODELS_DIR.")
    if not (path / "config.json").is_file():
        raise JudgeConfigError(f"config.model {relative!r} has no config.json.")
    if not any(path.glob("*.safetensors")):
        raise JudgeConfigError(f"config.model {relative!r} has no *.safetensors weights.")
    return path


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(config, {"model", "mode", "batch_size", "max_length", "tie_epsilon", "device"})
    relative = text(config, "model")
    model_dir(relative)
    mode = text(config, "mode", "pointwise")
    if mode not in MODES:
        raise JudgeConfigError(f"config.mode must be one of {', '.join(MODES)}, not {mode!r}.")
    device = text(config, "device", "auto")
    if device not in DEVICES:
        raise JudgeConfigError(f"config.device must be one of {', '.join(DEVICES)}.")
    return {
        "model": relative,
        "mode": mode,
        "batch_size": number_in(config, "batch_size", int, 16, 1, 1024),
        "max_length": number_in(config, "max_length", int, 1024, 8, 131_072),
        "tie_epsilon": number_in(config, "tie_epsilon", float, 0.0, 0.0, 1e6),
        "device": device,
    }


class RewardModelJudge:
    def __init__(self, config: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.config = config
        path = model_dir(config["model"])
        wanted = config["device"]
        use_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.bfloat16 if use_cuda else torch.float32,
        ).to(self.device)
        self.model.eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _texts(self, pair: Pair) -> list[str]:
        if self.config["mode"] == "pointwise":
            return [f"{pair.prompt}\n{pair.first}", f"{pair.prompt}\n{pair.second}"]
        return [f"{pair.prompt}\n[Response A]\n{pair.first}\n[Response B]\n{pair.second}"]

    def score_texts(self, texts: list[str]) -> list[float]:
        """The first logit of each text, in batches of batch_size."""
        import torch

        scores: list[float] = []
        size = self.config["batch_size"]
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = self.tokenizer(
                    texts[start : start + size],
                    padding=True,
                    truncation=True,
                    max_length=self.config["max_length"],
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch).logits
                scores.extend(logits[:, 0].float().cpu().tolist())  # CPU-GPU sync point
        return scores

    def judge(self, pairs: list[Pair], deadline: float) -> list[Verdict]:
        texts = [piece for pair in pairs for piece in self._texts(pair)]
        # Pointwise, the two orders of a comparison score the same two texts: each distinct
        # text is scored once (its position consistency is then 1 by construction).
        unique = list(dict.fromkeys(texts))
        scored = dict(zip(unique, self.score_texts(unique), strict=True))
        scores = [scored[piece] for piece in texts]
        width = 2 if self.config["mode"] == "pointwise" else 1
        verdicts = []
        for index in range(len(pairs)):
            own = scores[index * width : (index + 1) * width]
            if width == 2:
                raw = {"reward_first": own[0], "reward_second": own[1]}
                score = own[0] - own[1]
            else:
                raw = {"logit": own[0]}
                score = own[0]
            if not math.isfinite(score):
                verdicts.append(Verdict(None, raw, error="the model gave a non-finite score"))
                continue
            epsilon = self.config["tie_epsilon"]
            winner = FIRST if score > epsilon else SECOND if score < -epsilon else TIE
            verdicts.append(Verdict(winner, raw, score=score, calls=1))
        return verdicts

    def close(self) -> None:
        del self.model


def build(judge: Any) -> RewardModelJudge:
    return RewardModelJudge(clean_config(judge.config))
