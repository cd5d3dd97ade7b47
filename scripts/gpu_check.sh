#!/usr/bin/env bash
# bf16 PPO of a locally built ~0.5B Qwen2-shaped model on one GPU, under DDP, ZeRO-2, ZeRO-3 and FSDP
# (one process each, a few updates each, then the policy gathered from the engine's shards and sampled
# from, as align-ppo exports it). Prints one JSON line per engine:
#   {"engine", "ok", "eps_per_s", "peak_gpu_mem_gb", "kl", "reward_delta", "export_ok"}  (+ "error" when ok is false)
# An engine that cannot run there (deepspeed not installed, a launch failure) says so in its line.
#
#   bash scripts/gpu_check.sh [UPDATES]          # from the repository root; about 5 minutes on one H200
#
# Needs torch, transformers, accelerate, peft, tokenizers and the project's light dependencies (hydra-core,
# omegaconf); where pip cannot reach a registry, carry them as wheels in .whl/ (they are installed from
# there first when present). DeepSpeed is pure Python when its ops are not prebuilt (PPO uses torch's
# AdamW, so none is needed): `DS_BUILD_OPS=0 pip wheel --no-deps -w .whl deepspeed hjson msgpack ninja
# py-cpuinfo einops` carries it. The model is Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV
# heads, vocabulary 151,936, tied embeddings) with random weights and the demo tokenizer: this checks that
# the engines start, generate, train in bf16 on fp32 masters and stay finite, not what PPO learns.
# The reward is a known one (shorter answers are better), so reward_delta > 0 means the policy moved.
set -uo pipefail
cd "$(dirname "$0")/.."
UPDATES="${1:-3}"
WORK="${GPU_CHECK_DIR:-/tmp/gpu_check}"
mkdir -p "$WORK"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    && export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" TOKENIZERS_PARALLELISM=false

cat > "$WORK/worker.py" <<'EOF'
"""One engine's PPO run (under accelerate launch), or the model build (--build)."""
import json, sys, time
from pathlib import Path

import numpy as np
import torch

work = Path(sys.argv[2])
if sys.argv[1] == "--build":
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from alignment.config import TinyModelConfig
    from alignment.data.world import DemoWorld
    from alignment.modeling import train_tokenizer

    tok = train_tokenizer(DemoWorld(0).corpus_texts(), TinyModelConfig().vocab_size)
    config = Qwen2Config(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(work / "policy")
    tok.save_pretrained(work / "policy")
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters", file=sys.stderr)
    sys.exit(0)

from accelerate import Accelerator

from alignment.config import PPOStageConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_causal_lm, load_tokenizer
from alignment.generation import sample_tokens
from alignment.ppo.engines import load_models_whole
from alignment.ppo.trainer import PPOTrainer

engine, updates = sys.argv[1], int(sys.argv[3])
path = str(work / "policy")
accelerator = Accelerator()
load_models_whole(accelerator)
cfg = PPOStageConfig(batch_size=16, mini_batch_size=8, micro_batch_size=4, ppo_epochs=2, lr=1e-5,
                     value_model="separate", mixed_precision="bf16", gradient_checkpointing=True,
                     total_episodes=16 * updates, missing_eos_penalty=None)
cfg.generation.max_new_tokens, cfg.generation.temperature = 64, 0.7
policy, tok = load_causal_lm(path, "bfloat16"), load_tokenizer(path)
policy.to(accelerator.device)
trainer = PPOTrainer(cfg, accelerator, policy, path, tok, lambda p, t: np.array([-len(x) / 40.0 for x in t]),
                     0.0, 1.0, [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=updates)
cuda = torch.cuda.is_available()  # the worker also runs on a CPU, for a dry run of this script's logic
if cuda:
    torch.cuda.reset_peak_memory_stats()
started = time.perf_counter()
stats = [trainer.step() for _ in range(updates)]
elapsed = time.perf_counter() - started
exported = trainer.gather_policy()  # every process: the full weights put together from the shards
if accelerator.is_main_process:
    ids = torch.tensor([tok.encode("Hello")], device=accelerator.device)
    sample = sample_tokens(exported.to(accelerator.device), ids, torch.ones_like(ids), cfg.generation.max_new_tokens,
                           cfg.generation.temperature, trainer.stop_ids, tok.pad_token_id)
    sample = torch.cat([ids, sample], 1)
    export_ok = sample.shape[1] > ids.shape[1] and all(torch.isfinite(p).all() for p in exported.parameters())
    finite = all(np.isfinite(s["loss/total"]) for s in stats)
    print("GPU_CHECK " + json.dumps({
        "engine": engine, "ok": bool(finite and export_ok), "eps_per_s": round(stats[-1]["episodes"] / elapsed, 2),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "kl": round(stats[-1]["objective/kl"], 4),
        "reward_delta": round(stats[-1]["reward/raw"] - stats[0]["reward/raw"], 4),
        "export_ok": bool(export_ok)}), flush=True)
EOF

line() {  # engine ok error
  python3 -c 'import json,sys; print(json.dumps({"engine": sys.argv[1], "ok": False, "eps_per_s": None,
    "peak_gpu_mem_gb": None, "kl": None, "reward_delta": None, "export_ok": None, "error": sys.argv[2][-300:]}))' "$1" "$2"
}

if ! python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for engine in ddp zero2 zero3 fsdp; do line "$engine" "no CUDA device"; done
  exit 1
fi
if [ ! -f "$WORK/policy/config.json" ]; then
  timeout 240 python3 "$WORK/worker.py" --build "$WORK" 2>"$WORK/build.log" \
    || { for engine in ddp zero2 zero3 fsdp; do line "$engine" "model build failed: $(tail -c 300 "$WORK/build.log")"; done; exit 1; }
fi
has_deepspeed=$(python3 -c "import deepspeed" 2>/dev/null && echo yes || echo no)
for engine in ddp zero2 zero3 fsdp; do
  if [[ "$engine" == zero* && "$has_deepspeed" == no ]]; then
    line "$engine" "deepspeed is not installed on this machine"
    continue
  fi
  timeout 150 python3 -m accelerate.commands.launch --config_file "conf/accelerate/$engine.yaml" --num_processes 1 \
    "$WORK/worker.py" "$engine" "$WORK" "$UPDATES" >"$WORK/$engine.out" 2>"$WORK/$engine.err"
  status=$?
  if grep -q '^GPU_CHECK ' "$WORK/$engine.out"; then
    grep '^GPU_CHECK ' "$WORK/$engine.out" | sed 's/^GPU_CHECK //'
  else
    line "$engine" "exit $status: $(grep -v '^\s*$' "$WORK/$engine.err" | tail -n 3 | tr '\n' ' ')"
  fi
done
