"""What a user may set on a training run and on a sampling job: one definition, used by the UI
forms (training.forms), the API (api.runs) and the engine config check
(training.services.validate_run_config) alike.

A key that is not listed here is refused with an error naming it. Paths (data, model, out_dir,
metrics_file, eval_data, reference_model), the reference log-prob cache (reference_cache_dir;
training.engine.config.WORKER_MANAGED_KEYS lists them all) and trust_remote_code are
deliberately absent: PrefLab fills in the paths itself, and whether a model's own code may
run is a staff-only setting on the checkpoint (Checkpoint.trust_remote_code), never a
hyperparameter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings

from training.engine.config import LISTWISE_LOSS_TYPES, LOSS_TYPES, TRACKERS

SEED_MAX = 2**32 - 1
# A run may write at most this many step checkpoints (save_every against the step count).
MAX_SAVED_CHECKPOINTS = 100
# The most values a list parameter (loss_weights) takes.
MAX_LIST_ITEMS = 16


class ParamError(ValueError):
    """A value a user set is not allowed; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class Param:
    """One user-settable parameter: its type, bounds, default and one line of help."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    help: str
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: bool = False  # the maximum itself is not allowed
    choices: tuple[tuple[str, str], ...] = ()
    optional: bool = False  # null (None) is allowed and means "not set"
    # a list of values of `kind`, each checked as one value (no repeats among choices);
    # with `single` a lone value is accepted as well and stays a lone value
    many: bool = False
    single: bool = False

    def check(self, value: Any) -> Any:
        """Return the value if it is allowed (ints given as 3.0 stay refused), else raise."""
        if value is None:
            if self.optional:
                return None
            raise ParamError(self.name, "must be set")
        if self.many and not (self.single and not isinstance(value, list)):
            return self._check_list(value)
        return self._check_one(value)

    def _check_list(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ParamError(self.name, f"must be a list, got {value!r}")
        limit = len(self.choices) if self.choices else MAX_LIST_ITEMS
        if len(value) > limit:
            raise ParamError(self.name, f"takes at most {limit} values, got {len(value)}")
        items = [self._check_one(item) for item in value]
        if self.choices and len(set(items)) != len(items):
            raise ParamError(self.name, "names a value twice")
        return items

    def _check_one(self, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ParamError(self.name, f"must be true or false, got {value!r}")
            return value
        if self.kind is str:
            allowed = [choice for choice, _ in self.choices]
            if value not in allowed:
                raise ParamError(self.name, f"must be one of {', '.join(allowed)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(self.name, f"must be a number, got {value!r}")
        if self.kind is int and not isinstance(value, int):
            raise ParamError(self.name, f"must be a whole number, got {value!r}")
        if not math.isfinite(value):
            raise ParamError(self.name, f"must be a finite number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(self.name, f"must be at least {self.minimum:g}, got {value!r}")
        if self.maximum is not None:
            if self.exclusive_maximum and value >= self.maximum:
                raise ParamError(self.name, f"must be below {self.maximum:g}, got {value!r}")
            if value > self.maximum:
                raise ParamError(self.name, f"must be at most {self.maximum:g}, got {value!r}")
        return float(value) if self.kind is float else value

    def form_field(self) -> forms.Field:
        """The Django form field for this parameter, with the same bounds and help text."""
        common: dict[str, Any] = {
            "help_text": self.help,
            "label": self.label or self.name.replace("_", " ").capitalize(),
            "required": not self.optional and self.kind is not bool,
        }
        if self.default is not None:
            common["initial"] = self.default
        if self.kind is bool:
            return forms.BooleanField(**common)
        if self.many and not self.single:
            if self.kind is not str:
                raise TypeError(f"{self.name}: a list of numbers has no form field")
            common["required"] = False
            return forms.MultipleChoiceField(choices=self.choices, **common)
        if self.kind is str:  # a `single` list parameter: the form offers one value
            return forms.ChoiceField(choices=self.choices, **common)
        bounds: dict[str, Any] = {}
        if self.minimum is not None:
            bounds["min_value"] = self.minimum
        if self.maximum is not None and not self.exclusive_maximum:
            bounds["max_value"] = self.maximum
        if self.kind is int:
            return forms.IntegerField(**bounds, **common)
        field = forms.FloatField(**bounds, **common)
        if self.exclusive_maximum and self.maximum is not None:
            field.validators.append(_below(self.name, self.maximum))
        return field


def _below(name: str, maximum: float) -> Any:
    def validate(value: float) -> None:
        if value >= maximum:
            raise forms.ValidationError(f"Must be below {maximum:g}.")

    return validate


RUN_PARAMS: tuple[Param, ...] = (
    Param(
        "loss_type", str, "sigmoid",
        "The preference loss; sigmoid is DPO; plackett_luce for ranking snapshots. The API also "
        "takes a list of losses, summed with loss_weights (e.g. sigmoid and sft: RPO).",
        label="Loss",
        choices=tuple(
            (name, f"{name}: {text}")
            for name, text in {**LOSS_TYPES, **LISTWISE_LOSS_TYPES}.items()
        ),
        many=True, single=True,
    ),
    Param(
        "loss_weights", float, None,
        "One weight per loss of a loss_type list; empty: 1 each.",
        minimum=1e-6, maximum=1e6, optional=True, many=True,
    ),
    Param(
        "beta", float, 0.1, "Strength of the pull towards the reference model.",
        minimum=0.001, maximum=10.0,
    ),
    Param(
        "label_smoothing", float, 0.0,
        "The assumed share of wrong labels (sigmoid, robust: below 0.5; exo_pair: above 0).",
        minimum=0.0, maximum=1.0, exclusive_maximum=True,
    ),
    Param(
        "simpo_gamma", float, 0.5, "SimPO's target reward margin (simpo loss only).",
        label="SimPO gamma", minimum=0.0, maximum=10.0,
    ),
    Param(
        "reference_free", bool, False,
        "Take the reference model's log-ratio as 0 and never load a reference model.",
    ),
    Param(
        "use_pair_weights", bool, True,
        "Weight each pair by the snapshot's optional weight column.",
    ),
    Param(
        "learning_rate", float, 5e-6, "Peak AdamW learning rate.", minimum=1e-9, maximum=1e-2,
    ),
    Param("epochs", int, 1, "Passes over the snapshot's pairs.", minimum=1, maximum=100),
    Param(
        "max_steps", int, None, "Stop after this many optimizer steps (overrides epochs).",
        minimum=1, maximum=1_000_000, optional=True,
    ),
    Param(
        "batch_size", int, 16, "Pairs per optimizer step.", minimum=1, maximum=4096,
    ),
    Param(
        "micro_batch_size", int, 4,
        "Pairs per forward/backward pass; must divide the batch size.", minimum=1, maximum=512,
    ),
    Param(
        "max_length", int, 512, "Prompt plus response tokens per sequence.",
        minimum=16, maximum=32768,
    ),
    Param(
        "max_prompt_length", int, None,
        "A longer prompt is cut to its last this many tokens; below max_length "
        "(default: half of it).",
        minimum=8, maximum=32767, optional=True,
    ),
    Param("warmup_steps", int, 10, "Linear warm-up steps.", minimum=0, maximum=100_000),
    Param(
        "lr_schedule", str, "cosine", "How the learning rate decays after warm-up.",
        label="Learning-rate schedule",
        choices=(("cosine", "Cosine"), ("linear", "Linear"), ("constant", "Constant")),
    ),
    Param(
        "min_lr_ratio", float, 0.0, "The decay ends at this share of the learning rate.",
        minimum=0.0, maximum=1.0,
    ),
    Param(
        "weight_decay", float, 0.0, "AdamW decoupled weight decay.", minimum=0.0, maximum=1.0,
    ),
    Param(
        "max_grad_norm", float, 1.0, "Clip the gradient norm to this; empty disables clipping.",
        minimum=1e-6, maximum=1e6, optional=True,
    ),
    Param(
        "eval_fraction", float, 0.05, "Share of the pairs held out for evaluation.",
        minimum=0.0, maximum=0.5,
    ),
    Param(
        "precision", str, "auto", "auto uses bf16 on a GPU that supports it, else fp32.",
        choices=(("auto", "Auto"), ("bf16", "bf16"), ("fp32", "fp32")),
    ),
    Param(
        "gradient_checkpointing", bool, False, "Recompute activations to save GPU memory.",
    ),
    Param(
        "length_bucketing", bool, True, "Group pairs of similar length to cut padding.",
    ),
    Param(
        "shuffle", bool, True, "Off: steps take the pairs in snapshot order (no bucketing).",
    ),
    Param(
        "padding_free", bool, False, "Pack each micro-batch into one row without padding.",
    ),
    Param(
        "compile", str, "auto", "torch.compile the model; auto: on a GPU only.",
        label="Compile", choices=(("auto", "Auto"), ("off", "Off"), ("on", "On")),
    ),
    Param(
        "processes", int, None,
        "Training processes (GPUs); empty: the worker's PREFLAB_TRAIN_PROCESSES, also the most.",
        minimum=1, maximum=1024, optional=True,
    ),
    Param(
        "distributed", str, "ddp", "With several processes: ddp replicas or fsdp shards.",
        choices=(("ddp", "DDP"), ("fsdp", "FSDP")),
    ),
    Param(
        "trackers", str, None,
        "Experiment trackers beside the metrics; empty: tensorboard, wandb, mlflow if set up.",
        choices=tuple((name, name) for name in TRACKERS), optional=True, many=True,
    ),
    Param(
        "divergence_factor", float, 10.0,
        "Stop when the train loss exceeds this multiple of the first; empty disables.",
        minimum=1.0, maximum=1e6, optional=True,
    ),
    Param(
        "lora", bool, False, "Train a LoRA adapter instead of all weights.",
        label="LoRA (train an adapter, not all weights)",
    ),
    Param("lora_r", int, 16, "LoRA rank.", label="LoRA rank", minimum=1, maximum=1024),
    Param(
        "lora_alpha", int, 32, "The adapter's update is scaled by alpha / rank.",
        label="LoRA alpha", minimum=1, maximum=4096,
    ),
    Param(
        "lora_dropout", float, 0.0, "Dropout on the adapter's input.", label="LoRA dropout",
        minimum=0.0, maximum=1.0, exclusive_maximum=True,
    ),
    Param(
        "seed", int, 0, "Seeds data order, the eval split and LoRA initialisation.",
        minimum=0, maximum=SEED_MAX,
    ),
    Param("log_every", int, 1, "Optimizer steps per metrics line.", minimum=1, maximum=10_000),
    Param(
        "eval_every", int, 10, "Optimizer steps between evaluations; 0: only at the end.",
        minimum=0, maximum=1_000_000,
    ),
    Param(
        "save_every", int, 0, "Optimizer steps between checkpoints; 0: only at the end.",
        minimum=0, maximum=1_000_000,
    ),
    Param(
        "keep_checkpoints", int, None, "Keep only the newest this many step checkpoints.",
        minimum=1, maximum=MAX_SAVED_CHECKPOINTS, optional=True,
    ),
)  # fmt: skip

SAMPLING_PARAMS: tuple[Param, ...] = (
    Param(
        "temperature", float, 1.0, "Higher is more varied; 0 always picks the likeliest token.",
        minimum=0.0, maximum=5.0,
    ),
    Param(
        "top_p", float, 0.95, "Sample only from the likeliest tokens that make up this share.",
        minimum=0.01, maximum=1.0,
    ),
    Param(
        "max_new_tokens", int, 128, "Longest completion, in tokens.", minimum=1, maximum=8192,
    ),
    Param(
        "seed", int, 0, "Same seed, checkpoint and prompts: the same completions.",
        minimum=0, maximum=SEED_MAX,
    ),
)  # fmt: skip

RUN_PARAMS_BY_NAME = {param.name: param for param in RUN_PARAMS}
SAMPLING_PARAMS_BY_NAME = {param.name: param for param in SAMPLING_PARAMS}


def check_params(params: Iterable[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values checked against params; the first key that is not allowed raises."""
    by_name = {param.name: param for param in params}
    if not isinstance(values, Mapping):
        raise ParamError("hyperparameters", "must be an object of keys to values")
    for key in values:
        if key not in by_name:
            raise ParamError(
                str(key), "is not a setting you can change (see the list of allowed settings)"
            )
    return {key: by_name[key].check(value) for key, value in values.items()}


