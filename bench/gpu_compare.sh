#!/usr/bin/env bash
# The GPU comparison of issue 14 in one call: ours against TRL's DPOTrainer on one GPU, the
# ~0.5B Qwen2-like preset and the Llama-1B-like preset (vocabulary 128,256), each with and
# without gradient checkpointing; pairs/s (steady and end to end), peak memory and MFU.
#
#   bench/gpu_compare.sh [OUT_DIR]        # default OUT_DIR: bench-results/gpu-<date>
#
# Needs a CUDA GPU, the train extra and trl (pip install -e '.[train,bench]'); models are built
# from their configs with random weights, nothing is downloaded. Budget: under 8 minutes of
# device time on one H100/H200 (fewer steps than the presets' defaults, one repeat; the first
# run of each preset also warms the inductor cache so the measured runs compile from it).
# Each preset writes its table to OUT_DIR/<preset>.txt and its figures to OUT_DIR/<preset>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
OUT=${1:-bench-results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$OUT/inductor-cache}
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for preset in qwen0.5b llama1b; do
    echo "== $preset ($(date -u +%H:%M:%S))"
    timeout 225 "$PYTHON" bench/dpo_throughput.py --preset "$preset" --steps 15 --warmup 5 \
        --checkpointing both --repeats 1 --json "$OUT/$preset.json" 2>&1 | tee "$OUT/$preset.txt"
done
echo "done ($(date -u +%H:%M:%S)); results in $OUT"
