#!/usr/bin/env bash
# The paths a real user takes on a GPU, checked in one command: bf16 PPO of a locally built ~0.5B
# Qwen2-shaped policy under DDP, ZeRO-2, ZeRO-3 and FSDP (a checkpoint mid-run) and with LoRA under ZeRO-3,
# SFT/DPO/GRPO/RLOO with policy.dtype=bfloat16 (float32 master weights, bf16 export), and sampling that stops
# at Qwen2.5's and Llama-3's end of turn. One JSON line per path (scripts/gpu_worker.py says what each
# checks), always with "path", "ok", "peak_gpu_mem_gb" and "device"; "error" when a path could not run.
# PPO runs min(2, GPUs) processes: the collectives of two processes need two GPUs.
#
#   bash scripts/gpu_check.sh [UPDATES]          # from the repository root
#
# Needs torch, transformers, accelerate, peft, trl, tokenizers and the project's light dependencies; where
# pip cannot reach a registry, carry them as wheels in .whl/ (installed from there first when present).
# DeepSpeed is pure Python when its ops are not prebuilt (PPO uses torch's AdamW, so none is needed):
# `DS_BUILD_OPS=0 pip wheel --no-deps -w .whl deepspeed hjson msgpack ninja py-cpuinfo einops` carries it.
set -uo pipefail
cd "$(dirname "$0")/.."
UPDATES="${1:-3}"
WORK="${GPU_CHECK_DIR:-/tmp/gpu_check}"
mkdir -p "$WORK"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    && export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=0
WORKER=scripts/gpu_worker.py
# every path, in order (scripts/gpu_worker.py's PATHS: a test keeps the two the same)
PATHS="ppo-ddp ppo-zero2 ppo-zero3 ppo-fsdp ppo-zero3-lora sft-bf16 dpo-bf16 grpo-bf16 rloo-bf16 stop-end-of-turn"

error_line() {  # path message: the line of a path that could not report itself (the worker's fields, null)
  python3 -c 'import json, sys; print(json.dumps({"path": sys.argv[1], "ok": False, "peak_gpu_mem_gb": None,
    "device": None, "error": sys.argv[2][-300:]}))' "$1" "$2"
}
run_path() {  # path timeout command...: the path's own line, or one saying how it ended
  local path=$1 limit=$2; shift 2
  timeout "$limit" "$@" >"$WORK/$path.out" 2>"$WORK/$path.err"
  local status=$?
  if grep -q '^GPU_CHECK ' "$WORK/$path.out"; then
    grep '^GPU_CHECK ' "$WORK/$path.out" | sed 's/^GPU_CHECK //'
  else
    error_line "$path" "exit $status: $(grep -v '^\s*$' "$WORK/$path.err" | tail -n 3 | tr '\n' ' ')"
  fi
}

if ! python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for path in $PATHS; do error_line "$path" "no CUDA device"; done
  exit 1
fi
if [ ! -f "$WORK/policy/config.json" ] || [ ! -f "$WORK/inputs/reward/model/config.json" ]; then
  if ! { timeout 300 python3 "$WORKER" build "$WORK" \
      && timeout 300 python3 -m alignment.stages.sft scale=smoke "run.dir=$WORK/inputs" \
      && timeout 300 python3 -m alignment.stages.reward scale=smoke "run.dir=$WORK/inputs"; } >"$WORK/build.log" 2>&1; then
    for path in $PATHS; do error_line "$path" "build failed: $(tail -c 300 "$WORK/build.log")"; done
    exit 1
  fi
fi
GPUS=$(python3 -c "import torch; print(min(2, torch.cuda.device_count()))")
has_deepspeed=$(python3 -c "import deepspeed" 2>/dev/null && echo yes || echo no)
for path in ppo-ddp ppo-zero2 ppo-zero3 ppo-fsdp ppo-zero3-lora; do
  engine=${path#ppo-}; engine=${engine%-lora}
  if [[ "$engine" == zero* && "$has_deepspeed" == no ]]; then
    error_line "$path" "deepspeed is not installed on this machine"
    continue
  fi
  run_path "$path" 300 python3 -m accelerate.commands.launch --config_file "conf/accelerate/$engine.yaml" \
    --num_processes "$GPUS" "$WORKER" ppo "$path" "$WORK" "$UPDATES"
done
for stage in sft dpo grpo rloo; do
  run_path "$stage-bf16" 600 python3 "$WORKER" stage "$stage" "$WORK"
done
run_path stop-end-of-turn 120 python3 "$WORKER" stop "$WORK"
