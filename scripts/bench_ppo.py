#!/usr/bin/env python
"""Benchmark: our PPO trainer against the last TRL PPOTrainer (trl==1.12.0), same models and settings.

    python scripts/bench_ppo.py [--shape tiny|qwen] [--episodes 256] [--batch-size 16] [--response-length 16]
                                [--ppo-epochs 4] [--repeats 3] [--threads N] [--cache-dir ~/.cache/alignment-pipeline]

``--shape tiny`` (default): the project's tiny Llama-style policy. ``--shape qwen``: a randomly initialised
Qwen2-architecture model at a real model's vocabulary (151,936; hidden 256, 4 layers, tied embeddings),
where the vocabulary-sized tensors (logits, log-softmax) dominate memory and time; its defaults are a
response length of 64, 64 episodes and 2 repeats.

Builds once a virtualenv with ``trl==1.12.0`` (its ``trl.experimental.ppo.PPOTrainer``) under
``<cache-dir>/bench-trl-1.12``, builds one tiny policy, value model, reward model and prompt set with the
project's code, then runs each trainer in its own subprocess, alternating which goes first in each repeat.
Episodes per second are timed over the training loop only; peak RSS covers the whole process. The method
(what each side runs, the shared settings) is in ``docs/benchmarks.md``; measurements in
``docs/experiments.md``.

Ends with one JSON line: ``ours_eps_per_s``, ``trl_eps_per_s`` (medians over the repeats), ``speedup``
(the median of the per-repeat ratios: a repeat's two runs are adjacent, so the ratio cancels most of a
shared machine's load), ``ours_peak_rss_mb``, ``trl_peak_rss_mb``, the per-repeat figures and the load.
Target: speedup >= 1.5 at no more peak memory.

Only the standard library is imported at module level: the TRL worker runs this same file with the
virtualenv's interpreter, where the project is not installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, emit

TRL_PINS = ("trl==1.12.0", "transformers==5.16.1", "torch==2.13.0")
RESULT_TAG = "BENCH_PPO_RESULT "
log = logging.getLogger("bench_ppo")


# ------------------------------------------------------------------------------------------ setup
def ensure_trl_env(cache_dir: Path) -> Path:
    """The TRL 1.12 virtualenv's python, built on first use; a half-built one (no marker) is rebuilt."""
    env = cache_dir / "bench-trl-1.12"
    python, marker = env / "bin" / "python", env / "pins.json"
    if marker.is_file() and json.loads(marker.read_text()) == list(TRL_PINS):
        return python
    log.info("building the TRL 1.12 virtualenv in %s (%s)", env, ", ".join(TRL_PINS))
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *TRL_PINS], check=True)
    marker.write_text(json.dumps(list(TRL_PINS)))
    return python


#: ``--shape qwen``: Qwen2.5's vocabulary and layout (grouped-query attention, tied embeddings), small depth
#: and width so that a CPU runs it.
QWEN_SHAPE = {"vocab_size": 151_936, "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
              "tie_word_embeddings": True}


def build_qwen_lm(tokenizer, seed: int):
    """A randomly initialised Qwen2 causal LM of :data:`QWEN_SHAPE`, stopping at the tokenizer's EOS."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**QWEN_SHAPE, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def build_models(out: Path, seed: int = 0, shape: str = "tiny") -> None:
    """Policy, value and reward models plus the prompt ids, written by the project's own builders (the
    tokenizer is the tiny one in both shapes: the Qwen-shaped model's extra ids decode to nothing)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from alignment.config import TinyModelConfig
    from alignment.data.world import DemoWorld
    from alignment.generation import chat_prompt_ids
    from alignment.io import write_json_atomic
    from alignment.modeling import build_tiny_lm, train_tokenizer
    from alignment.reward.model import REWARD_CONFIG_FILE

    world = DemoWorld(0)
    tiny = TinyModelConfig()
    tokenizer = train_tokenizer(world.corpus_texts(), tiny.vocab_size)
    policy = build_tiny_lm(tokenizer, tiny, seed) if shape == "tiny" else build_qwen_lm(tokenizer, seed)
    policy.save_pretrained(out / "policy")
    tokenizer.save_pretrained(out / "policy")

    config = {k: v for k, v in policy.config.to_dict().items() if k not in ("id2label", "label2id")}
    config |= {"num_labels": 1, "architectures": [type(policy).__name__.replace("CausalLM", "SequenceClassification")]}
    value = AutoModelForSequenceClassification.from_config(type(policy.config).from_dict(config))
    value.base_model.load_state_dict(policy.base_model.state_dict())
    torch.nn.init.zeros_(value.score.weight)
    value.save_pretrained(out / "value")
    tokenizer.save_pretrained(out / "value")

    torch.manual_seed(seed + 1)
    reward = AutoModelForSequenceClassification.from_config(type(policy.config).from_dict(config))
    reward.save_pretrained(out / "reward")
    tokenizer.save_pretrained(out / "reward")
    write_json_atomic(out / "reward" / REWARD_CONFIG_FILE, {"input_format": "chat", "separator": "\n",
                                                            "max_length": 512 if shape == "qwen" else 128,
                                                            "mean": 0.0, "std": 1.0})
    prompts = [p.text for p in world.prompts("train")]
    write_json_atomic(out / "prompts.json", {"texts": prompts, "ids": [chat_prompt_ids(tokenizer, p) for p in prompts]})


