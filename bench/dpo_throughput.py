"""DPO training throughput: PrefLab's engine against TRL's DPOTrainer, same model, same data.

    python bench/dpo_throughput.py                     # CPU smoke check with the tiny model
    python bench/dpo_throughput.py --preset qwen0.5b   # GPU: random ~0.5B Qwen2-like model
    python bench/dpo_throughput.py --preset llama1b    # GPU: random Llama-1B-like, vocab 128,256
    bench/gpu_compare.sh                               # GPU: both presets, one call

Both trainers get the same randomly initialised model (float32 master weights; bf16 autocast
where the GPU supports it, else fp32), the same synthetic pairs (prompt and responses of fixed
token lengths), batch size, learning rate and beta, each with and without gradient
checkpointing. Both compute the reference log-probs once before training: TRL with
``precompute_ref_log_probs=True`` (``--trl-reference inline`` runs TRL's reference inside every
step instead), ours with its reference pass. Reported per run: steady-state pairs/s (steps after
the warm-up; no reference work in them for either), end-to-end pairs/s (every step plus every
reference pass over the same pairs), tokens/s, peak GPU memory, and model FLOPs utilisation:
6 x parameters x tokens/s over the measured peak of a large matmul (bf16 on GPU, fp32 on CPU).
With ``--repeats N`` each engine runs N times, interleaved, and the best figure of each is shown.
The machine's load average (``os.getloadavg``) is printed before and after every measured run:
other work on the machine skews both engines, so compare ratios from quiet runs.

TRL is a benchmark-only dependency (``pip install trl``); without it only our engine runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    # the tiny test model: a smoke check that runs in seconds on a CPU
    "tiny": {"prompt_len": 64, "response_len": 64, "batch": 8, "steps": 40, "warmup": 5},
    # ~0.5B parameters, Qwen2 shapes, vocabulary 151,936 (the GPU setting)
    "qwen0.5b": {"prompt_len": 256, "response_len": 256, "batch": 8, "steps": 30, "warmup": 5},
    # ~1.2B parameters, Llama 3.2 1B shapes, vocabulary 128,256 (where chunked log-probs matter)
    "llama1b": {"prompt_len": 256, "response_len": 256, "batch": 8, "steps": 20, "warmup": 5},
}


def load() -> str:
    """The 1, 5 and 15 minute load averages, as printed."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def build_model(preset: str, out: Path) -> Path:
    from training.engine.tiny import build_tiny_model, build_tiny_tokenizer

    if preset == "tiny":
        return build_tiny_model(out, seed=0)
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer()
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config: Any
    if preset == "qwen0.5b":
        config = Qwen2Config(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            **ids,
        )
        cls: Any = Qwen2ForCausalLM
    else:
        config = LlamaConfig(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            tie_word_embeddings=True,
            **ids,
        )
        cls = LlamaForCausalLM
    torch.manual_seed(0)
    # random initialisation of a billion parameters is much faster on the GPU
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = cls(config)
    model.save_pretrained(out, safe_serialization=True)
    del model
    tokenizer.save_pretrained(out)
    return out