def with_defaults(params: Iterable[Param], checked: Mapping[str, Any]) -> dict[str, Any]:
    return {param.name: checked.get(param.name, param.default) for param in params}


def check_run_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a run's hyperparameters, including the rules that tie two of them together, and
    return every parameter: the given values, and the defaults for the rest."""
    given = check_params(RUN_PARAMS, values)
    checked = with_defaults(RUN_PARAMS, given)
    if checked["max_prompt_length"] is None:
        # The prompt budget defaults to half the sequence, whatever max_length is.
        checked["max_prompt_length"] = checked["max_length"] // 2
    if checked["micro_batch_size"] > checked["batch_size"]:
        raise ParamError("micro_batch_size", "must not exceed the batch size")
    if checked["batch_size"] % checked["micro_batch_size"]:
        raise ParamError("micro_batch_size", "must divide the batch size")
    if checked["max_prompt_length"] >= checked["max_length"]:
        raise ParamError("max_prompt_length", "must be below max_length")
    losses = checked["loss_type"] if isinstance(checked["loss_type"], list) else [1]
    weights = checked["loss_weights"]
    if weights is not None and len(weights) != len(losses):
        raise ParamError(
            "loss_weights",
            f"{len(weights)} weight(s) for {len(losses)} loss type(s); give one each",
        )
    limit = max(1, settings.PREFLAB_TRAIN_PROCESSES)
    if checked["processes"] is not None and checked["processes"] > limit:
        raise ParamError(
            "processes", f"at most {limit} (PREFLAB_TRAIN_PROCESSES), got {checked['processes']}"
        )
    # Which losses take label smoothing, and the like, the engine's own check decides.
    max_steps, save_every = checked["max_steps"], checked["save_every"]
    if max_steps is not None and save_every and max_steps / save_every > MAX_SAVED_CHECKPOINTS:
        raise ParamError(
            "save_every",
            f"would save {max_steps // save_every:,} checkpoints over {max_steps:,} steps; "
            f"at most {MAX_SAVED_CHECKPOINTS} are allowed",
        )
    return checked


def check_loss_for_data(loss_type: str | list[str], listwise: bool, data: str) -> None:
    """A listwise snapshot (rankings, ranking_consensus) trains with plackett_luce alone, a pair
    snapshot with pair losses only; ``data`` names the snapshot in the message."""
    losses = loss_type if isinstance(loss_type, list) else [loss_type]
    ranked = [name for name in losses if name in LISTWISE_LOSS_TYPES]
    if listwise and not ranked:
        raise ParamError(
            "loss_type",
            f"{data} holds rankings (listwise rows), which train with plackett_luce only; "
            f"got {', '.join(losses)}",
        )
    if not listwise and ranked:
        raise ParamError(
            "loss_type",
            f"{ranked[0]} trains on rankings, but {data} holds pairs: choose a pair loss, or "
            "export a rankings or ranking_consensus snapshot",
        )


def check_saves_for_steps(values: Mapping[str, Any], total_steps: int) -> None:
    """save_every against the run's real step count (known once the snapshot is known)."""
    save_every = values.get("save_every") or 0
    if save_every and total_steps / save_every > MAX_SAVED_CHECKPOINTS:
        raise ParamError(
            "save_every",
            f"would save {total_steps // save_every:,} checkpoints over about {total_steps:,} "
            f"steps; at most {MAX_SAVED_CHECKPOINTS} are allowed",
        )


