"""Padding-free batches and fixed-shape buckets for the model step.

**Packing.** A right-padded micro-batch ``[N, T]`` becomes one row of its real tokens only,
``[1, sum of lengths]``, with position ids that restart at 0 for each sequence. transformers
reads sequence boundaries from such position ids when no attention mask is passed: flash
attention runs its variable-length kernel over them, and the sdpa and eager attentions build the
block-diagonal causal mask (no token attends across a boundary). Because every sequence keeps
its own positions 0..L-1, each token sees exactly what it saw in the padded batch, so the
per-example log-probs are equal up to floating-point rounding (tested against the padded path).

**Buckets.** A compiled step (and above all a CUDA graph) is specialised to its input shapes.
:func:`bucket_batch` pads the sequence dimension up to a multiple of :data:`LENGTH_BUCKET` and
the row dimension up to a fixed row count, with rows that are copies of the first row and score
nothing, so a run only ever sees ``max_length / LENGTH_BUCKET`` shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LENGTH_BUCKET = 64  # tokens: sequence lengths are padded up to a multiple of this when compiled


@dataclass(frozen=True)
class PackedBatch:
    input_ids: torch.Tensor  # [1, T] the real tokens of every sequence, back to back
    position_ids: torch.Tensor  # [1, T] 0..L_i-1 for each sequence i
    label_mask: torch.Tensor  # [T] bool: the tokens to score
    sequence: torch.Tensor  # [T] long: which input row each token came from
    rows: int  # N, the number of sequences


def pack(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, label_mask: torch.Tensor
) -> PackedBatch:
    """Drop the padding of a right- (or left-) padded batch; see the module docstring."""
    keep = attention_mask.bool()
    n = input_ids.shape[0]
    positions = keep.long().cumsum(dim=1) - 1
    sequence = torch.arange(n, device=input_ids.device)[:, None].expand_as(input_ids)
    return PackedBatch(
        input_ids=input_ids[keep][None],
        position_ids=positions[keep][None],
        label_mask=label_mask[keep],
        sequence=sequence[keep],
        rows=n,
    )


def bucket_length(length: int, bucket: int = LENGTH_BUCKET) -> int:
    return max(bucket, -(-length // bucket) * bucket)


def bucket_batch(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    label_mask: torch.Tensor,
    rows: int,
    bucket: int = LENGTH_BUCKET,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad ``[N, T]`` to ``[max(N, rows), bucket_length(T)]``.

    New columns are padding (mask 0, never scored). New rows repeat row 0 with nothing scored:
    a copy of a real row, not an all-padding row, because a row that attends to nothing gives
    NaN attention weights whose gradients would leak into the shared weights.
    """
    n, t = input_ids.shape
    width = bucket_length(t, bucket)
    extra_rows = max(0, rows - n)
    if width == t and not extra_rows:
        return input_ids, attention_mask, label_mask
    ids = input_ids.new_zeros((n + extra_rows, width))
    mask = attention_mask.new_zeros((n + extra_rows, width))
    labels = label_mask.new_zeros((n + extra_rows, width))
    ids[:n, :t] = input_ids
    mask[:n, :t] = attention_mask
    labels[:n, :t] = label_mask
    if extra_rows:
        ids[n:, :t] = input_ids[:1]
        mask[n:, :t] = attention_mask[:1]
    return ids, mask, labels
