"""The compiled fast path gives eager's log-probs, gradients and losses.

Graph capture (dynamo + AOTAutograd, the parts that decide whether the numbers match) is checked
with the ``aot_eager`` backend. The full inductor path (C++ code generation on a CPU) runs
wherever a C++ compiler is found, and is skipped with that reason elsewhere. It is kept cheap:
a one-layer model and pairs that all fit one length bucket, so inductor compiles one training
graph (forward and backward) and one no-grad graph for the reference pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from training.engine import EXIT_OK
from training.engine.config import DPOConfig
from training.engine.data import PairExample, collate_pairs
from training.engine.fastpath import CompilePlan, compile_decoder, plan_compile
from training.engine.logprobs import SequenceLogps
from training.engine.modeling import load_causal_lm

from .conftest import engine, events

HAS_CXX = shutil.which("c++") is not None or shutil.which("g++") is not None


def test_auto_compiles_on_a_gpu_only_and_off_never_compiles():
    config = DPOConfig(data="d", model="m", out_dir="o", micro_batch_size=4, batch_size=8)
    assert not plan_compile(config, torch.device("cpu")).enabled
    gpu = plan_compile(config, torch.device("cuda"))
    assert gpu.enabled and gpu.cuda_graphs and gpu.mode == "reduce-overhead"
    assert gpu.bucket_rows == 8
    packed = DPOConfig(data="d", model="m", out_dir="o", padding_free=True)
    assert not plan_compile(packed, torch.device("cuda")).cuda_graphs
    two = plan_compile(config, torch.device("cuda"), processes=2)
    assert two.enabled and not two.cuda_graphs  # auto: no CUDA graphs with several processes
    fsdp = DPOConfig(data="d", model="m", out_dir="o", distributed="fsdp", processes=2)
    assert not plan_compile(fsdp, torch.device("cuda"), processes=2).enabled
    off = DPOConfig(data="d", model="m", out_dir="o", compile="off")
    assert not plan_compile(off, torch.device("cuda")).enabled
    on = DPOConfig(data="d", model="m", out_dir="o", compile="on")
    if HAS_CXX:
        cpu = plan_compile(on, torch.device("cpu"))
        assert cpu.enabled and not cpu.cuda_graphs


def _examples(n: int) -> list[PairExample]:
    gen = torch.Generator().manual_seed(7)

    def ids(lo: int, hi: int) -> tuple[int, ...]:
        length = int(torch.randint(lo, hi, (1,), generator=gen))
        return tuple(torch.randint(7, 200, (length,), generator=gen).tolist())

    return [PairExample(i, (1, *ids(2, 20)), ids(1, 15), ids(1, 15), False) for i in range(n)]


@pytest.mark.parametrize("padding_free", [False, True])
def test_a_captured_decoder_gives_eager_logps_and_gradients(tiny_model, padding_free):
    batch = collate_pairs(_examples(3), pad_id=0)
    results = []
    for compiled in (False, True):
        torch._dynamo.reset()
        model = load_causal_lm(str(tiny_model))
        model.config.use_cache = False
        plan = CompilePlan(compiled, bucket_rows=None if padding_free else 8)
        compile_decoder(model, plan, max_length=128, backend="aot_eager")
        wrapper = SequenceLogps(
            model, chunk_size=16, padding_free=padding_free, bucket_rows=plan.bucket_rows
        )
        logps, _ = wrapper(**batch)
        (logps * torch.linspace(-1, 1, logps.shape[0])).sum().backward()
        results.append((logps.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch._dynamo.reset()
    (eager, eager_grads), (captured, captured_grads) = results
    torch.testing.assert_close(captured, eager, rtol=0, atol=2e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(captured_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def one_layer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.engine.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("compile") / "model", num_layers=1, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CXX, reason="inductor on a CPU needs a C++ compiler (c++ or g++)")
def test_a_compiled_run_gives_the_eager_losses(tmp_path, pairs_file, run_config, one_layer_model):
    # synthetic pairs are at most ~45 tokens: every micro-batch pads to the same 64-token bucket
    data = pairs_file(16)
    losses = {}
    for mode in ("off", "on"):
        out = tmp_path / mode
        config = run_config(
            data,
            name=f"{mode}.json",
            model=str(one_layer_model),
            out_dir=str(out),
            max_steps=2,
            compile=mode,
            trackers=[],
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        (setup,) = events(out / "metrics.jsonl", "engine")
        assert setup["compiled"] is (mode == "on")
        losses[mode] = [e["loss"] for e in events(out / "metrics.jsonl", "train")]
    torch._dynamo.reset()
    assert len(losses["off"]) == 2
    assert max(abs(a - b) for a, b in zip(losses["off"], losses["on"], strict=True)) < 1e-5
