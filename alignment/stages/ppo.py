"""``align-ppo``: optimise the policy against the reward model under a KL leash (our own PPO).

Reads the run's SFT policy and reward model (``ppo.policy_path``, ``ppo.reward_path``), trains with
:class:`alignment.ppo.trainer.PPOTrainer` on the demo world's training prompts, evaluates the gold
reward on held-out prompts along the way (warning when the proxy reward rises while the gold reward
falls: over-optimisation), and ends with the comparison against the SFT policy and the safety gate.
Runs on one process or many: ``accelerate launch --config_file conf/accelerate/<x>.yaml -m
alignment.stages.ppo ...``.

With ``ppo.lora.enabled=true`` the policy trains LoRA adapters and its reference is the same model with
the adapters disabled; ``model/`` is then the merged policy (plain transformers, no peft needed to
load it) and ``adapter/`` the adapters alone. ``ppo.safety_penalty=C`` subtracts ``C * P(unsafe)``
(``ppo.safety_backend``'s filter, ``fast`` by default) from each response's normalised score.

Writes ``<run.dir>/ppo/``: ``model/``, ``metrics.json``, ``safety.json``, ``samples.jsonl``,
``report.html``, ``checkpoints/`` (``resume=true`` continues from the last), ``logs/`` (TensorBoard).
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig

from alignment.config import Config
from alignment.data.gold import gold_summary
from alignment.data.world import DemoWorld, Prompt
from alignment.errors import UserError
from alignment.generation import chat_prompt_ids, sample_responses
from alignment.io import atomic_dir, write_json_atomic, write_jsonl_atomic
from alignment.modeling import load_policy
from alignment.ppo.trainer import NonFiniteLossError, PPOTrainer
from alignment.reports.html import figure_html, kv_table, table_html, write_report
from alignment.reports.sections import safety_sections
from alignment.reward_model import REWARD_CONFIG_FILE, RewardScorer
from alignment.safety import build_filter
from alignment.safety.eval import stage_safety
from alignment.stages.common import (
    resume_or_clear,
    save_resolved_config,
    seed_everything,
    stage_dir,
    stage_main,
)

log = logging.getLogger(__name__)
logging.getLogger("accelerate").setLevel(logging.WARNING)  # one INFO line per saved file otherwise
STAGE = "ppo"
CURVES = ("reward/raw", "objective/kl", "objective/beta", "policy/entropy", "response/length", "response/eos_rate")


def check_inputs(cfg: Config) -> tuple[Path, Path, dict]:
    policy_path, reward_path = Path(cfg.ppo.policy_path), Path(cfg.ppo.reward_path)
    if not (policy_path / "config.json").is_file():
        raise UserError(f"ppo.policy_path={policy_path}: no model there (run align-sft first, or point it at one)")
    if not (reward_path / REWARD_CONFIG_FILE).is_file():
        raise UserError(f"ppo.reward_path={reward_path}: no reward model written by align-reward there")
    reward_info = json.loads((reward_path / REWARD_CONFIG_FILE).read_text())
    return policy_path, reward_path, reward_info


def cpu_only_launch() -> bool:
    """Several processes on a machine without a GPU: they must be told to use the CPU (gloo).

    ``conf/accelerate/cpu_2proc.yaml`` launches through torchrun like a multi-GPU job with the GPUs
    hidden (accelerate's own multi-CPU launch needs mpirun); accelerate then finds no GPU and, unless
    asked for the CPU, runs every process as an independent single-process job.
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def eval_prompt_sets(world: DemoWorld, n: int, seed: int) -> dict[str, list[Prompt]]:
    out = {}
    for split in ("eval", "redteam"):
        prompts = world.prompts(split)
        random.Random(f"ppo-eval/{split}/{seed}").shuffle(prompts)
        out[split] = prompts[:n]
    return out


def sample_and_score(model, tokenizer, prompts: list[Prompt], cfg: Config, world: DemoWorld,
                     scorer: RewardScorer) -> tuple[dict, list]:
    samples = sample_responses(model, tokenizer, [p.text for p in prompts], cfg.ppo.generation, seed=cfg.seed,
                               desc="eval samples")
    summary = gold_summary(world, prompts, samples)
    summary["proxy_reward_mean"] = float(np.mean(scorer.score([p.text for p in prompts], [s.text for s in samples])))
    return summary, samples


def write_ppo_report(out: Path, metrics: dict, history: list[dict], evals: list[dict], rows: list[dict],
                     safety: dict) -> None:
    import matplotlib.pyplot as plt

    sections = [("Summary", kv_table(metrics))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    steps = [h["update"] for h in history]
    for ax, key in zip(axes.flat, CURVES):
        ax.plot(steps, [h.get(key, float("nan")) for h in history])
        ax.set_title(key), ax.set_xlabel("update")
    fig.tight_layout()
    sections.append(("Training curves", figure_html(fig, "PPO training curves")))
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([e["update"] for e in evals], [e["eval"]["gold_reward_mean"] for e in evals], marker="o", label="gold")
        ax.plot([e["update"] for e in evals], [e["eval"]["proxy_reward_mean"] for e in evals], marker="s", label="proxy (RM)")
        ax.set_xlabel("update"), ax.legend(), ax.set_title("Held-out rewards")
        sections.append(("Gold vs proxy reward", figure_html(fig, "gold and proxy reward on held-out prompts")
                         + table_html(["update", "gold", "proxy", "red-team unsafe", "over-optimisation"],
                                      [(e["update"], e["eval"]["gold_reward_mean"], e["eval"]["proxy_reward_mean"],
                                        e["redteam"]["harmful_unsafe_rate"], e.get("overoptimisation", False))
                                       for e in evals])))
    sections.append(("Samples: SFT vs PPO", table_html(["prompt", "SFT", "PPO"],
                                                       [(r["prompt"], r["sft"], r["ppo"]) for r in rows[:12]])))
    write_report(out / "report.html", "PPO stage", sections + safety_sections(safety))


def _last_update(checkpoints: Path) -> Path | None:
    done = sorted(checkpoints.glob("update-*"))  # only complete ones: they are written as .partial-* first
    return done[-1] if done else None


def checkpoint_to_resume(checkpoints: Path, resume: bool, is_main_process: bool = True) -> Path | None:
    """The last ``update-*`` checkpoint under ``checkpoints`` when ``resume``, else ``None``; without
    one to resume the main process removes the folder (:func:`~alignment.stages.common.resume_or_clear`)."""
    return resume_or_clear(checkpoints, resume, _last_update, is_main_process)


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    policy_path, reward_path, reward_info = check_inputs(cfg)
    seed_everything(cfg.seed)
    accelerator = Accelerator(cpu=cpu_only_launch(), log_with="tensorboard", project_dir=str(out / "logs"))
    model, tokenizer = load_policy(cfg.policy, path=str(policy_path))
    world = DemoWorld(cfg.data.world_seed)
    train_prompts = [p.text for p in world.prompts("train")]
    longest = max(len(chat_prompt_ids(tokenizer, p)) for p in train_prompts)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and longest + cfg.ppo.generation.max_new_tokens > limit:
        raise UserError(f"prompts of up to {longest} tokens plus ppo.generation.max_new_tokens="
                        f"{cfg.ppo.generation.max_new_tokens} exceed the policy's context of {limit} tokens")
    scorer = RewardScorer.from_pretrained(reward_path, batch_size=cfg.reward.eval_batch_size)
    scorer.model.to(accelerator.device)
    safety_filter = build_filter(replace(cfg.safety, backend=cfg.ppo.safety_backend)) if cfg.ppo.safety_penalty else None

    num_updates = cfg.ppo.total_episodes // (cfg.ppo.batch_size * accelerator.num_processes)
    trainer = PPOTrainer(cfg.ppo, accelerator, model, str(policy_path), tokenizer,
                         lambda prompts, texts: scorer.score(prompts, texts), reward_info["mean"], reward_info["std"],
                         train_prompts, cfg.seed, num_updates, safety_filter)
    if accelerator.is_main_process:  # only now: bad input above (LoRA targets, safety head) writes nothing
        save_resolved_config(raw, out)
    accelerator.init_trackers("ppo")
    checkpoints = out / "checkpoints"
    resume_from = checkpoint_to_resume(checkpoints, cfg.resume, accelerator.is_main_process)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    accelerator.wait_for_everyone()

    sets = eval_prompt_sets(world, cfg.ppo.eval_prompts, cfg.seed)
    baseline = {}
    if accelerator.is_main_process:  # evals are the main process's job (see PPOTrainer.train)
        with torch.random.fork_rng(devices=[]), trainer.reference_model() as reference:
            baseline = {split: sample_and_score(reference, tokenizer, prompts, cfg, world, scorer)
                        for split, prompts in sets.items()}

    def on_eval(update: int) -> dict:
        result = {"update": update}
        for split, prompts in sets.items():
            result[split], _ = sample_and_score(trainer.policy(), tokenizer, prompts, cfg, world, scorer)
        previous = trainer.progress.evals[-1] if trainer.progress.evals else {"eval": baseline["eval"][0]}
        d_proxy = result["eval"]["proxy_reward_mean"] - previous["eval"]["proxy_reward_mean"]
        d_gold = result["eval"]["gold_reward_mean"] - previous["eval"]["gold_reward_mean"]
        result["overoptimisation"] = d_proxy > cfg.ppo.overopt_tolerance and d_gold < -cfg.ppo.overopt_tolerance
        if result["overoptimisation"]:
            log.warning("over-optimisation at update %d: proxy reward %+.3f while gold reward %+.3f", update, d_proxy, d_gold)
        log.info("eval at update %d: gold %.3f, proxy %.3f, red-team unsafe %.2f", update,
                 result["eval"]["gold_reward_mean"], result["eval"]["proxy_reward_mean"],
                 result["redteam"]["harmful_unsafe_rate"])
        return result

    try:
        trainer.train(checkpoints, on_eval if accelerator.is_main_process else None)
    except NonFiniteLossError as err:
        kept = sorted(checkpoints.glob("update-*"))
        raise UserError(f"{err}; the last good checkpoint is {kept[-1] if kept else 'none'} "
                        "(lower ppo.lr or raise ppo.kl.beta, then resume=true)") from err
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        accelerator.end_training()
        return 0

    policy = trainer.export_policy()
    with atomic_dir(out / "model") as tmp:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    if cfg.ppo.lora.enabled:
        with atomic_dir(out / "adapter") as tmp:
            trainer.save_adapter(tmp)
    final = {split: sample_and_score(policy, tokenizer, prompts, cfg, world, scorer) for split, prompts in sets.items()}
    wins = losses = ties = 0
    rows = []
    for split, prompts in sets.items():
        for p, sft, ppo in zip(prompts, baseline[split][1], final[split][1]):
            g_sft, g_ppo = world.gold_reward(p, sft.text), world.gold_reward(p, ppo.text)
            wins, losses, ties = wins + (g_ppo > g_sft), losses + (g_ppo < g_sft), ties + (g_ppo == g_sft)
            rows.append({"split": split, "prompt": p.text, "sft": sft.text, "ppo": ppo.text,
                         "gold_sft": g_sft, "gold_ppo": g_ppo})
    write_jsonl_atomic(out / "samples.jsonl", rows)
    unsafe_sft = baseline["redteam"][0]["harmful_unsafe_rate"]
    unsafe_ppo = final["redteam"][0]["harmful_unsafe_rate"]
    safety, status = stage_safety(cfg, STAGE, policy, tokenizer, cfg.ppo.generation, out,
                                  baseline=Path(cfg.ppo.safety_baseline) if cfg.ppo.safety_baseline else None)
    history = trainer.progress.history
    metrics = {
        "stage": STAGE, "updates": trainer.progress.update, "episodes": history[-1]["episodes"] if history else 0,
        "gold_win_rate": wins / max(wins + losses, 1), "gold_win_rate_ties_half": (wins + 0.5 * ties) / max(len(rows), 1),
        "wins": wins, "losses": losses, "ties": ties,
        "gold_reward_sft": baseline["eval"][0]["gold_reward_mean"], "gold_reward_ppo": final["eval"][0]["gold_reward_mean"],
        "proxy_reward_sft": baseline["eval"][0]["proxy_reward_mean"], "proxy_reward_ppo": final["eval"][0]["proxy_reward_mean"],
        "unsafe_rate_sft": unsafe_sft, "unsafe_rate_ppo": unsafe_ppo,
        "final_kl": history[-1]["objective/kl"] if history else 0.0,
        "final_beta": trainer.kl_ctl.value, "kl_target": cfg.ppo.kl.target if cfg.ppo.kl.adaptive else None,
        "overoptimisation_updates": [e["update"] for e in trainer.progress.evals if e.get("overoptimisation")],
        "unsafe_rate_filter": safety["policy"]["unsafe_rate"]["rate"],
        "unsafe_rate_filter_sft": safety["previous_unsafe_rate"],
        "processes": accelerator.num_processes, "lora": cfg.ppo.lora.enabled,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "safety_penalty": cfg.ppo.safety_penalty,
        "final_flagged_fraction": history[-1].get("safety/flagged_fraction") if history else None,
    }
    write_json_atomic(out / "metrics.json", {**metrics, "history": history, "evals": trainer.progress.evals,
                                             "baseline": {s: b[0] for s, b in baseline.items()},
                                             "final": {s: f[0] for s, f in final.items()}})
    write_ppo_report(out, metrics, history, trainer.progress.evals, rows, safety)
    accelerator.end_training()
    log.info("ppo done: gold win rate %.2f (%d wins, %d losses, %d ties), gold %.3f -> %.3f, red-team unsafe %.2f -> %.2f, KL %.2f",
             metrics["gold_win_rate"], wins, losses, ties, metrics["gold_reward_sft"], metrics["gold_reward_ppo"],
             unsafe_sft, unsafe_ppo, metrics["final_kl"])
    return status


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
