"""Run configurations: frozen dataclasses, validated in ``__post_init__``.

A config file is a flat JSON or YAML mapping of these field names. An unknown key, a value of the
wrong type or a value out of range raises :class:`ConfigError` before any model is loaded. The
resolved config is saved as ``engine_config.json`` beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar


class ConfigError(ValueError):
    """A config file or value is invalid."""


LossType = Literal["sigmoid", "ipo"]
Precision = Literal["auto", "bf16", "fp32"]
Schedule = Literal["cosine", "linear", "constant"]


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """Fields shared by the DPO (``train``) and ``sft`` commands."""

    # --- inputs and outputs ---
    data: str  # training file: .jsonl or .parquet
    model: str  # starting policy: a local directory in Hugging Face format, or a hub id
    out_dir: str  # checkpoints, metrics.jsonl and summary.json are written here
    eval_data: str | None = None  # a separate eval file; if unset, eval_fraction of `data`
    eval_fraction: float = 0.05  # share of `data` held out for eval (0 disables eval)
    metrics_file: str | None = None  # default: <out_dir>/metrics.jsonl
    trust_remote_code: bool = False  # run code shipped with a model (only for trusted models)

    # --- tokenisation ---
    max_length: int = 1024  # prompt + response tokens per sequence
    max_prompt_length: int = 512  # a too-long pair's prompt is cut to its last N tokens

    # --- optimisation ---
    learning_rate: float = 1e-6  # peak AdamW learning rate (DPO paper: 1e-6)
    batch_size: int = 64  # pairs (or SFT examples) per optimizer step, over all processes
    micro_batch_size: int = (
        8  # pairs per forward/backward; batch_size / micro_batch_size = accumulation
    )
    epochs: int = 1  # passes over the training data
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    warmup_steps: int = 10  # linear warmup from 0 to learning_rate
    lr_schedule: Schedule = "cosine"  # decay after warmup
    min_lr_ratio: float = 0.0  # the decay ends at learning_rate * min_lr_ratio
    weight_decay: float = 0.0  # AdamW decoupled weight decay (matrices only)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0  # clip the global gradient norm; null disables clipping
    precision: Precision = "auto"  # auto: bf16 autocast (fp32 weights) on a bf16 GPU, else fp32
    gradient_checkpointing: bool = False  # recompute activations in backward to save memory
    length_bucketing: bool = True  # group pairs of similar length into a step to cut padding
    logprob_chunk_size: int = 1024  # tokens per chunk of the vocabulary projection
    seed: int = 0  # seeds data order, eval split, LoRA init and dropout

    # --- LoRA (peft) ---
    lora: bool = False  # train a LoRA adapter instead of all weights
    lora_r: int = 16
    lora_alpha: int = 32  # the adapter's update is scaled by lora_alpha / lora_r
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] | None = None  # default: every linear layer but the head

    # --- logging and checkpoints ---
    log_every: int = 10  # optimizer steps per metrics line
    eval_every: int = 0  # optimizer steps between evals; 0 evaluates only at the end
    save_every: int = 0  # optimizer steps between checkpoints; 0 saves only at the end
    keep_checkpoints: int | None = None  # keep only the newest N step checkpoints (None: all)

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("data", "model", "out_dir"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name}: must not be empty")
        _positive(self, "max_length", "max_prompt_length", "batch_size", "micro_batch_size")
        _positive(self, "epochs", "logprob_chunk_size", "lora_r", "log_every")
        _non_negative(self, "warmup_steps", "eval_every", "save_every", "weight_decay")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"max_steps: must be positive, got {self.max_steps}")
        if self.keep_checkpoints is not None and self.keep_checkpoints <= 0:
            raise ConfigError(f"keep_checkpoints: must be positive, got {self.keep_checkpoints}")
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(
                f"max_prompt_length ({self.max_prompt_length}) must be less than max_length "
                f"({self.max_length}) so that a response keeps at least one token"
            )
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size})"
            )
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction: must be in [0, 1), got {self.eval_fraction}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate: must be positive, got {self.learning_rate}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("adam_beta1", "adam_beta2", "lora_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1), got {getattr(self, name)}")
        if not self.adam_epsilon > 0:
            raise ConfigError(f"adam_epsilon: must be positive, got {self.adam_epsilon}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm: must be positive or null, got {self.max_grad_norm}")
        if not self.lora_alpha > 0:
            raise ConfigError(f"lora_alpha: must be positive, got {self.lora_alpha}")

    @property
    def metrics_path(self) -> Path:
        return (
            Path(self.metrics_file) if self.metrics_file else Path(self.out_dir) / "metrics.jsonl"
        )

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_batch_size


@dataclass(frozen=True, kw_only=True)
class DPOConfig(CommonConfig):
    """``python -m training.engine train``: Direct Preference Optimization."""

    reference_model: str | None = None  # default: the policy's starting weights (`model`)
    beta: float = 0.1  # strength of the KL penalty towards the reference
    loss_type: LossType = "sigmoid"  # sigmoid (DPO) or ipo
    label_smoothing: float = 0.0  # conservative DPO: probability that a label is flipped
    reference_free: bool = False  # take the reference log-ratio as 0; never run a reference
    cache_dir: str | None = None  # reference log-prob cache; default <out_dir>/reference_cache

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ConfigError(f"beta: must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing: must be in [0, 0.5), got {self.label_smoothing}")
        if self.loss_type == "ipo" and self.label_smoothing:
            raise ConfigError("label_smoothing applies to loss_type 'sigmoid' only")
        if self.reference_free and self.reference_model is not None:
            raise ConfigError("reference_model is set but reference_free is true")

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.out_dir) / "reference_cache"


@dataclass(frozen=True, kw_only=True)
class SFTConfig(CommonConfig):
    """``python -m training.engine sft``: supervised fine-tuning on demonstrations.

    Each row needs ``prompt`` and one of ``completion``, ``response`` or ``chosen`` (so a DPO
    snapshot trains "preferred-FT" on its chosen responses). The loss is the mean negative
    log-likelihood per response token over each optimizer step.
    """

    learning_rate: float = 1e-5  # SFT usually takes larger steps than DPO


ConfigT = TypeVar("ConfigT", bound=CommonConfig)


def config_from_dict(cls: type[ConfigT], raw: dict[str, Any]) -> ConfigT:
    """Build and validate a config from a plain mapping; unknown keys are an error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"missing required config key(s): {', '.join(missing)}")
    values = dict(raw)
    if isinstance(values.get("lora_target_modules"), list):
        values["lora_target_modules"] = tuple(values["lora_target_modules"])
    return cls(**values)


def load_config(cls: type[ConfigT], path: str | Path) -> ConfigT:
    """Read a ``.json``, ``.yaml`` or ``.yml`` config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except Exception as exc:  # yaml and json raise different error types
        raise ConfigError(f"cannot parse config {path}: {exc}") from exc
    return config_from_dict(cls, raw)


def config_to_dict(config: CommonConfig) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    if out.get("lora_target_modules") is not None:
        out["lora_target_modules"] = list(out["lora_target_modules"])
    return out


def save_config(config: CommonConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------
# validation helpers


def _positive(config: CommonConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name}: must be positive, got {getattr(config, name)}")


def _non_negative(config: CommonConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 0:
            raise ConfigError(f"{name}: must not be negative, got {getattr(config, name)}")


def _check_types(config: CommonConfig) -> None:
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{f.name}: expected {_describe(hints[f.name])}, got {value!r} "
                f"({type(value).__name__})"
            )


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an integer is a fine float ("lr: 1" in YAML)
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "a list of strings"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


__all__ = [
    "CommonConfig",
    "ConfigError",
    "DPOConfig",
    "SFTConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]