def make_pairs(n: int, prompt_len: int, response_len: int) -> list[dict[str, str]]:
    """Byte-tokenizer text: a prompt of prompt_len tokens with its BOS, responses of
    response_len tokens with their EOS."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz "

    def text(k: int) -> str:
        return "".join(rng.choice(letters) for _ in range(k))

    return [
        {
            "prompt": text(prompt_len - 1),
            "chosen": text(response_len - 1),
            "rejected": text(response_len - 1),
        }
        for _ in range(n)
    ]


def matmul_peak_flops(device: str) -> float:
    """Measured peak of a large matmul: bf16 on a GPU, fp32 on a CPU."""
    if device == "cuda":
        n, dtype, reps = 8192, torch.bfloat16, 30
    else:
        n, dtype, reps = 1024, torch.float32, 10
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def run_ours(
    model_dir: Path, data: Path, work: Path, args: argparse.Namespace, checkpointing: bool
) -> dict[str, Any]:
    from training.engine.config import DPOConfig
    from training.engine.dpo import DPOObjective
    from training.engine.metrics import read_metrics
    from training.engine.trainer import run_training

    out = Path(tempfile.mkdtemp(prefix="ours-", dir=work))
    config = DPOConfig(
        data=str(data),
        model=str(model_dir),
        out_dir=str(out),
        eval_fraction=0.0,
        max_length=args.prompt_len + args.response_len,
        max_prompt_length=args.prompt_len,
        batch_size=args.batch,
        micro_batch_size=args.micro_batch or args.batch,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-6,
        warmup_steps=0,
        log_every=1,
        beta=0.1,
        gradient_checkpointing=checkpointing,
        length_bucketing=True,
        compile=args.compile,
        padding_free=args.padding_free,
        trackers=(),
    )
    reset_memory(args.device)
    summary = run_training(config, DPOObjective(config), resume=False)
    train = [e for e in read_metrics(out / "metrics.jsonl") if e["event"] == "train"]
    steady = train[args.warmup :]
    step_seconds = sum(e["pairs"] / e["pairs_per_second"] for e in steady)
    pairs = sum(e["pairs"] for e in steady)
    tokens = sum(e["tokens_per_second"] * e["pairs"] / e["pairs_per_second"] for e in steady)
    return {
        "pairs_per_second": pairs / step_seconds,
        "end_to_end_pairs_per_second": summary["end_to_end_pairs_per_second"],
        "tokens_per_second": tokens / step_seconds,
        "reference_seconds": summary["reference_seconds"],
        "peak_memory_gib": peak_memory_gib(args.device),
    }


def run_trl(
    model_dir: Path,
    rows: list[dict[str, str]],
    work: Path,
    args: argparse.Namespace,
    checkpointing: bool,
) -> dict[str, Any]:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()
    os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference precompute bar

    class TimedDPOTrainer(DPOTrainer):  # type: ignore[misc]
        """TRL's trainer, timing its reference precompute (it runs in the constructor)."""

        reference_seconds = 0.0

        def _precompute_ref_logps(self, *a: Any, **k: Any) -> Any:
            sync(args.device)
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(*a, **k)
            sync(args.device)
            TimedDPOTrainer.reference_seconds += time.perf_counter() - t0
            return out

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            sync(args.device)
            self._t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            sync(args.device)
            self.durations.append(time.perf_counter() - self._t0)

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    bf16 = args.device == "cuda" and torch.cuda.is_bf16_supported()
    trl_args = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-", dir=work),
        per_device_train_batch_size=args.micro_batch or args.batch,
        gradient_accumulation_steps=args.batch // (args.micro_batch or args.batch),
        max_steps=args.warmup + args.steps,
        learning_rate=1e-6,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        beta=0.1,
        max_length=args.prompt_len + args.response_len,
        bf16=bf16,
        gradient_checkpointing=checkpointing,
        logging_steps=args.warmup + args.steps,
        disable_tqdm=True,
        save_strategy="no",
        report_to="none",
        use_cpu=args.device != "cuda",
        seed=0,
        precompute_ref_log_probs=args.trl_reference == "precompute",
    )
    timer = StepTimer()
    reset_memory(args.device)
    TimedDPOTrainer.reference_seconds = 0.0
    trainer = TimedDPOTrainer(
        model=model,
        args=trl_args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    t0 = time.perf_counter()
    trainer.train()
    sync(args.device)
    total = time.perf_counter() - t0 + TimedDPOTrainer.reference_seconds
    steady = timer.durations[args.warmup :]
    tokens_per_pair = 2 * (args.prompt_len + args.response_len)
    pairs_per_second = args.batch * len(steady) / sum(steady)
    return {
        "pairs_per_second": pairs_per_second,
        "end_to_end_pairs_per_second": args.batch * len(timer.durations) / total,
        "tokens_per_second": pairs_per_second * tokens_per_pair,
        # precompute: the pass before training; inline: inside every step (counted in them)
        "reference_seconds": TimedDPOTrainer.reference_seconds,
        "peak_memory_gib": peak_memory_gib(args.device),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--steps", type=int, help="measured steps after the warm-up")
    parser.add_argument("--warmup", type=int, help="warm-up steps left out of steady state")
    parser.add_argument("--batch", type=int, help="pairs per optimizer step")
    parser.add_argument("--micro-batch", type=int, help="pairs per forward (default: --batch)")
    parser.add_argument("--prompt-len", type=int)
    parser.add_argument("--response-len", type=int)
    parser.add_argument("--checkpointing", choices=["off", "on", "both"], default="both")
    parser.add_argument("--skip-trl", action="store_true", help="run our engine only")
    parser.add_argument(
        "--trl-reference",
        choices=["precompute", "inline"],
        default="precompute",
        help="TRL's reference: precompute_ref_log_probs=True (default) or inside every step",
    )
    parser.add_argument(
        "--compile", choices=["auto", "off", "on"], default="auto", help="our engine's compile"
    )
    parser.add_argument(
        "--padding-free", action="store_true", help="our engine packs sequences without padding"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per engine and setting; the best is shown"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    logging.basicConfig(level=logging.WARNING)
    from training.engine.modeling import quiet_transformers

    quiet_transformers()

    trl_available = False
    trl_version = None
    if not args.skip_trl:
        try:
            import trl

            trl_available = True
            trl_version = trl.__version__
        except ImportError:
            print("trl is not importable (pip install trl): running our engine only, no ratios")
    if trl_available:
        print(f"trl {trl_version}")

    with tempfile.TemporaryDirectory(prefix="dpo-bench-") as tmp:
        work = Path(tmp)
        model_dir = build_model(args.preset, work / "model")
        n_params = sum(
            p.numel()
            for p in __import__("transformers")
            .AutoModelForCausalLM.from_pretrained(str(model_dir))
            .parameters()
        )
        rows = make_pairs(
            args.batch * (args.warmup + args.steps), args.prompt_len, args.response_len
        )
        data = work / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        peak = matmul_peak_flops(args.device)
        device_name = (
            torch.cuda.get_device_name()
            if args.device == "cuda"
            else f"CPU x{torch.get_num_threads()} threads"
        )
        print(
            f"device: {device_name}; preset {args.preset}: {n_params / 1e6:.2f}M parameters, "
            f"prompt {args.prompt_len} + responses {args.response_len} tokens, batch "
            f"{args.batch} pairs, {args.warmup} warm-up + {args.steps} measured steps; "
            f"matmul peak {peak / 1e12:.2f} TFLOP/s"
        )
        print(
            f"ours: compile {args.compile}, padding_free {args.padding_free}; TRL reference: "
            f"{args.trl_reference}; repeats {args.repeats}; load average {load()}"
        )
        settings = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing]
        results: list[dict[str, Any]] = []
        # one short untimed run of each first: one-time costs (kernel selection, allocator
        # growth, lazy imports) stay out of both the steady and the end-to-end figures
        short = argparse.Namespace(**{**vars(args), "warmup": 1, "steps": 1})
        short_data = work / "warmup.jsonl"
        short_data.write_text("".join(json.dumps(r) + "\n" for r in rows[: 2 * args.batch]))
        run_ours(model_dir, short_data, work, short, settings[0])
        if trl_available:
            run_trl(model_dir, rows[: 2 * args.batch], work, short, settings[0])
        for checkpointing in settings:
            tries: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
            loads = [load()]
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                tries["ours"].append(run_ours(model_dir, data, work, args, checkpointing))
                loads.append(load())
                if trl_available:
                    tries["trl"].append(run_trl(model_dir, rows, work, args, checkpointing))
                    loads.append(load())
            runs = {name: best_of(t) for name, t in tries.items() if t}
            for name, r in runs.items():
                r["mfu"] = 6 * n_params * r["tokens_per_second"] / peak
                r.update(engine=name, gradient_checkpointing=checkpointing, load_averages=loads)
                results.append(r)
            print_table(runs, checkpointing)
            print(f"load average (1, 5, 15 min) before and after each run: {' | '.join(loads)}")
    if args.json:
        payload = {
            "device": device_name,
            "preset": vars(args) | {"json": None},
            "parameters": n_params,
            "matmul_peak_flops": peak,
            "results": results,
            "trl_version": trl_version if trl_available else None,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


def best_of(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the best of the repeats (throughputs: highest; memory: highest seen)."""
    best = dict(tries[0])
    for key in ("pairs_per_second", "end_to_end_pairs_per_second", "tokens_per_second"):
        best[key] = max(t[key] for t in tries)
    memories = [t["peak_memory_gib"] for t in tries if t["peak_memory_gib"] is not None]
    best["peak_memory_gib"] = max(memories) if memories else None
    best["repeats"] = len(tries)
    return best


def print_table(runs: dict[str, dict[str, Any]], checkpointing: bool) -> None:
    print(f"\ngradient checkpointing: {'on' if checkpointing else 'off'}")
    print(
        f"{'engine':<6} {'pairs/s':>9} {'e2e pairs/s':>12} {'tokens/s':>10} "
        f"{'peak GiB':>9} {'MFU':>7}"
    )
    for name, r in runs.items():
        mem = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a"
        print(
            f"{name:<6} {r['pairs_per_second']:>9.2f} {r['end_to_end_pairs_per_second']:>12.2f} "
            f"{r['tokens_per_second']:>10.0f} {mem:>9} {r['mfu']:>7.1%}"
        )
    if "trl" in runs:
        ours, trl = runs["ours"], runs["trl"]
        line = (
            f"ratio ours/TRL: steady {ours['pairs_per_second'] / trl['pairs_per_second']:.2f}x,"
            f" end to end "
            f"{ours['end_to_end_pairs_per_second'] / trl['end_to_end_pairs_per_second']:.2f}x"
        )
        if ours["peak_memory_gib"] is not None:
            line += f", peak memory {ours['peak_memory_gib'] / trl['peak_memory_gib']:.2f}x"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
