"""Judge throughput: judged comparisons per second (each comparison in both orders).

1. Reward-model judge (judging.kinds.reward_model, pointwise, batched) on a tiny
   Llama-architecture sequence-classification model built locally (``--hidden``, ``--layers``),
   against the baseline of calling transformers directly in a plain loop: one text at a time,
   each comparison's two texts once, ``model(**tokenizer([text]))``. Prints both rates and
   the ratio judge / plain loop.
   On a GPU (``--device cuda``) the same comparison runs there; this session had no GPU, so
   only the CPU figures were measured (docs/judges.md).
2. LLM judge (judging.kinds.llm) against an OpenAI-compatible chat-completions server started
   on loopback in this process, answering every request after ``--latency`` seconds. Measured
   with concurrency 1 (the baseline) and ``--concurrency``; the goal (issue 12) is requests/s
   of at least 0.8 x concurrency / latency, i.e. concurrency hides latency. Prints both rates,
   the speedup and the ratio to concurrency / latency.

Usage::

    .venv/bin/python bench/judge_throughput.py
    .venv/bin/python bench/judge_throughput.py --comparisons 256 --latency 0.1 --concurrency 16
    .venv/bin/python bench/judge_throughput.py --skip-rm      # only the LLM part

Nothing is written to a database: the kinds are driven directly, as a judging job drives them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.05, help="LLM server latency, s")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16, help="reward-model batch size")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=2, help="keep each side's best run")
    parser.add_argument("--skip-rm", action="store_true")
    parser.add_argument("--skip-llm", action="store_true")
    return parser.parse_args(argv)


def pairs(n: int) -> list[Any]:
    from judging.kinds import Pair

    out = []
    for index in range(n):
        prompt = f"Question {index}: what is {index} + {index}? Answer briefly."
        a, b = (
            f"It is {2 * index}.",
            f"It is {2 * index + 1}, I think, but let me explain at length.",
        )
        out += [Pair(prompt, a, b), Pair(prompt, b, a)]  # both orders
    return out


# --- reward model -------------------------------------------------------------------------


def build_model(root: Path, hidden: int, layers: int) -> Path:
    import torch
    import transformers

    from training.engine.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = transformers.LlamaConfig(  # type: ignore[call-arg]
        vocab_size=(len(tokenizer) + 63) // 64 * 64,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(config)
    out = root / "bench-rm"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def plain_loop(path: Path, work: list[Any], device: str) -> float:
    """Comparisons/s calling transformers directly, one text at a time: each comparison's two
    texts once (a pointwise reward is the same in both orders, so this is the least a plain
    loop must do; the judge also scores each distinct text once)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for pair in work[::2]:  # the A/B order of each comparison
            for text in (f"{pair.prompt}\n{pair.first}", f"{pair.prompt}\n{pair.second}"):
                batch = tokenizer([text], return_tensors="pt").to(device)
                float(model(**batch).logits[0, 0])
    return (len(work) / 2) / (time.perf_counter() - start)


def reward_model_part(args: argparse.Namespace) -> None:
    from django.conf import settings

    from judging.kinds.reward_model import RewardModelJudge, clean_config

    with tempfile.TemporaryDirectory() as root:
        settings.PREFLAB_JUDGE_MODELS_DIR = Path(root)
        build_model(Path(root), args.hidden, args.layers)
        config = clean_config(
            {"model": "bench-rm", "batch_size": args.batch_size, "device": args.device}
        )
        judge = RewardModelJudge(config)
        work = pairs(args.comparisons)
        judge.judge(work[:4], time.monotonic() + 60)  # warm-up
        ours, plain = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            verdicts = judge.judge(work, time.monotonic() + 3600)
            ours.append(args.comparisons / (time.perf_counter() - start))
            if len(verdicts) != len(work):
                raise SystemExit("the judge returned the wrong number of verdicts")
            plain.append(plain_loop(Path(root) / "bench-rm", work, args.device))
        best_ours, best_plain = max(ours), max(plain)
        print(f"reward-model judge ({args.device}, batch {args.batch_size}, both orders):")
        print(f"  judge:       {', '.join(f'{v:.1f}' for v in ours)} comparisons/s")
        print(f"  plain loop:  {', '.join(f'{v:.1f}' for v in plain)} comparisons/s")
        print(f"  ratio judge / plain loop (best runs): {best_ours / best_plain:.2f}")


# --- LLM ----------------------------------------------------------------------------------


def serve(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(latency)  # the endpoint's latency
            body = json.dumps(
                {
                    "choices": [{"message": {"role": "assistant", "content": "[[A]]"}}],
                    "usage": {"total_tokens": 10},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def llm_rate(url: str, concurrency: int, work: list[Any]) -> float:
    from judging.kinds.llm import LLMJudge, clean_config

    judge = LLMJudge(
        clean_config(
            {"base_url": url, "model": "bench", "concurrency": concurrency, "max_retries": 0}
        )
    )
    try:
        start = time.perf_counter()
        verdicts = judge.judge(work, time.monotonic() + 3600)
        elapsed = time.perf_counter() - start
    finally:
        judge.close()
    failed = [v.error for v in verdicts if v.error]
    if failed:
        raise SystemExit(f"{len(failed)} LLM calls failed, e.g. {failed[0]}")
    return len(work) / elapsed  # requests (one order each) per second


def llm_part(args: argparse.Namespace) -> None:
    from django.conf import settings

    settings.PREFLAB_JUDGE_ALLOWED_HOSTS = ["127.0.0.1"]
    server = serve(args.latency)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        work = pairs(args.comparisons)
        # The baseline asks fewer comparisons: one at a time it takes latency x requests.
        baseline_work = work[: max(2, min(len(work), int(4 / args.latency)))]
        baseline = max(llm_rate(url, 1, baseline_work) for _ in range(args.repeat))
        concurrent = max(llm_rate(url, args.concurrency, work) for _ in range(args.repeat))
    finally:
        server.shutdown()
        server.server_close()
    bound = args.concurrency / args.latency
    print(f"LLM judge (loopback server, latency {args.latency * 1000:.0f} ms):")
    print(f"  concurrency 1:  {baseline:.1f} requests/s = {baseline / 2:.1f} comparisons/s")
    print(
        f"  concurrency {args.concurrency}: {concurrent:.1f} requests/s = "
        f"{concurrent / 2:.1f} comparisons/s"
    )
    print(f"  speedup over concurrency 1: {concurrent / baseline:.2f}")
    print(
        f"  ratio to concurrency / latency ({bound:.0f} requests/s): {concurrent / bound:.2f} "
        "(goal: at least 0.8)"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import django

    django.setup()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if not args.skip_rm:
        reward_model_part(args)
    if not args.skip_llm:
        llm_part(args)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