def check_sampling_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a sampling job's generation settings; return all of them, defaults filled in."""
    return with_defaults(SAMPLING_PARAMS, check_params(SAMPLING_PARAMS, values))


def check_prompt_limit(prompt_limit: Any, prompt_count: int) -> int | None:
    """A sampling job's prompt count: a whole number from 1 to the project's prompt count."""
    if prompt_limit is None:
        return None
    if isinstance(prompt_limit, bool) or not isinstance(prompt_limit, int):
        raise ParamError("prompt_limit", f"must be a whole number, got {prompt_limit!r}")
    if not 1 <= prompt_limit <= prompt_count:
        raise ParamError(
            "prompt_limit",
            f"must be between 1 and the project's {prompt_count:,} prompts, got {prompt_limit:,}",
        )
    return prompt_limit


def markdown_table(params: Iterable[Param]) -> str:
    """The rows of docs/api.md's run parameter table (tests/api/test_run_params.py keeps the
    docs equal to this; regenerate with ``DEBUG=1 DJANGO_SETTINGS_MODULE=config.settings
    python -c 'import django; django.setup(); from training.params import *;
    print(markdown_table(RUN_PARAMS))'``)."""
    rows = ["| key | type | allowed | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for param in params:
        kind = param.kind.__name__
        if param.many:
            kind = f"{kind} or list of {kind}" if param.single else f"list of {kind}"
        if param.kind is bool:
            allowed = "`true`/`false`"
        elif param.choices:
            allowed = ", ".join(f"`{choice}`" for choice, _ in param.choices)
        elif param.exclusive_maximum:
            allowed = f"≥ {param.minimum:g}, < {param.maximum:g}"
        else:
            allowed = f"{param.minimum:g} … {param.maximum:g}"
        if param.optional:
            allowed += ", or `null`"
        rows.append(
            f"| `{param.name}` | {kind} | {allowed} | `{_json_default(param.default)}` "
            f"| {param.help} |"
        )
    return "\n".join(rows)


def _json_default(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
