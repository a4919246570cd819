"""Loading models and tokenizers safely (safetensors only; no remote code unless configured)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError

logger = logging.getLogger(__name__)

# files that hold pickled weights: loading them can run arbitrary code, so they are never loaded
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_weights_format(path: str) -> None:
    """Refuse a local model directory whose weights are only pickles (``pytorch_model.bin``...).

    A hub id is left to ``from_pretrained(use_safetensors=True)``, which refuses those itself.
    """
    p = Path(path)
    if not p.is_dir():
        return
    names = sorted(f.name for f in p.iterdir() if f.is_file())
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ConfigError(
            f"{path}: the weights are pickle files ({', '.join(pickles[:3])}); only safetensors "
            "are loaded, since unpickling can run arbitrary code. Convert the model once, in a "
            "trusted environment: AutoModelForCausalLM.from_pretrained(path)."
            "save_pretrained(out, safe_serialization=True)"
        )
    raise ConfigError(f"{path}: no model weights (*.safetensors) in this directory")


def quiet_transformers() -> None:
    """No download/loading progress bars from transformers and huggingface_hub in our logs."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def resolve_precision(precision: str) -> str:
    """``"bf16"`` (autocast over float32 weights) or ``"fp32"``; ``auto`` picks bf16 on a GPU
    that supports it and fp32 elsewhere (CPU bf16 autocast is slow and gains nothing here)."""
    if precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return precision


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:  # no such directory or hub id, or no tokenizer files in it
        raise ConfigError(f"cannot load a tokenizer from {path}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        # padding is always masked out, so any id will do; EOS is the usual choice
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{path}: the tokenizer has neither a pad nor an EOS token")
    return tokenizer


def load_causal_lm(
    path: str, trust_remote_code: bool = False, attn_implementation: str | None = None
) -> Any:
    """A causal LM with float32 weights (the master copy; bf16 happens under autocast).

    A LoRA checkpoint directory (adapter files only) loads as its base model plus the adapter.
    """
    from transformers import AutoModelForCausalLM

    check_weights_format(path)
    # None keeps transformers' default attention (sdpa where the model supports it)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.float32,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            **extra,
        )
    except OSError as exc:  # no such directory or hub id, missing files, no safetensors on the hub
        raise ConfigError(f"cannot load a model from {path}: {exc}") from exc
    return model


def attention_for(padding_free: bool) -> str | None:
    """flash_attention_2 for padding-free batches on a CUDA GPU with flash-attn installed (its
    variable-length kernel reads the sequence boundaries from the position ids); else None,
    transformers' default, whose sdpa and eager attentions mask the packed row block-diagonally."""
    import importlib.util

    if padding_free and torch.cuda.is_available() and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return None


def is_adapter_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def add_lora(
    model: Any, r: int, alpha: int, dropout: float, targets: tuple[str, ...] | None
) -> Any:
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets) if targets else "all-linear",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora_config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    logger.info("LoRA adapter with %d trainable parameters", trainable)
    return peft_model


def load_adapter_weights(model: Any, checkpoint: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    result: Any = set_peft_model_state_dict(model, weights)
    unexpected = list(getattr(result, "unexpected_keys", None) or [])
    if unexpected:
        raise ValueError(f"{checkpoint}: unexpected adapter weights {unexpected[:5]}")


def model_identity(path: str) -> dict[str, Any]:
    """What identifies a model's weights, for cache keys: file sizes and modification times of a
    local directory's weight files, or the hub id."""
    p = Path(path)
    if not p.is_dir():
        return {"hub_id": path}
    files = sorted(f for f in p.iterdir() if f.suffix in {".safetensors", ".json"} and f.is_file())
    return {
        "path": str(p.resolve()),
        "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    }