# ------------------------------------------------------------------------------------------ workers
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reward_scorer(path: Path, batch_size: int):
    """``(prompts, responses) -> scores`` as ``alignment.reward.scorer.RewardScorer.score`` computes them (decode,
    ``encode_for_reward_model`` in the reward model's own input format, the scalar head), without
    importing the reward *stage* module: its RM training stack (TRL's RewardTrainer, datasets,
    matplotlib) would add modules that PPO never runs to the peak memory measured."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from alignment.reward.encoding import encode_for_reward_model

    info = json.loads((path / "reward_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32).eval()
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token

    @torch.no_grad()
    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(prompts), batch_size):
            batch = encode_for_reward_model(prompts[start:start + batch_size], responses[start:start + batch_size],
                                            tokenizer, info["max_length"], info["input_format"], info["separator"],
                                            "right")
            out.append(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0])
        return torch.cat(out).numpy()

    return score


def run_ours(models: Path, s: dict) -> dict:
    import torch
    from accelerate import Accelerator

    from alignment.config import PolicyConfig, PPOStageConfig, RewardTermsConfig
    from alignment.modeling import load_policy
    from alignment.ppo.trainer import PPOTrainer
    from alignment.stages.common import seed_everything

    seed_everything(s["seed"])
    cfg = PPOStageConfig(total_episodes=s["episodes"], batch_size=s["batch_size"], mini_batch_size=s["batch_size"],
                         ppo_epochs=s["ppo_epochs"], lr=s["lr"], value_model="separate")
    cfg.kl.adaptive, cfg.kl.estimator = False, "k1"
    cfg.generation.temperature, cfg.generation.max_new_tokens = s["temperature"], s["response_length"]
    policy, tokenizer = load_policy(PolicyConfig(), path=str(models / "policy"))
    scorer = reward_scorer(models / "reward", s["batch_size"])
    prompts = json.loads((models / "prompts.json").read_text())["texts"]
    updates = s["episodes"] // s["batch_size"]
    trainer = PPOTrainer(cfg, Accelerator(cpu=True), policy, str(models / "policy"), tokenizer,
                         scorer, 0.0, 1.0, prompts, seed=s["seed"], num_updates=updates,
                         terms=RewardTermsConfig(missing_eos_penalty=1.0, kl_coef=s["kl_coef"]))
    started = time.perf_counter()
    with trainer.heap_frozen():  # as PPOTrainer.train runs its loop
        for _ in range(updates):
            stats = trainer.step()
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "episodes": updates * s["batch_size"], "final_kl": stats["objective/kl"],
            "threads": torch.get_num_threads()}


def run_trl(models: Path, s: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.manual_seed(s["seed"])
    tokenizer = AutoTokenizer.from_pretrained(models / "policy", padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(models / "policy")
    ref = AutoModelForCausalLM.from_pretrained(models / "policy")
    value = AutoModelForSequenceClassification.from_pretrained(models / "value", num_labels=1)
    reward = AutoModelForSequenceClassification.from_pretrained(models / "reward", num_labels=1)
    ids = json.loads((models / "prompts.json").read_text())["ids"]
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        args = PPOConfig(output_dir=tmp, per_device_train_batch_size=s["batch_size"], gradient_accumulation_steps=1,
                         num_mini_batches=1, total_episodes=s["episodes"], num_ppo_epochs=s["ppo_epochs"],
                         response_length=s["response_length"], temperature=s["temperature"], kl_coef=s["kl_coef"],
                         kl_estimator="k1", missing_eos_penalty=1.0, stop_token="eos", learning_rate=s["lr"],
                         local_rollout_forward_batch_size=s["batch_size"], num_sample_generations=0,
                         report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=s["seed"],
                         use_cpu=True, bf16=False, per_device_eval_batch_size=s["batch_size"])
        trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=ref, reward_model=reward,
                             value_model=value, train_dataset=Dataset.from_dict({"input_ids": ids}),
                             eval_dataset=Dataset.from_dict({"input_ids": ids[:s["batch_size"]]}))
        started = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - started
        kl = next((h["objective/kl"] for h in reversed(trainer.state.log_history) if "objective/kl" in h), None)
    return {"elapsed_s": elapsed, "episodes": trainer.state.episode, "final_kl": kl, "threads": torch.get_num_threads()}


def worker(which: str, models: Path, settings: dict) -> None:
    result = (run_ours if which == "ours" else run_trl)(models, settings)
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_TAG + json.dumps(result), flush=True)


def measure(which: str, python: str, models: Path, settings: dict) -> dict:
    """One run in a fresh subprocess; its figures (the worker prints them on a tagged line)."""
    command = [python, str(Path(__file__).resolve()), "--worker", which, "--models", str(models),
               "--settings", json.dumps(settings)]
    env = {**os.environ, "OMP_NUM_THREADS": str(settings["threads"]), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT) if which == "ours" else ""}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {which} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith(RESULT_TAG))
    result = json.loads(line[len(RESULT_TAG):])
    result["eps_per_s"] = result["episodes"] / result["elapsed_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=("tiny", "qwen"), default="tiny")
    parser.add_argument("--episodes", type=int, help="default 256 (tiny), 64 (qwen)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--response-length", type=int, help="default 16 (tiny), 64 (qwen)")
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, help="default 3 (tiny), 2 (qwen)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get(
        "ALIGNMENT_CACHE", "~/.cache/alignment-pipeline")).expanduser())
    parser.add_argument("--worker", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker:
        worker(a.worker, a.models, json.loads(a.settings))
        return

    qwen = a.shape == "qwen"
    a.episodes = a.episodes or (64 if qwen else 256)
    a.response_length = a.response_length or (64 if qwen else 16)
    a.repeats = a.repeats or (2 if qwen else 3)
    if a.episodes % a.batch_size:
        parser.error(f"--episodes {a.episodes} is not a multiple of --batch-size {a.batch_size} (TRL would round up)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = {"episodes": a.episodes, "batch_size": a.batch_size, "response_length": a.response_length,
                "ppo_epochs": a.ppo_epochs, "temperature": 0.7, "kl_coef": 0.05, "lr": 3e-6, "seed": 0,
                "threads": a.threads}
    trl_python = str(ensure_trl_env(a.cache_dir))
    runs: dict[str, list[dict]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="bench-ppo-models-") as tmp:
        models = Path(tmp)
        build_models(models, shape=a.shape)
        log.info("models in %s; %d repeats of %d episodes each (load average %.1f)", models, a.repeats,
                 a.episodes, os.getloadavg()[0])
        for repeat in range(a.repeats):
            order = ("ours", "trl") if repeat % 2 == 0 else ("trl", "ours")
            for which in order:
                r = measure(which, sys.executable if which == "ours" else trl_python, models, settings)
                runs[which].append(r)
                log.info("repeat %d %-4s: %6.1f episodes/s, peak RSS %5.0f MB, final KL %s (load %.1f)",
                         repeat + 1, which, r["eps_per_s"], r["peak_rss_mb"], r["final_kl"], os.getloadavg()[0])
    ours = statistics.median(r["eps_per_s"] for r in runs["ours"])
    trl = statistics.median(r["eps_per_s"] for r in runs["trl"])
    # each repeat's two runs are adjacent in time: their ratio cancels the load they shared
    ratios = [o["eps_per_s"] / t["eps_per_s"] for o, t in zip(runs["ours"], runs["trl"])]
    emit({
        "ours_eps_per_s": round(ours, 2), "trl_eps_per_s": round(trl, 2),
        "speedup": round(statistics.median(ratios), 3), "speedup_runs": [round(x, 3) for x in ratios],
        "ours_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["ours"]), 1),
        "trl_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["trl"]), 1),
        "ours_runs_eps_per_s": [round(r["eps_per_s"], 2) for r in runs["ours"]],
        "trl_runs_eps_per_s": [round(r["eps_per_s"], 2) for r in runs["trl"]],
        "shape": a.shape, "episodes": a.episodes, "batch_size": a.batch_size, "response_length": a.response_length,
        "ppo_epochs": a.ppo_epochs, "threads": a.threads,
    })


if __name__ == "__main__":
    main()
