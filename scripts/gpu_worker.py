"""The worker of ``scripts/gpu_check.sh``: each command checks one path a real user takes on a GPU and
prints its result as one line, ``GPU_CHECK {json}``, with the path's peak GPU memory.

    python scripts/gpu_worker.py build WORK                 # the ~0.5B Qwen2-shaped bf16 policy, a smoke SFT + reward
    accelerate launch ... scripts/gpu_worker.py ppo PATH WORK UPDATES   # PATH: ppo-<engine>[-lora]
    python scripts/gpu_worker.py stage STAGE WORK           # sft | dpo | grpo | rloo on the bf16 policy
    python scripts/gpu_worker.py stop WORK                  # sampling stops at Qwen2.5's / Llama-3's end of turn

The policy is Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads, vocabulary 151,936, tied
embeddings) with random weights and the demo tokenizer: the check proves that each path starts, trains in
bf16 on float32 master weights, stays finite, stops and exports, not what it learns. PPO's reward is a known
one (shorter answers are better), so ``reward_delta > 0`` means the policy moved. Every command also runs on
a CPU (``peak_gpu_mem_gb`` is then null): the tests run ``stop`` here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from chat_models import ANSWER, STYLES, chat_tokenizer, scripted_chat_model  # scripts/, beside this file
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from alignment.config import GenerationConfig, PPOStageConfig, RewardTermsConfig, TinyModelConfig
from alignment.data.world import DemoWorld
from alignment.generation import sample_responses, sample_tokens
from alignment.modeling import ensure_pad_token, load_causal_lm, load_tokenizer, train_tokenizer
from alignment.ppo.engines import launch_options, load_models_whole
from alignment.ppo.trainer import PPOTrainer

#: Every path the check reports, in order (gpu_check.sh's PATHS); one that cannot run gets gpu_check.sh's error line.
PATHS = ["ppo-ddp", "ppo-zero2", "ppo-zero3", "ppo-fsdp", "ppo-zero3-lora", "sft-bf16", "dpo-bf16", "grpo-bf16",
         "rloo-bf16", "stop-end-of-turn"]
#: The fields every line has, the error lines of gpu_check.sh included (null where a path has no figure).
FIELDS = ("path", "ok", "peak_gpu_mem_gb", "device")


def report(path: str, ok: bool, **figures: object) -> None:
    """One path's line: ``GPU_CHECK {"path", "ok", "peak_gpu_mem_gb", "device", ...}``."""
    cuda = torch.cuda.is_available()
    line = {"path": path, "ok": bool(ok),
            "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "device": torch.cuda.get_device_name() if cuda else "cpu", **figures}
    print("GPU_CHECK " + json.dumps(line), flush=True)


def build(work: Path) -> None:
    """The bf16 Qwen2-shaped policy with the demo tokenizer (its chat template ends a turn with EOS)."""
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


def ppo(path: str, work: Path, updates: int) -> None:
    """bf16 PPO under the launch's engine; ``-lora`` adapters (reference: the policy with them off); under
    FSDP a checkpoint (a state dict) after the first update; then the policy gathered and sampled."""
    policy_path = str(work / "policy")
    accelerator = Accelerator(**launch_options(7200))
    load_models_whole(accelerator)
    cfg = PPOStageConfig(batch_size=16, mini_batch_size=8, micro_batch_size=4, ppo_epochs=2, lr=1e-5,
                         value_model="separate", mixed_precision="bf16", gradient_checkpointing=True,
                         total_episodes=16 * updates)
    cfg.generation.max_new_tokens, cfg.generation.temperature = 64, 0.7
    cfg.lora.enabled = path.endswith("-lora")
    policy, tok = load_causal_lm(policy_path, "bfloat16"), load_tokenizer(policy_path)
    policy.to(accelerator.device)
    trainer = PPOTrainer(cfg, accelerator, policy, policy_path, tok, lambda p, t: np.array([-len(x) / 40.0 for x in t]),
                         0.0, 1.0, [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=updates,
                         terms=RewardTermsConfig(missing_eos_penalty=None))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    stats = []
    for update in range(updates):
        stats.append(trainer.step())
        if update == 0 and path == "ppo-fsdp":
            trainer.save_checkpoint(work / f"{path}-checkpoints")
    elapsed = time.perf_counter() - started
    with trainer.full_reference() as reference:  # every process: with LoRA a gather under ZeRO-3 and FSDP
        if accelerator.is_main_process:
            reference_ok = all(torch.isfinite(p).all() for p in reference.parameters())
    exported = trainer.gather_policy()  # every process: the full weights put together from the shards
    if not accelerator.is_main_process:
        return
    ids = torch.tensor([tok.encode("Hello")], device=accelerator.device)
    sample = sample_tokens(exported, ids, torch.ones_like(ids), cfg.generation.max_new_tokens,
                           cfg.generation.temperature, trainer.stop_ids, tok.pad_token_id)
    export_ok = sample.shape[1] > 0 and all(torch.isfinite(p).all() for p in exported.parameters())
    finite = all(np.isfinite(s["loss/total"]) for s in stats)
    report(path, finite and export_ok and reference_ok, processes=accelerator.num_processes,
           eps_per_s=round(stats[-1]["episodes"] / elapsed, 2), kl=round(stats[-1]["objective/kl"], 4),
           reward_delta=round(stats[-1]["reward/raw"] - stats[0]["reward/raw"], 4), export_ok=bool(export_ok),
           export_device=str(next(exported.parameters()).device))


def stage(name: str, work: Path) -> None:
    """A stage as a user runs it (its Hydra command, in this process) with ``policy.dtype=bfloat16``; its
    last Trainer checkpoint must hold float32 master weights, its exported policy bf16."""
    import importlib

    run = work / f"{name}-run"
    if name == "sft":
        overrides = ["policy=hf", f"policy.name_or_path={work / 'policy'}"]
    else:
        inputs = work / "inputs"
        overrides = [f"{name}.policy_path={work / 'policy'}", f"{name}.reward_path={inputs / 'reward' / 'model'}",
                     f"{name}.safety_baseline={inputs / 'sft' / 'safety.json'}"]
    # the gate would judge a random policy's safety against a trained one's: not what is checked here
    sys.argv = [f"align-{name}", "scale=smoke", "policy.dtype=bfloat16", "safety.gate.max_regression=null", *overrides,
                f"run.dir={run}"]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started, status = time.perf_counter(), 0
    try:
        importlib.import_module(f"alignment.stages.{name}").main()
    except SystemExit as exit_:
        status = exit_.code or 0
    out = run / name
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    masters = {str(t.dtype) for t in load_file(checkpoints[-1] / "model.safetensors").values()} if checkpoints else set()
    exported = {str(t.dtype) for t in load_file(out / "model" / "model.safetensors").values()} \
        if (out / "model" / "model.safetensors").is_file() else set()
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
    report(f"{name}-bf16", status == 0 and masters == {"torch.float32"} and exported == {"torch.bfloat16"},
           exit_status=status, wall_s=round(time.perf_counter() - started, 1), master_dtypes=sorted(masters),
           exported_dtypes=sorted(exported), eos_rate=metrics.get(f"eos_rate_{name}", metrics.get("eos_rate")))


def stop(work: Path) -> None:
    """Sampling on the device stops at each chat template's end of turn although the generation config
    lists only end-of-text (the scripted chat model of scripts/chat_models.py)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {}
    for style in STYLES:
        tokenizer = chat_tokenizer(style)
        ensure_pad_token(tokenizer, style)
        model = scripted_chat_model(tokenizer, style).to(device)
        samples = sample_responses(model, tokenizer, ["Hi", "Tell me a joke"], GenerationConfig(max_new_tokens=32),
                                   seed=0)
        end = tokenizer.convert_tokens_to_ids(STYLES[style]["end_of_turn"])
        results[style] = all(s.text == ANSWER and s.ended and s.stop_id == end for s in samples)
    report("stop-end-of-turn", all(results.values()), styles=results)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "build":
        build(Path(args[0]))
    elif command == "ppo":
        ppo(args[0], Path(args[1]), int(args[2]))
    elif command == "stage":
        stage(args[0], Path(args[1]))
    elif command == "stop":
        stop(Path(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}: build, ppo, stage or stop")


if __name__ == "__main__":
    main(sys.argv[1:])
