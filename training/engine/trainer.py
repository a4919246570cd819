"""The training loop shared by DPO (``train``) and SFT (``sft``).

Reads top to bottom: set up, tokenise, (reference pass), load the policy, then for each optimizer
step split its batch into micro-batches, accumulate gradients normalised by the step's pairs,
clip, step, and log / evaluate / checkpoint. What differs between DPO and SFT lives in an
:class:`Objective` (see ``dpo.py`` and ``sft.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import distributed as dist_utils
from .config import CommonConfig, ConfigError, config_to_dict, save_config
from .data import epoch_batches, micro_batches, steps_per_epoch
from .fastpath import compile_decoder, plan_compile
from .logprobs import SequenceLogps, check_supported
from .metrics import SCHEMA_VERSION, MetricsWriter
from .modeling import (
    add_lora,
    attention_for,
    check_weights_format,
    load_adapter_weights,
    load_causal_lm,
    load_tokenizer,
    quiet_transformers,
    resolve_precision,
)
from .session import Cancelled, Diverged, Objective, Session, StopFlag
from .tracking import PROJECT_NAME, hparams, log_metrics, resolve_trackers, tensorboard_dir

logger = logging.getLogger(__name__)


def lr_at(step: int, config: CommonConfig, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then decay."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return peak
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    progress = min(1.0, progress)
    floor = config.min_lr_ratio
    if config.lr_schedule == "linear":
        return peak * (floor + (1.0 - floor) * (1.0 - progress))
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_optimizer(model: torch.nn.Module, config: CommonConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on norms and biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
    )


def accumulate_gradients(
    model: torch.nn.Module,
    objective: Objective,
    session: Session,
    step_examples: Sequence[Any],
    micro: Sequence[Sequence[Any]],
    rounds: int | None = None,
) -> dict[str, torch.Tensor]:
    """Forward and backward every micro-batch of one step; returns the summed statistics.

    The loss of each micro-batch is its SUM over examples divided by the whole step's
    denominator, so the accumulated gradient is that of the step's mean, however the step is
    cut into micro-batches (and over processes: DDP and FSDP average, so we scale by their
    number). ``rounds`` (default ``len(micro)``) is the most micro-batches any process has in
    this step: a process with fewer runs the missing ones on a real example with its loss
    multiplied by 0, so that every process takes part in the same collectives.
    """
    accelerator = session.accelerator
    denominator = objective.denominator(step_examples) / accelerator.num_processes
    sums: dict[str, torch.Tensor] = {}
    rounds = len(micro) if rounds is None else rounds
    for i in range(rounds):
        real = i < len(micro)
        examples = micro[i] if real else [step_examples[0]]
        with dist_utils.gradient_sync(model, accelerator, sync=i == rounds - 1):
            loss, stats = objective.forward(model, examples, denominator, session)
            accelerator.backward(loss if real else loss * 0.0)
        if real:
            for key, value in stats.items():
                sums[key] = sums[key] + value if key in sums else value
    return sums


def rank_micro_batches(
    positions: Sequence[int], lengths: Sequence[int], size: int, rank: int, world: int
) -> tuple[list[list[int]], int]:
    """This process's micro-batches of a step, and the most any process has (a pure function
    of the step, so no process needs to ask the others)."""
    mine = list(micro_batches(positions, lengths, size, rank, world))
    most = max(len(list(micro_batches(positions, lengths, size, r, world))) for r in range(world))
    return mine, most


def evaluate(model: torch.nn.Module, objective: Objective, session: Session) -> dict[str, float]:
    config = session.config
    accelerator = session.accelerator
    lengths = [e.length for e in objective.eval]
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        positions = list(range(len(objective.eval)))
        batches, rounds = rank_micro_batches(
            positions,
            lengths,
            config.micro_batch_size,
            accelerator.process_index,
            accelerator.num_processes,
        )
        for i in range(rounds):  # as many forwards on every process (FSDP gathers in each)
            batch = batches[i] if i < len(batches) else [0]
            _loss, stats = objective.forward(
                model, [objective.eval[j] for j in batch], 1.0, session
            )
            if i >= len(batches):
                continue
            for key, value in stats.items():
                sums[key] = sums[key] + value if key in sums else value
    model.train()
    return objective.summarize(_reduce(sums, accelerator))


def _reduce(sums: dict[str, torch.Tensor], accelerator: Any) -> dict[str, float]:
    """Sum over processes and bring to the host (a CPU-GPU sync point)."""
    if not sums:
        return {}
    keys = sorted(sums)
    stacked = torch.stack([sums[k].detach().double().reshape(()) for k in keys])
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="sum")
    return dict(zip(keys, stacked.tolist(), strict=True))


def save_checkpoint(
    session: Session, model: torch.nn.Module, optimizer: Any, step: int, epoch: float
) -> Path:
    config = session.config
    out_dir = Path(config.out_dir)
    final = ckpt.checkpoint_dir(out_dir, step)
    accelerator = session.accelerator
    accelerator.wait_for_everyone()
    # sharded (FSDP) weights and optimizer state: every process takes part in gathering the
    # full state dicts, which land on rank 0 only; replicated (DDP, one process): rank 0's own
    weights: dict[str, torch.Tensor] | None = None
    optimizer_state: dict[str, Any] | None = None
    if dist_utils.is_sharded(model):
        full = dist_utils.full_model_state(model)
        optimizer_state = dist_utils.full_optimizer_state(model, optimizer)
        # the wrapper's "model." prefix off: the Hugging Face model's own names
        weights = {k.removeprefix("model."): v for k, v in full.items()}
    if accelerator.is_main_process:
        with ckpt.staging(final) as tmp:  # a failed save removes its temporary directory
            hf_model = accelerator.unwrap_model(model).model
            hf_model.save_pretrained(tmp, safe_serialization=True, state_dict=weights)
            session.tokenizer.save_pretrained(tmp)
            save_config(config, tmp / "engine_config.json")
            extra = {
                "epoch": epoch,
                "schema_version": SCHEMA_VERSION,
                "initial_loss": session.initial_loss,
            }
            if optimizer_state is None:
                optimizer_state = optimizer.state_dict()
            ckpt.write_trainer_state(tmp, step, optimizer_state, extra)
        ckpt.prune(out_dir, config.keep_checkpoints, protect=final)
        session.writer.write("checkpoint", step=step, path=str(final))
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    return final


def _save_merged(session: Session, model: torch.nn.Module, final: Path) -> None:
    """LoRA runs: also write the merged full model under ``<final checkpoint>/merged``."""
    if not session.config.lora or not session.accelerator.is_main_process:
        return
    import copy

    peft_model = session.accelerator.unwrap_model(model).model
    merged = copy.deepcopy(peft_model).merge_and_unload()
    merged.save_pretrained(final / "merged", safe_serialization=True)
    session.tokenizer.save_pretrained(final / "merged")


def load_policy(session: Session) -> Any:
    """The policy in float32, with LoRA and gradient checkpointing if configured; from the
    resume checkpoint when there is one."""
    config = session.config
    resume = session.resume_from
    start = str(resume) if resume is not None and not config.lora else config.model
    model = load_causal_lm(start, config.trust_remote_code, attention_for(config.padding_free))
    check_supported(model)
    model.config.use_cache = False
    if config.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the transformers 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if config.lora:
        model = add_lora(
            model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules
        )
        if resume is not None:
            load_adapter_weights(model, resume)
    return model.to(session.device)


def run_training(config: CommonConfig, objective: Objective, resume: bool) -> dict[str, Any]:
    """Train to the end; returns the summary (also written to ``<out_dir>/summary.json``)."""
    from accelerate import Accelerator

    quiet_transformers()
    t_start = time.perf_counter()
    out_dir = Path(config.out_dir)
    existing = ckpt.latest_checkpoint(out_dir)
    if existing is not None and not resume:
        raise ConfigError(
            f"{out_dir} already holds checkpoints; pass --resume to continue, or use a new out_dir"
        )
    resume_from = existing if resume else None
    ckpt.remove_temporaries(out_dir)
    precision = resolve_precision(config.precision)
    if precision == "bf16" and not torch.cuda.is_available():
        raise ConfigError("precision 'bf16' needs a CUDA GPU; use 'fp32' or 'auto' on CPU")
    trackers = resolve_trackers(config)
    # cpu=True on a machine without CUDA also lets torchrun start several gloo processes
    accelerator = Accelerator(
        mixed_precision="bf16" if precision == "bf16" else "no",
        cpu=not torch.cuda.is_available(),
        log_with=trackers or None,
        project_dir=str(tensorboard_dir(config)),
    )
    if config.processes > 1 and accelerator.num_processes != config.processes:
        raise ConfigError(
            f"processes is {config.processes} but the engine runs in {accelerator.num_processes} "
            "process(es): start it with python -m training.engine (it launches them), or give "
            "the launcher the same count"
        )
    main = accelerator.is_main_process
    if trackers:
        accelerator.init_trackers(PROJECT_NAME, config=hparams(config_to_dict(config)))
    writer = MetricsWriter(config.metrics_path if main else None, append=resume_from is not None)
    try:
        with StopFlag() as stop:
            session = Session(config, accelerator, writer, None, precision, resume_from, stop)
            return _run(session, objective, t_start)
    except (Cancelled, Diverged):
        raise
    except Exception as exc:
        writer.write("error", error_type=type(exc).__name__, message=str(exc))
        raise
    finally:
        writer.close()
        if trackers:
            accelerator.end_training()
        _reset_accelerate()


def _reference_forwards(objective: Objective, accelerator: Any) -> int | None:
    count = getattr(objective, "reference_forwards", None)
    if count is None:
        return None
    total = torch.tensor([float(count)], device=accelerator.device)
    if accelerator.num_processes > 1:
        total = accelerator.reduce(total, reduction="sum")
    return int(total.item())


def _run(session: Session, objective: Objective, t_start: float) -> dict[str, Any]:
    from accelerate.utils import set_seed

    config = session.config
    accelerator = session.accelerator
    writer = session.writer
    set_seed(config.seed)
    check_weights_format(config.model)  # before the data is read: a pickle model fails fast
    session.tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    objective.prepare(config, session.tokenizer)
    n_train = len(objective.train)
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    total_steps = config.max_steps or per_epoch * config.epochs
    start_step = 0
    optimizer_state: dict[str, Any] | None = None
    rng_state: dict[str, torch.Tensor] | None = None
    if session.resume_from is not None:
        trainer_state, optimizer_state, rng_state = ckpt.read_trainer_state(session.resume_from)
        start_step = int(trainer_state["step"])
        session.initial_loss = trainer_state.get("initial_loss")
        _warn_if_config_changed(config, session.resume_from)
    writer.write(
        "start",
        schema_version=SCHEMA_VERSION,
        command=objective.command,
        config=config_to_dict(config),
        precision=session.precision,
        processes=accelerator.num_processes,
        n_train=n_train,
        n_eval=len(objective.eval),
        truncated=objective.truncated,
        steps_per_epoch=per_epoch,
        total_steps=total_steps,
        resumed_from=str(session.resume_from) if session.resume_from else None,
        start_step=start_step,
    )
    logger.info(
        "%s: %d train / %d eval %s, %d truncated, %d steps",
        objective.command,
        n_train,
        len(objective.eval),
        objective.unit,
        objective.truncated,
        total_steps,
    )

    objective.before_policy(session)
    session.policy = load_policy(session)
    objective.after_policy(session)
    if session.stop.requested:
        writer.write("cancelled", step=start_step, checkpoint=None)
        raise Cancelled(start_step, None)

    plan = plan_compile(config, session.device, accelerator.num_processes)
    # an objective whose example is not 2 sequences (listwise: up to K per ranking) says how
    # many, so that CUDA graphs see one row count per micro-batch
    per_example = getattr(objective, "sequences_per_example", None)
    if plan.bucket_rows is not None and per_example is not None:
        plan = dataclasses.replace(plan, bucket_rows=per_example * config.micro_batch_size)
    compile_decoder(session.policy, plan, config.max_length)
    model = SequenceLogps(
        session.policy,
        config.logprob_chunk_size,
        padding_free=config.padding_free,
        bucket_rows=plan.bucket_rows,
        cuda_graphs=plan.cuda_graphs,
    )
    if config.distributed == "fsdp" and accelerator.num_processes > 1:
        dist_utils.shard(model, session.policy.get_decoder().layers)
        optimizer = build_optimizer(model, config)  # over the shards
        if optimizer_state is not None:
            dist_utils.load_optimizer_state(model, optimizer, optimizer_state)
        if session.precision == "bf16":  # what accelerate.prepare does for the DDP model
            autocast = torch.autocast(session.device.type, dtype=torch.bfloat16)
            model.forward = autocast(model.forward)  # type: ignore[method-assign]
    else:
        optimizer = build_optimizer(model, config)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        model, optimizer = accelerator.prepare(model, optimizer)
    writer.write(
        "engine",
        padding_free=config.padding_free,
        compiled=plan.enabled,
        cuda_graphs=plan.cuda_graphs,
        distributed=config.distributed if accelerator.num_processes > 1 else None,
        processes=accelerator.num_processes,
        trackers=[t.name for t in accelerator.trackers],
    )
    if rng_state is not None:  # last, so that model loading and LoRA init cannot move it
        ckpt.restore_rng(rng_state)
        logger.info("resuming from %s at step %d", session.resume_from, start_step)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps,
        initial=start_step,
        unit="step",
        disable=not (accelerator.is_main_process and sys.stderr.isatty()),
    )
    lengths = [e.length for e in objective.train]
    epoch_cache: dict[int, list[list[int]]] = {}
    window: dict[str, torch.Tensor] = {}
    grad_norms: list[torch.Tensor] = []
    window_time = 0.0
    train_time = 0.0
    trained_rows = 0
    last_train: dict[str, Any] = {}
    last_eval: dict[str, Any] = {}
    last_saved: Path | None = None
    # per step since the last check: (step, its summed statistics, its gradient norm)
    unchecked: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    stat_keys: list[str] = []

    def check_steps(weights: bool = False) -> None:
        """Stop with Diverged at the first step since the last check whose loss or gradient
        norm is not finite, or whose loss exceeds ``divergence_factor`` times the run's first
        step's loss; with ``weights`` (before a save) also when a weight is not finite.

        Runs only where the loop syncs anyway (logging, eval, saving: one transfer for all the
        steps since the last check), so the GPU is never waited for in between; every save is
        preceded by it, so no checkpoint is written after a step that diverged."""
        if not unchecked and not weights:
            return
        rows = [torch.cat([stats, norm.reshape(1)]) for _, stats, norm in unchecked]
        if weights:
            finite = torch.stack([torch.isfinite(dist_utils.local(p)).all() for p in params]).all()
            rows.append(torch.full((len(stat_keys) + 1,), 1.0).to(finite.device) * finite)
        table = torch.stack(rows).double()
        if accelerator.num_processes > 1:
            table = accelerator.reduce(table, reduction="sum")
        values = table.tolist()  # the sync
        steps = [s for s, _, _ in unchecked]
        unchecked.clear()
        factor = config.divergence_factor
        for s, row in zip(steps, values, strict=False):
            norm = row[-1]
            if not all(math.isfinite(v) for v in row):
                message = (
                    f"training diverged at step {s}: the loss or the gradient norm ({norm}) is "
                    f"not finite; stopped without a checkpoint after step {s - 1} "
                    f"(last checkpoint: {last_saved or 'none'})"
                )
                _diverged(session, s, "non_finite", message, last_saved, grad_norm=norm)
            loss = objective.summarize(dict(zip(stat_keys, row[:-1], strict=True)))["loss"]
            start = session.initial_loss
            if start is None:
                session.initial_loss = start = loss
                if factor is not None and not loss > 0:
                    logger.warning(
                        "the first step's loss is %g: the divergence_factor check needs a "
                        "positive starting loss and is off for this run",
                        loss,
                    )
            if factor is not None and start > 0 and loss > factor * start:
                message = (
                    f"training diverged at step {s}: the train loss {loss:.6g} exceeds "
                    f"divergence_factor {factor:g} times the first step's loss {start:.6g}; "
                    f"stopped without a checkpoint after step {s - 1} "
                    f"(last checkpoint: {last_saved or 'none'})"
                )
                _diverged(
                    session,
                    s,
                    "loss_growth",
                    message,
                    last_saved,
                    loss=loss,
                    initial_loss=start,
                    divergence_factor=factor,
                    grad_norm=norm,
                )
        if weights and values[-1][0] < accelerator.num_processes:  # 1 per process: finite
            message = (
                f"training diverged at step {step}: some weights are not finite; stopped "
                f"without saving (last checkpoint: {last_saved or 'none'})"
            )
            _diverged(session, step, "non_finite", message, last_saved)

    step = start_step
    while step < total_steps:
        t0 = time.perf_counter()
        epoch, index = divmod(step, per_epoch)
        if epoch not in epoch_cache:
            epoch_cache = {
                epoch: epoch_batches(
                    lengths,
                    config.batch_size,
                    config.seed,
                    epoch,
                    config.length_bucketing,
                    config.shuffle,
                )
            }
        positions = epoch_cache[epoch][index]
        step_examples = [objective.train[i] for i in positions]
        mine, rounds = rank_micro_batches(
            positions,
            lengths,
            config.micro_batch_size,
            accelerator.process_index,
            accelerator.num_processes,
        )
        micro = [[objective.train[i] for i in mb] for mb in mine]
        lr = lr_at(step, config, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sums = accumulate_gradients(model, objective, session, step_examples, micro, rounds)
        max_norm = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
        if dist_utils.is_sharded(model):  # the norm over every shard (a DTensor)
            grad_norm = dist_utils.full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm))
        else:
            grad_norm = accelerator.clip_grad_norm_(params, max_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        trained_rows += len(step_examples)
        grad_norm_t = torch.as_tensor(grad_norm).detach().float().reshape(())
        stat_keys = stat_keys or list(sums)
        stats_t = torch.stack([sums[k].detach().float().reshape(()) for k in stat_keys])
        unchecked.append((step, stats_t, grad_norm_t.to(stats_t.device)))
        for key, value in sums.items():
            window[key] = window[key] + value if key in window else value
        grad_norms.append(grad_norm_t)
        bar.update(1)

        is_last = step == total_steps
        if step % config.log_every == 0 or is_last:
            check_steps()
            stats = _reduce(window, accelerator)  # CPU-GPU sync point
            window_time += time.perf_counter() - t0
            train_time += window_time
            done_here = step - start_step
            elapsed = time.perf_counter() - t_start
            eta = train_time / done_here * (total_steps - step) if done_here else None
            metrics = objective.summarize(stats)
            metrics["grad_norm"] = float(torch.stack(grad_norms).mean())
            metrics["learning_rate"] = lr
            metrics["tokens_per_second"] = stats.get("tokens", 0.0) / max(window_time, 1e-9)
            metrics[f"{objective.unit}_per_second"] = stats.get(objective.unit, 0.0) / max(
                window_time, 1e-9
            )
            last_train = writer.write(
                "train",
                step=step,
                total_steps=total_steps,
                epoch=round(step / per_epoch, 4),
                **metrics,
                eta_seconds=eta,
                elapsed_seconds=elapsed,
            )
            log_metrics(accelerator, "train", metrics, step)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            window, grad_norms, window_time = {}, [], 0.0
        else:
            window_time += time.perf_counter() - t0

        if objective.eval and (is_last or (config.eval_every and step % config.eval_every == 0)):
            check_steps()
            metrics = evaluate(model, objective, session)
            last_eval = writer.write(
                "eval",
                step=step,
                total_steps=total_steps,
                epoch=round(step / per_epoch, 4),
                **metrics,
            )
            log_metrics(accelerator, "eval", metrics, step)
        if is_last or (config.save_every and step % config.save_every == 0):
            check_steps(weights=True)
            last_saved = save_checkpoint(session, model, optimizer, step, step / per_epoch)
        if not is_last and _stop_requested(session):
            check_steps(weights=True)
            saved = last_saved
            if saved is None or saved != ckpt.checkpoint_dir(Path(config.out_dir), step):
                saved = save_checkpoint(session, model, optimizer, step, step / per_epoch)
            writer.write("cancelled", step=step, checkpoint=str(saved))
            bar.close()
            raise Cancelled(step, saved)
    bar.close()

    final = ckpt.checkpoint_dir(Path(config.out_dir), step)
    if last_saved != final:  # resuming an already finished run
        final = save_checkpoint(session, model, optimizer, step, step / per_epoch)
    _save_merged(session, model, final)
    # what the next round starts from: a full model (LoRA: the merged weights)
    final_model = final / "merged" if config.lora else final
    session.timings["train_seconds"] = train_time
    reference_seconds = session.timings.get("reference_seconds", 0.0)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "command": objective.command,
        "status": "succeeded",
        "steps": step,
        "total_steps": total_steps,
        "final_checkpoint": str(final_model),
        "last_checkpoint": str(final),
        "n_train": n_train,
        "n_eval": len(objective.eval),
        "truncated": objective.truncated,
        "train": {k: v for k, v in last_train.items() if k not in ("event", "time")},
        "eval": {k: v for k, v in last_eval.items() if k not in ("event", "time")},
        "reference_seconds": reference_seconds,
        # reference micro-batches run, over all processes: 0 when the reference cache was hit
        "reference_forwards": _reference_forwards(objective, accelerator),
        "train_seconds": train_time,
        "total_seconds": time.perf_counter() - t_start,
        f"train_{objective.unit}_per_second": trained_rows / max(train_time, 1e-9),
        f"end_to_end_{objective.unit}_per_second": trained_rows
        / max(train_time + reference_seconds, 1e-9),
    }
    if accelerator.is_main_process:
        import json

        summary_path = Path(config.out_dir) / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        writer.write(
            "done", step=step, final_checkpoint=str(final_model), summary=str(summary_path)
        )
    return summary


def _diverged(
    session: Session,
    step: int,
    reason: str,
    message: str,
    checkpoint: Path | None,
    **fields: Any,
) -> None:
    """Write the ``diverged`` event and raise :class:`Diverged` (exit status 4)."""
    session.writer.write(
        "diverged",
        step=step,
        reason=reason,
        message=message,
        checkpoint=str(checkpoint) if checkpoint else None,
        **fields,
    )
    raise Diverged(step, reason, message, checkpoint)


def _stop_requested(session: Session) -> bool:
    """Whether any process got SIGTERM: all of them must stop at the same step, or the
    checkpoint's barrier would wait forever."""
    requested = session.stop.requested
    accelerator = session.accelerator
    if accelerator.num_processes > 1:
        flag = torch.tensor([1.0 if requested else 0.0], device=session.device)
        requested = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
    return requested


def _warn_if_config_changed(config: CommonConfig, checkpoint: Path) -> None:
    """A resumed run is exact only with the config it started with."""
    import json

    saved_file = checkpoint / "engine_config.json"
    if not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text())
    current = config_to_dict(config)
    changed = sorted(k for k in current if saved.get(k) != current[k])
    if changed:
        logger.warning(
            "resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed)
        )


def _reset_accelerate() -> None:
    """Let a later run in the same process (tests, benchmark) build a fresh Accelerator."""
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except Exception:  # a private API; failing to reset only matters in-process
        logger.debug("could not reset accelerate state", exc_info=True)
