"""Per-sequence log-probabilities without the full [batch, length, vocabulary] log-softmax.

The decoder runs once over a (concatenated) batch; the vocabulary projection runs only at the
positions whose NEXT token is a response token, in chunks of ``chunk_size`` tokens, inside a
custom autograd function that recomputes each chunk's logits in backward instead of keeping
them. Log-softmax is always taken in float32, also under bf16 autocast.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError
from .packing import bucket_batch, pack


def _accumulation_dtype(compute_dtype: torch.dtype) -> torch.dtype:
    """Log-softmax runs in float32, or float64 when the matmuls do (for gradient checks)."""
    return torch.float64 if compute_dtype == torch.float64 else torch.float32


class _ChunkedTokenLogps(torch.autograd.Function):
    """log softmax(h @ W.T + b)[target] per row of ``h``, chunk by chunk."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,  # [N, H]
        weight: torch.Tensor,  # [V, H]
        bias: torch.Tensor | None,  # [V]
        targets: torch.Tensor,  # [N] long
        chunk_size: int,
        compute_dtype: torch.dtype,
    ) -> torch.Tensor:
        acc = _accumulation_dtype(compute_dtype)
        out = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
        w = weight.to(compute_dtype)
        b = bias.to(compute_dtype) if bias is not None else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk_size):
                end = start + chunk_size
                logits = F.linear(hidden[start:end].to(compute_dtype), w, b).to(acc)
                picked = logits.gather(1, targets[start:end, None]).squeeze(1)
                out[start:end] = picked - torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.chunk_size = chunk_size
        ctx.compute_dtype = compute_dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        hidden, weight, bias, targets = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        dtype = ctx.compute_dtype
        acc = _accumulation_dtype(dtype)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=acc) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=acc) if need_bias else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], ctx.chunk_size):
                end = start + ctx.chunk_size
                h = hidden[start:end].to(dtype)
                g = grad_out[start:end].to(acc)
                probs = torch.softmax(F.linear(h, w, b).to(acc), dim=-1)
                # d logp[t] / d logits = onehot(t) - softmax(logits)
                d_logits = probs.mul_(-g[:, None])
                d_logits.scatter_add_(1, targets[start:end, None], g[:, None])
                d_logits_c = d_logits.to(dtype)
                if grad_hidden is not None:
                    grad_hidden[start:end] = (d_logits_c @ w).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += (d_logits_c.t() @ h).to(acc)
                if grad_bias is not None:
                    grad_bias += d_logits.sum(0)
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            None,
            None,
            None,
        )


def chunked_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_size: int = 1024,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Log-probabilities [N] of ``targets`` under ``log_softmax(hidden @ weight.T + bias)``.

    They are float32 (float64 when computing in float64).

    ``compute_dtype`` is the matmul dtype (default: the autocast dtype when autocast is on,
    else ``hidden``'s dtype). Peak extra memory is one [chunk_size, V] float32 block.
    """
    if compute_dtype is None:
        device_type = hidden.device.type
        if torch.is_autocast_enabled(device_type):
            compute_dtype = torch.get_autocast_dtype(device_type)
        else:
            compute_dtype = hidden.dtype
    out: torch.Tensor = _ChunkedTokenLogps.apply(
        hidden, weight, bias, targets, chunk_size, compute_dtype
    )
    return out


def check_supported(model: nn.Module) -> None:
    """Refuse models whose logits are not a plain linear head over the last hidden state."""
    config = getattr(model, "config", None)
    if getattr(config, "final_logit_softcapping", None):
        raise ConfigError("models with final_logit_softcapping are not supported by the engine")
    if getattr(config, "logit_scale", 1.0) not in (None, 1.0):
        raise ConfigError("models with a logit_scale are not supported by the engine")
    if getattr(model, "get_output_embeddings", lambda: None)() is None:
        raise ConfigError("the model has no output embedding (language-model head)")


class SequenceLogps(nn.Module):
    """Wraps a causal LM (or a peft model around one); forward gives summed response log-probs.

    Wrapping (rather than calling the model's parts from the training loop) keeps the forward
    inside one module, which is what DistributedDataParallel needs to synchronise gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        chunk_size: int = 1024,
        padding_free: bool = False,
        bucket_rows: int | None = None,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        self.model: Any = model
        self.chunk_size = chunk_size
        self.padding_free = padding_free
        # compiled steps: pad every batch to this many rows and to a bucketed length
        self.bucket_rows = bucket_rows
        self.cuda_graphs = cuda_graphs

    def forward(
        self,
        input_ids: torch.Tensor,  # [N, T]
        attention_mask: torch.Tensor,  # [N, T]
        label_mask: torch.Tensor,  # [N, T] bool: the tokens to score
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logps [N] float32, token counts [N])`` summed over the tokens in ``label_mask``."""
        n = input_ids.shape[0]
        if self.padding_free:
            return self._packed(input_ids, attention_mask, label_mask)
        if self.bucket_rows is not None:
            input_ids, attention_mask, label_mask = bucket_batch(
                input_ids, attention_mask, label_mask, self.bucket_rows
            )
        if self.cuda_graphs:  # a new step: earlier graph outputs are not read again
            torch.compiler.cudagraph_mark_step_begin()
        decoder = self.model.get_decoder()
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = out[0]  # [N, T, H]
        # position t predicts token t + 1: score positions whose next token is a response token
        scored = label_mask[:, 1:]
        rows = scored.nonzero()[:, 0]  # CPU-GPU sync point (the number of scored tokens)
        head = self.model.get_output_embeddings()
        token_logps = chunked_token_logps(
            hidden[:, :-1][scored],
            head.weight,
            head.bias,
            input_ids[:, 1:][scored],
            self.chunk_size,
        )
        logps = torch.zeros(n, dtype=torch.float32, device=input_ids.device)
        logps = logps.index_add(0, rows, token_logps)
        counts = scored[:n].sum(dim=1)
        return logps, counts

    def _packed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, label_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The padding-free step (``training.engine.packing``): one row, no attention mask,
        position ids restarting per sequence."""
        packed = pack(input_ids, attention_mask, label_mask)
        decoder = self.model.get_decoder()
        out = decoder(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False)
        hidden = out[0][0]  # [T, H]
        # t predicts t + 1 only inside one sequence (a next sequence starts with prompt tokens,
        # never scored, but the check keeps that an invariant rather than an assumption)
        same = packed.sequence[1:] == packed.sequence[:-1]
        scored = packed.label_mask[1:] & same
        head = self.model.get_output_embeddings()
        token_logps = chunked_token_logps(
            hidden[:-1][scored],
            head.weight,
            head.bias,
            packed.input_ids[0, 1:][scored],
            self.chunk_size,
        )
        rows = packed.sequence[:-1][scored]
        logps = torch.zeros(packed.rows, dtype=torch.float32, device=input_ids.device)
        logps = logps.index_add(0, rows, token_logps)
        counts = torch.zeros(packed.rows, dtype=torch.long, device=input_ids.device)
        counts = counts.index_add(0, rows, torch.ones_like(rows))
        return logps, counts


def naive_sequence_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    label_mask: torch.Tensor,
) -> torch.Tensor:
    """The textbook computation (full logits, full float32 log-softmax); for tests only."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(2, input_ids[:, 1:, None]).squeeze(2)
    return (logp * label_mask[:, 1:]).sum(1)
