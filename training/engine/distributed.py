"""Several processes: starting them, sharding (FSDP), and full state dicts for checkpoints.

**Starting.** ``processes: N`` in a run config makes ``python -m training.engine train`` start N
copies of itself on this machine (:func:`launch`), one per GPU (gloo processes on a CPU), with
the environment ``torch.distributed`` reads (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); SIGTERM and SIGINT are passed on to all of them and the exit
status is the engine's (3 when cancelled). Under an outside launcher (``torchrun``,
``accelerate launch``) the engine uses the processes it was given.

**DDP** (``distributed: ddp``): accelerate wraps the model; every process holds all weights.

**FSDP** (``distributed: fsdp``): every decoder layer, and then the whole model, is sharded
with FSDP2 (``torch.distributed.fsdp.fully_shard``), so each process holds ``1/N`` of the
weights, gradients and AdamW moments. accelerate 1.15 turns its FSDP plugin on only for GPU
backends (its ``AcceleratorState`` leaves a ``MULTI_CPU`` run un-sharded), so the engine shards
itself, the same way on GPUs and CPUs; that is what lets the CPU tests cover the GPU code path.
A checkpoint gathers the full weights and optimizer state with
``torch.distributed.checkpoint.state_dict`` on every process and only rank 0 writes them, in the
same files and layout as a one-process run.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

logger = logging.getLogger(__name__)

LAUNCHED_ENV = "PREFLAB_ENGINE_LAUNCHED"


# ----------------------------------------------------------------------------------------------
# starting processes


def under_launcher() -> bool:
    return "WORLD_SIZE" in os.environ or os.environ.get(LAUNCHED_ENV) == "1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(processes: int, argv: Sequence[str]) -> int:
    """Run ``python -m training.engine *argv`` in ``processes`` ranks; returns the exit status.

    All ranks finished with 0: 0. Any rank cancelled (3) and none failed: 3. Otherwise the
    status of the rank that failed first, after the other ranks were stopped.
    """
    from . import EXIT_CANCELLED, EXIT_OK

    env_base = {
        **os.environ,
        LAUNCHED_ENV: "1",
        "WORLD_SIZE": str(processes),
        "LOCAL_WORLD_SIZE": str(processes),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    env_base.setdefault("OMP_NUM_THREADS", "1")
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "training.engine", *argv],
            env={**env_base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
        )
        for rank in range(processes)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    first_failure: int | None = None
    try:
        codes: list[int | None] = [None] * processes
        while any(c is None for c in codes):
            for i, child in enumerate(children):
                if codes[i] is None:
                    try:
                        codes[i] = child.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        continue
                    if codes[i] not in (EXIT_OK, EXIT_CANCELLED) and first_failure is None:
                        first_failure = codes[i]
                        # a rank died: the others would wait for it forever in a collective
                        for other in children:
                            if other.poll() is None:
                                other.terminate()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    if first_failure is not None:
        return first_failure
    return EXIT_CANCELLED if EXIT_CANCELLED in codes else EXIT_OK


# ----------------------------------------------------------------------------------------------
# FSDP


def shard(model: torch.nn.Module, decoder_layers: Sequence[torch.nn.Module]) -> None:
    """FSDP2 over each decoder layer, then the rest of ``model`` (embeddings, norm, head)."""
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers:
        fully_shard(layer)
    fully_shard(model)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def gradient_sync(
    model: torch.nn.Module, accelerator: Any, sync: bool
) -> AbstractContextManager[Any]:
    """Skip the gradient all-reduce / reduce-scatter on every micro-batch but a step's last."""
    if is_sharded(model):
        return _fsdp_sync(model, sync)
    return nullcontext() if sync else accelerator.no_sync(model)


@contextmanager
def _fsdp_sync(model: Any, sync: bool) -> Any:
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_tensor(value: Any) -> torch.Tensor:
    """A DTensor (a sharded gradient norm) as a plain tensor; other tensors as they are."""
    to_full = getattr(value, "full_tensor", None)
    return to_full() if to_full is not None else torch.as_tensor(value)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a sharded parameter (a DTensor); other tensors as they are."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


def _names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The fully qualified name of each optimizer parameter, in the optimizer's id order."""
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every process must call this; rank 0 gets the full CPU state dict, others ``{}``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state: dict[str, torch.Tensor] = dict(get_model_state_dict(model, options=options))  # type: ignore[arg-type]
    return state


def full_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Every process must call this; rank 0 gets the full optimizer state in the layout of
    ``optimizer.state_dict()`` (integer parameter ids), others ``{}``."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    by_name: Any = get_optimizer_state_dict(model, optimizer, options=options)
    if not by_name:
        return {}
    ids = {name: i for i, name in enumerate(_names(model, optimizer))}
    groups = []
    for group in by_name["param_groups"]:
        groups.append({**group, "params": [ids[name] for name in group["params"]]})
    state = {ids[name]: value for name, value in by_name["state"].items()}
    return {"state": state, "param_groups": groups}


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a full ``optimizer.state_dict()``-layout state into a sharded model's optimizer
    (every process passes the whole state; each keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    names = _names(model, optimizer)
    by_name: Any = {
        "state": {names[int(i)]: value for i, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[int(i)] for i in group["params"]]}
            for group in state["param_groups"]
        ],
    }
    set_optimizer_state_dict(
        model, optimizer, by_name, options=StateDictOptions(full_state_dict=True)
    )
