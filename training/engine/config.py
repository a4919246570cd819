"""Run configurations: frozen dataclasses, validated in ``__post_init__``.

A config file is a flat JSON or YAML mapping of these field names. An unknown key, a value of the
wrong type or a value out of range raises :class:`ConfigError` before any model is loaded. The
resolved config is saved as ``engine_config.json`` beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar


class ConfigError(ValueError):
    """A config file or value is invalid."""


# name -> one line of help (the form and the API offer these; the config accepts all of them)
LOSS_TYPES: Mapping[str, str] = {
    "sigmoid": "DPO; with label smoothing above 0, conservative DPO (Rafailov et al. 2023)",
    "robust": "robust DPO: unbiased under a known label-flip rate (Chowdhury et al. 2024)",
    "hinge": "hinge loss on the reward margin, as in SLiC (Zhao et al. 2023)",
    "ipo": "IPO on length-averaged log-ratios, as TRL computes it (Azar et al. 2023)",
    "ipo_sum": "IPO on summed log-ratios (the engine's first 'ipo')",
    "sigmoid_norm": "DPO on length-averaged log-ratios (Tulu 3)",
    "nca_pair": "NCA: absolute rewards, pushes the rejected reply down (Chen et al. 2024)",
    "bco_pair": "BCO: chosen and rejected rewards classified separately (Jung et al. 2024)",
    "sppo_hard": "SPPO with hard labels: rewards regressed to +-1/(2 beta) (Wu et al. 2024)",
    "apo_zero": "APO-zero: raise the chosen, lower the rejected (D'Oosterlinck et al. 2024)",
    "apo_down": "APO-down: lower both, the rejected more (D'Oosterlinck et al. 2024)",
    "exo_pair": "EXO: KL to smoothed labels; label smoothing in (0, 1) (Ji et al. 2024)",
    "simpo": "SimPO: reference-free, length-averaged, target margin gamma (Meng et al. 2024)",
    "sft": "NLL of the chosen replies; added to another loss this is RPO (Pang et al. 2024)",
}

# listwise losses: they train on ranking rows (training.engine.listwise) and stand alone; the
# run form and the API offer them for listwise (ranking) snapshots only (training.params)
LISTWISE_LOSS_TYPES: Mapping[str, str] = {
    "plackett_luce": "Plackett-Luce DPO over K ranked responses (DPO paper, appendix A.3)",
}

# losses that never look at the reference model: with only these, no reference pass runs
REFERENCE_FREE_LOSSES = frozenset({"simpo", "sft"})

# label smoothing eps per loss that uses it: (low, high, low included); high is always excluded.
# Every other loss requires eps = 0.
LABEL_SMOOTHING_RANGES: Mapping[str, tuple[float, float, bool]] = {
    "sigmoid": (0.0, 0.5, True),
    "robust": (0.0, 0.5, True),
    "exo_pair": (0.0, 1.0, False),
}


def check_loss_settings(
    types: Sequence[str],
    weights: Sequence[float],
    beta: float,
    label_smoothing: float,
    simpo_gamma: float,
) -> None:
    """Raise ConfigError with a message naming the setting when a combination is invalid."""
    if not types:
        raise ConfigError("loss_type: name at least one loss")
    unknown = [t for t in types if t not in LOSS_TYPES]
    if unknown:
        raise ConfigError(
            f"loss_type: unknown loss {unknown[0]!r}; choose from {', '.join(LOSS_TYPES)}"
        )
    if len(set(types)) != len(types):
        raise ConfigError("loss_type: a loss is named twice")
    if len(weights) != len(types):
        raise ConfigError(
            f"loss_weights: {len(weights)} weight(s) for {len(types)} loss type(s); "
            "give one weight per loss"
        )
    for w in weights:
        if not (math.isfinite(w) and w > 0):
            raise ConfigError(f"loss_weights: every weight must be positive and finite, got {w}")
    if not (math.isfinite(beta) and beta > 0):
        raise ConfigError(f"beta: must be positive, got {beta}")
    if not math.isfinite(label_smoothing):
        raise ConfigError(f"label_smoothing: must be finite, got {label_smoothing}")
    for name in types:
        bounds = LABEL_SMOOTHING_RANGES.get(name)
        if bounds is None:
            continue
        low, high, low_included = bounds
        inside = (low <= label_smoothing if low_included else low < label_smoothing) and (
            label_smoothing < high
        )
        if not inside:
            interval = f"{'[' if low_included else '('}{low:g}, {high:g})"
            hint = " (the EXO paper suggests 1e-3)" if name == "exo_pair" else ""
            raise ConfigError(
                f"label_smoothing: loss {name!r} needs it in {interval}{hint}, "
                f"got {label_smoothing}"
            )
    if label_smoothing and not any(t in LABEL_SMOOTHING_RANGES for t in types):
        raise ConfigError(
            "label_smoothing: only the losses "
            f"{', '.join(LABEL_SMOOTHING_RANGES)} use it; set it to 0 for {', '.join(types)}"
        )
    if "simpo" in types:
        if not math.isfinite(simpo_gamma) or simpo_gamma < 0:
            raise ConfigError(f"simpo_gamma: must be finite and not negative, got {simpo_gamma}")
        others = [t for t in types if t not in ("simpo", "sft")]
        if others:
            raise ConfigError(
                f"loss_type: simpo is reference-free and combines only with sft, not {others[0]!r}"
            )


LossType = Literal[
    "sigmoid",
    "robust",
    "hinge",
    "ipo",
    "ipo_sum",
    "sigmoid_norm",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "apo_zero",
    "apo_down",
    "exo_pair",
    "simpo",
    "sft",
]
ListwiseLossType = Literal["plackett_luce"]
Precision = Literal["auto", "bf16", "fp32"]
Schedule = Literal["cosine", "linear", "constant"]
CompileMode = Literal["auto", "off", "on"]
Distributed = Literal["ddp", "fsdp"]
TRACKERS = ("tensorboard", "wandb", "mlflow")
# paths and file locations: set by the service that runs the engine, never taken from a user's
# hyperparameters (a path there could read or overwrite another run's files)
WORKER_MANAGED_KEYS = frozenset(
    {"data", "model", "reference_model", "out_dir", "metrics_file", "eval_data"}
    | {"reference_cache_dir"}
)


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
    shuffle: bool = True  # false: steps take the rows in file order (no shuffle, no bucketing)
    logprob_chunk_size: int = 1024  # tokens per chunk of the vocabulary projection
    seed: int = 0  # seeds data order, eval split, LoRA init and dropout

    # --- speed and scale (docs/engine.md, "Speed and scale") ---
    padding_free: bool = False  # pack each micro-batch's sequences into one row, no padding
    compile: CompileMode = "auto"  # torch.compile the decoder; auto: on (with CUDA graphs) on a GPU
    processes: int = 1  # training processes (GPUs) for this run; the CLI starts them
    distributed: Distributed = "ddp"  # with processes > 1: ddp (replicas) or fsdp (sharded)
    # experiment trackers beside metrics.jsonl; null: tensorboard when installed, plus wandb /
    # mlflow when installed and configured by their environment variables; [] for none
    trackers: tuple[str, ...] | None = None

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

    # --- divergence ---
    # stop (exit status 4) when a logged train loss exceeds this multiple of the first step's
    # loss; null disables the check (a non-finite loss or gradient norm always stops the run)
    divergence_factor: float | None = 10.0

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
        factor = self.divergence_factor
        if factor is not None and not (math.isfinite(factor) and factor > 1):
            raise ConfigError(
                f"divergence_factor: must be a finite number above 1, or null, got {factor}"
            )
        _positive(self, "processes")
        unknown_trackers = sorted(set(self.trackers or ()) - set(TRACKERS))
        if unknown_trackers:
            raise ConfigError(
                f"trackers: unknown {', '.join(unknown_trackers)}; "
                f"choose from {', '.join(TRACKERS)}"
            )
        if self.distributed == "fsdp" and self.lora:
            raise ConfigError("distributed 'fsdp' is for full fine-tuning; use 'ddp' with lora")

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
    # a loss of LOSS_TYPES, or a list of them combined as sum_k loss_weights[k] * loss_k
    # (or plackett_luce alone: listwise rows of K ranked responses, training.engine.listwise)
    loss_type: LossType | ListwiseLossType | tuple[LossType | ListwiseLossType, ...] = "sigmoid"
    loss_weights: tuple[float, ...] | None = None  # one per loss_type; default 1.0 each
    label_smoothing: float = 0.0  # eps of sigmoid / robust (flip rate), exo_pair; else 0
    simpo_gamma: float = 0.5  # simpo's target reward margin (TRL CPOConfig.simpo_gamma)
    reference_free: bool = False  # take the reference log-ratio as 0; never run a reference
    use_pair_weights: bool = True  # weight each pair by the data's optional 'weight' column
    # worker-managed, never user input: the reference log-prob cache shared across runs
    # (training.engine.refcache); default <out_dir>/reference_cache
    reference_cache_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        listwise = [t for t in self.loss_types if t in LISTWISE_LOSS_TYPES]
        if listwise:
            _check_listwise(self)
        else:
            check_loss_settings(
                self.loss_types,
                self.loss_weight_values,
                self.beta,
                self.label_smoothing,
                self.simpo_gamma,
            )
        if self.reference_free and self.reference_model is not None:
            raise ConfigError("reference_model is set but reference_free is true")
        if not self.uses_reference and self.reference_model is not None:
            raise ConfigError(
                f"reference_model is set but loss_type {', '.join(self.loss_types)} never uses "
                "a reference model"
            )

    @property
    def loss_types(self) -> tuple[str, ...]:
        """``loss_type`` as a tuple of names."""
        return (self.loss_type,) if isinstance(self.loss_type, str) else tuple(self.loss_type)

    @property
    def loss_weight_values(self) -> tuple[float, ...]:
        if self.loss_weights is None:
            return tuple(1.0 for _ in self.loss_types)
        return tuple(float(w) for w in self.loss_weights)

    @property
    def listwise(self) -> bool:
        """Whether the run trains on rankings (``loss_type: plackett_luce``)."""
        return any(t in LISTWISE_LOSS_TYPES for t in self.loss_types)

    @property
    def uses_reference(self) -> bool:
        """Whether a reference model is run: not in reference-free mode, and not when every loss
        is one that never looks at it (simpo, sft)."""
        return not self.reference_free and any(
            t not in REFERENCE_FREE_LOSSES for t in self.loss_types
        )

    @property
    def cache_path(self) -> Path:
        if self.reference_cache_dir:
            return Path(self.reference_cache_dir)
        return Path(self.out_dir) / "reference_cache"


def _check_listwise(config: DPOConfig) -> None:
    """plackett_luce stands alone: no combination, no weights, no label smoothing."""
    types = config.loss_types
    if len(types) != 1:
        raise ConfigError(
            f"loss_type: {types[0] if types[0] in LISTWISE_LOSS_TYPES else 'plackett_luce'} "
            "trains on rankings and combines with no other loss"
        )
    if config.loss_weights is not None:
        raise ConfigError(f"loss_weights: {types[0]} stands alone; leave loss_weights unset")
    if not (math.isfinite(config.beta) and config.beta > 0):
        raise ConfigError(f"beta: must be positive, got {config.beta}")
    if config.label_smoothing:
        raise ConfigError(f"label_smoothing: {types[0]} does not use it; set it to 0")


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
    for name in ("lora_target_modules", "trackers", "loss_type", "loss_weights"):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
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
    for name in ("lora_target_modules", "trackers", "loss_type", "loss_weights"):
        if isinstance(out.get(name), tuple):
            out[name] = list(out[name])
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
        return f"a list of ({_describe(typing.get_args(hint)[0])})"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


__all__ = [
    "LABEL_SMOOTHING_RANGES",
    "LISTWISE_LOSS_TYPES",
    "LOSS_TYPES",
    "REFERENCE_FREE_LOSSES",
    "CommonConfig",
    "ConfigError",
    "DPOConfig",
    "SFTConfig",
    "check_loss_settings",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]
