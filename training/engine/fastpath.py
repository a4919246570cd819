"""The compiled fast path: ``torch.compile`` of the decoder, CUDA graphs over bucketed shapes.

``compile: auto`` (the default) compiles on a CUDA GPU and stays eager on a CPU, where compile
time dominates a short run; ``on`` compiles anywhere (a CPU needs a C++ compiler for inductor);
``off`` never compiles. On a GPU the compiled decoder runs as CUDA graphs
(``mode="reduce-overhead"``), which removes the per-kernel launch cost that dominates
small-batch steps; CUDA graphs replay fixed shapes, so every micro-batch is padded to
``2 * micro_batch_size`` rows and a length rounded up to ``packing.LENGTH_BUCKET`` tokens
(:func:`training.engine.packing.bucket_batch`); a run then records at most
``max_length / LENGTH_BUCKET`` graphs. Padding-free batches have a different total length every
step, so with ``padding_free`` the decoder is compiled without CUDA graphs and without buckets.

Only the decoder is compiled, in place (``nn.Module.compile``), so parameter names, state dicts
and checkpoints are those of the eager model; the chunked log-prob head stays eager.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import Any

import torch

from .config import CommonConfig, ConfigError
from .packing import LENGTH_BUCKET

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompilePlan:
    enabled: bool
    cuda_graphs: bool = False
    bucket_rows: int | None = None  # rows every compiled batch is padded to
    reason: str = ""

    @property
    def mode(self) -> str:
        return "reduce-overhead" if self.cuda_graphs else "default"


def plan_compile(config: CommonConfig, device: torch.device, processes: int = 1) -> CompilePlan:
    """What ``config.compile`` means on ``device`` with ``processes`` processes (see the module
    docstring). ``auto`` stays conservative where the combination is untested: with several
    processes it compiles without CUDA graphs, and an FSDP run stays eager."""
    if config.compile == "off":
        return CompilePlan(False, reason="compile: off")
    if config.compile == "auto" and device.type != "cuda":
        return CompilePlan(False, reason="compile: auto stays eager on a CPU")
    if config.compile == "auto" and processes > 1 and config.distributed == "fsdp":
        return CompilePlan(False, reason="compile: auto stays eager under FSDP")
    if device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        raise ConfigError("compile: on needs a C++ compiler (c++ or g++) on a CPU machine")
    cuda_graphs = device.type == "cuda" and not config.padding_free
    if config.compile == "auto" and processes > 1:
        cuda_graphs = False
    rows = None if config.padding_free else 2 * config.micro_batch_size
    return CompilePlan(True, cuda_graphs=cuda_graphs, bucket_rows=rows)


def compile_decoder(
    model: Any, plan: CompilePlan, max_length: int, backend: str = "inductor"
) -> None:
    """Compile ``model``'s decoder in place according to ``plan`` (``backend`` other than
    inductor only in tests: ``aot_eager`` checks graph capture without code generation)."""
    if not plan.enabled:
        return
    import torch._dynamo

    # one compiled graph per bucket, forward and eval (no_grad) alike, plus some slack
    shapes = 2 * (-(-max_length // LENGTH_BUCKET)) + 8
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), shapes))
    decoder = model.get_decoder()
    options: dict[str, Any] = {"dynamic": False if plan.bucket_rows else None}
    if backend == "inductor":
        options["mode"] = plan.mode
    decoder.compile(backend=backend, **options)
    logger.info(
        "compiled the decoder (mode %s%s)",
        plan.mode,
        f", buckets of {LENGTH_BUCKET} tokens x {plan.bucket_rows} rows"
        if plan.bucket_rows
        else "",
    )
