"""``python -m training.engine``: the command line (see docs/engine.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from . import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_DIVERGED, EXIT_FAILED, EXIT_OK
from .config import ConfigError, DPOConfig, SFTConfig, load_config
from .data import DataError

logger = logging.getLogger("training.engine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.engine",
        description="PrefLab's DPO engine: train (DPO), sft, sample, tiny-model.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_text in (
        ("train", "DPO training from a JSON or YAML config"),
        ("sft", "supervised fine-tuning from a JSON or YAML config"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="run config (.json, .yaml or .yml)")
        p.add_argument(
            "--resume",
            action="store_true",
            help="continue from the newest checkpoint in out_dir (starts fresh if there is none)",
        )

    p = sub.add_parser("sample", help="sample completions for a prompts file")
    p.add_argument("--model", required=True, help="checkpoint directory (or hub id)")
    p.add_argument("--prompts", required=True, help="JSONL/Parquet with a 'prompt' column")
    p.add_argument("--out", required=True, help="output JSONL, one line per completion")
    p.add_argument("--num-samples", type=int, default=2, help="completions per prompt (2)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 for greedy (1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (1.0: off)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="(256)")
    p.add_argument("--seed", type=int, default=0, help="(0)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (8)")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model's own code")

    p = sub.add_parser(
        "rankings-to-pairs", help="convert a listwise file (K ranked responses) to pair rows"
    )
    p.add_argument("src", help="JSONL/Parquet with prompt, responses, ranking")
    p.add_argument("dst", help="output JSONL of pairs")
    p.add_argument(
        "--policy",
        choices=("all", "best_worst", "adjacent"),
        default="all",
        help="which implied pairs (all)",
    )

    p = sub.add_parser("tiny-model", help="write a tiny random Llama model and byte tokenizer")
    p.add_argument("out", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (0)")
    p.add_argument("--hidden-size", type=int, default=64, help="(64)")
    p.add_argument("--layers", type=int, default=2, help="(2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status (see ``training.engine.EXIT_*``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except (ConfigError, DataError) as exc:
        logger.error("%s", exc)
        return EXIT_BAD_INPUT
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    from .session import Cancelled, Diverged, Objective

    if args.command in ("train", "sft"):
        from .trainer import run_training

        objective: Objective
        if args.command == "train":
            dpo_config = load_config(DPOConfig, args.config)
            config: DPOConfig | SFTConfig = dpo_config
            if dpo_config.listwise:  # loss_type plackett_luce: rows of K ranked responses
                from .listwise import ListwiseObjective

                objective = ListwiseObjective(dpo_config)
            else:
                from .dpo import DPOObjective

                objective = DPOObjective(dpo_config)
        else:
            from .sft import SFTObjective

            sft_config = load_config(SFTConfig, args.config)
            config = sft_config
            objective = SFTObjective(sft_config)
        from .distributed import launch, under_launcher

        if config.processes > 1 and not under_launcher():
            child = [*(["--quiet"] if args.quiet else []), args.command, "--config", args.config]
            return launch(config.processes, child + (["--resume"] if args.resume else []))
        try:
            summary = run_training(config, objective, resume=args.resume)
        except Cancelled as exc:
            logger.warning("cancelled at step %d; checkpoint: %s", exc.step, exc.checkpoint)
            return EXIT_CANCELLED
        except Diverged as exc:
            logger.error("%s", exc)
            return EXIT_DIVERGED
        if os.environ.get("RANK", "0") == "0":  # one summary, from the main process
            print(json.dumps(summary, indent=2))
        return EXIT_OK
    if args.command == "sample":
        from .sampling import SampleSettings, run_sample

        settings = SampleSettings(
            num_samples=args.num_samples,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            batch_size=args.batch_size,
            trust_remote_code=args.trust_remote_code,
        )
        run_sample(args.model, args.prompts, args.out, settings)
        return EXIT_OK
    if args.command == "rankings-to-pairs":
        from .listwise import rankings_to_pairs

        print(rankings_to_pairs(args.src, args.dst, args.policy))
        return EXIT_OK
    if args.command == "tiny-model":
        from .tiny import build_tiny_model

        path = build_tiny_model(
            args.out, seed=args.seed, hidden_size=args.hidden_size, num_layers=args.layers
        )
        print(path)
        return EXIT_OK
    raise AssertionError(args.command)
