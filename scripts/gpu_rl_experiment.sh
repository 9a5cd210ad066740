#!/usr/bin/env bash
# GRPO of Qwen2.5-Coder-0.5B-Instruct with the binary unit-test reward, the CodeScaler RM reward and
# their sum on the same MBPP TRAIN problems (task ids 601-974), plus (NO_TESTS=1, the default) the RM
# reward on LeetCode TRAIN problems with their tests removed; held-out greedy pass@1 on MBPP validation
# (ids 511-600) before and after each. Writes $OUT/summary.json, $OUT/summary.md and $OUT/curves.png
# (benchmarks/rl_experiment.py, docs/rl.md).
#
#   scripts/gpu_rl_experiment.sh                  # one H100, four arms (STEPS=12 by default); not timed yet
#   SMOKE=1 scripts/gpu_rl_experiment.sh          # CPU, tiny random models, a few minutes
#   REWARDS=rm,tests NO_TESTS=0 scripts/gpu_rl_experiment.sh   # fewer arms
#   RM=runs/minilm_rm STEPS=20 OUT=runs/rl_exp scripts/gpu_rl_experiment.sh
#
# RM: a trained CodeScaler checkpoint. Unset and no shipped default RM: a quick MiniLM RM is trained
# first on MapCoder MBPP pairs (benchmarks/rm_train_mbpp.py + codescaler train, about a minute on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/rl_experiment}
STEPS=${STEPS:-12}
TRAIN_LIMIT=${TRAIN_LIMIT:-128}
EVAL_LIMIT=${EVAL_LIMIT:-90}
MAX_LEN=${MAX_COMPLETION_LENGTH:-384}
REWARDS=${REWARDS:-tests,rm,rm+tests}
ARMS=(--rewards "$REWARDS")
if [ "${NO_TESTS:-1}" = "1" ]; then ARMS+=(--no-tests-arm); fi
mkdir -p "$OUT"
export CODESCALER_CACHE=${CODESCALER_CACHE:-$PWD/$OUT/cache}

if [ "${SMOKE:-0}" = "1" ]; then
    exec nice "$PY" benchmarks/rl_experiment.py --smoke --out "$OUT" --steps "${STEPS_SMOKE:-2}" \
        --train-limit 4 --eval-limit 3 --max-completion-length 12 "${ARMS[@]}"
fi

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: use SMOKE=1 on CPU")'
"$PY" -m codescaler.models prepare          # idempotent: the converted Qwen2.5-Coder-0.5B-Instruct
RM=${RM:-}
if [ -z "$RM" ]; then
    if [ -f src/codescaler/assets/default_rm/config.json ] || [ -f src/codescaler/assets/default_rm/adapter_config.json ]; then
        RM=default
    else
        RM="$OUT/quick_rm"
        if [ ! -f "$RM/codescaler.json" ]; then
            "$PY" benchmarks/rm_train_mbpp.py --output "$OUT/mbpp_pairs.jsonl"
            "$PY" -m codescaler train --pairs "$OUT/mbpp_pairs.jsonl" --output-dir "$RM" --backbone minilm \
                --max-steps 24 --lr 1e-4 --batch-size 16 --max-length 384 --eval-fraction 0.1 --seed 0
        fi
    fi
fi
"$PY" benchmarks/rl_experiment.py --preset gpu --out "$OUT" --rm "$RM" --steps "$STEPS" \
    --train-limit "$TRAIN_LIMIT" --eval-limit "$EVAL_LIMIT" --max-completion-length "$MAX_LEN" "${ARMS[@]}"
