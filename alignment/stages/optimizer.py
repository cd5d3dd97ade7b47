"""What every policy-optimizer stage shares (``ppo``, ``dpo``, ``grpo``, ``rloo``): its inputs, and its end.

Every optimizer starts from the run's SFT policy and reward model and ends alike, so their results can
be put side by side (:mod:`alignment.reports.comparison`):

* :func:`check_policy_and_reward`: the SFT policy and the reward model (with its ``reward_config.json``:
  input format and normalisation statistics) exist, else one clear error naming the key;
* :func:`check_judge`: the judge reward model (``eval.judge_path``) exists and is not the optimised one;
* :func:`reward_terms_record`, :func:`online_budget` and :func:`evaluation_budget`: what the comparison's fairness check reads,
  written into every optimizer's ``metrics.json`` from what the stage applied and counted;
* :func:`finish_stage`: the held-out evaluation against the SFT policy on the ``prompts`` group's sets
  (proxy reward with intervals; reward-model, judge and gold win rates with paired intervals, and
  length-controlled; KL to the SFT policy on the same answers), ``samples.jsonl``, the safety evaluation
  and gate, ``metrics.json`` and ``report.html``; it returns the stage's exit status (3 when a gate failed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_utils import TrainOutput

from alignment.config import Config, GenerationConfig
from alignment.data.prompt_sets import stage_prompt_sets
from alignment.errors import UserError
from alignment.generation import Sample, chat_prompt_ids, device_for
from alignment.io import atomic_dir, write_json_atomic, write_jsonl_atomic
from alignment.modeling import load_policy
from alignment.ppo.evaluation import HeldOutEval, eval_prompt_sets, held_out_metrics
from alignment.ppo.rollout_math import logprobs_from_logits
from alignment.reports.html import kv_table, table_html, write_report
from alignment.reports.sections import loss_section, missing_section, safety_sections
from alignment.reward.model import REWARD_CONFIG_FILE
from alignment.reward.scorer import RewardScorer
from alignment.safety.eval import stage_safety
from alignment.training import autocast, autocast_forward

log = logging.getLogger(__name__)


def check_policy_and_reward(section: str, policy_path: str, reward_path: str,
                            judge_path: str | None = None) -> tuple[Path, Path, dict]:
    """The policy folder, the reward-model folder and its ``reward_config.json``, or a :class:`UserError`
    naming ``<section>.policy_path`` / ``<section>.reward_path`` (or ``eval.judge_path``: :func:`check_judge`)."""
    policy, reward = Path(policy_path), Path(reward_path)
    if not (policy / "config.json").is_file():
        raise UserError(f"{section}.policy_path={policy}: no model there (run align-sft first, or point it at one)")
    if not (reward / REWARD_CONFIG_FILE).is_file():
        raise UserError(f"{section}.reward_path={reward}: no reward model written by align-reward there")
    check_judge(judge_path, reward)
    return policy, reward, json.loads((reward / REWARD_CONFIG_FILE).read_text())


def check_judge(judge: str | None, reward_path: Path) -> None:
    """``eval.judge_path``, when set, is a reward model written by ``align-reward`` other than the one
    being optimised (a judge that is the proxy would only agree with it)."""
    if judge is None:
        return
    if not (Path(judge) / REWARD_CONFIG_FILE).is_file():
        raise UserError(f"eval.judge_path={judge}: no reward model written by align-reward there")
    if Path(judge).resolve() == reward_path.resolve():
        raise UserError(f"eval.judge_path={judge} is the reward model being optimised; a judge must be another "
                        "one (trained on other pairs, or a bigger model), or its verdicts mean nothing")


def reward_terms_record(reward_path: str | Path, mean: float, std: float, clip: float,
                        missing_eos_penalty: float | None, safety_penalty: float, safety_backend: str | None,
                        kl_coef: float, kl_control: str = "fixed") -> dict:
    """The reward an optimizer maximised, term by term, from the values its reward applied (the
    comparison's fairness check holds it against every other online optimizer's): the reward model and
    its normalisation, the missing-EOS penalty, the safety penalty with its filter, the KL coefficient and
    whether it was adapted."""
    return {"reward_model": str(Path(reward_path).resolve()),
            "normalisation": {"mean": float(mean), "std": float(std), "clip": float(clip)},
            "missing_eos_penalty": missing_eos_penalty, "safety_penalty": float(safety_penalty),
            "safety_backend": str(safety_backend) if safety_penalty else None,
            "kl_coef": float(kl_coef), "kl_control": kl_control}


def online_budget(prompt_sets, policy_samples: int, policy_tokens: int, optimizer_steps: int, prompts_drawn: int,
                  distinct_train_prompts: int) -> dict:
    """What an online optimizer (ppo, grpo, rloo) spent, as counted, under the names the fairness check reads."""
    return {"policy_samples": policy_samples, "policy_tokens": policy_tokens, "optimizer_steps": optimizer_steps,
            "prompts_drawn": prompts_drawn, "distinct_train_prompts": distinct_train_prompts,
            "train_prompt_set": f"{prompt_sets.where['train']} ({len(prompt_sets['train'])} prompts)"}


def evaluation_budget(cfg: Config, held_out: HeldOutEval, generation: GenerationConfig) -> dict:
    """How an optimizer was evaluated: held-out prompts per split, which split, sampling settings, seed."""
    return {"eval_prompts": {split: len(prompts) for split, prompts in held_out.sets.items()},
            "eval_split": str(cfg.eval.split), "generation": dataclasses.asdict(generation), "seed": cfg.seed}


def load_judge(cfg: Config, device: torch.device, dtype: torch.dtype | None = None) -> RewardScorer | None:
    """The judge reward model of ``eval.judge_path`` on ``device`` in the evaluation's ``dtype``, or ``None``."""
    if cfg.eval.judge_path is None:
        return None
    judge = RewardScorer.from_pretrained(cfg.eval.judge_path, batch_size=cfg.reward.eval_batch_size)
    judge.model.to(device, dtype=dtype or torch.float32)
    return judge


@torch.no_grad()
def sampled_kl(policy: PreTrainedModel, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               samples: list[Sample], temperature: float) -> float:
    """KL(policy || reference) per answer, estimated on the policy's own answers: the mean over ``samples``
    of ``sum_t log pi(y_t) - log pi_ref(y_t)``, both at the sampling temperature.

    Why measure it here rather than quote each trainer's log: PPO's per-token penalty, GRPO's k3 term
    and DPO's implicit leash are different quantities; this one is the same for every optimizer, on the
    same held-out prompts. The answers are re-encoded from their text (the samples keep no token ids),
    so it is an estimate.
    """
    was = policy.training, reference.training
    policy.eval(), reference.eval()
    kls = []
    for s in samples:
        prompt = chat_prompt_ids(tokenizer, s.prompt)
        answer = tokenizer(s.text, add_special_tokens=False)["input_ids"] + ([s.stop_id] if s.ended else [])
        if not answer:
            kls.append(0.0)
            continue
        tokens = torch.tensor([answer])
        logps = []
        for model in (policy, reference):
            ids = torch.tensor([prompt + answer], device=device_for(model))
            logits = model(input_ids=ids).logits[:, len(prompt) - 1:-1].float().cpu()
            logps.append(logprobs_from_logits(logits, tokens, temperature).sum().item())
        kls.append(logps[0] - logps[1])
    policy.train(was[0])
    reference.train(was[1])
    return float(np.mean(kls)) if kls else 0.0


def finish_stage(cfg: Config, stage: str, out: Path, policy: PreTrainedModel, reference: PreTrainedModel,
                 tokenizer: PreTrainedTokenizerBase, scorer: RewardScorer, generation: GenerationConfig,
                 eval_prompts: int, safety_baseline: str | None, training: dict, loss_curve: list,
                 compute_dtype: torch.dtype | None = None) -> int:
    """Evaluate ``policy`` against ``reference`` (the SFT policy) as ``align-ppo`` does, run the safety
    evaluation and gate, write ``samples.jsonl``, ``metrics.json``, ``safety.json`` and ``report.html``.

    ``training`` holds the stage's own figures (steps, samples, wall time...), with its ``budget`` (what it
    drew and the steps it took, counted) and ``reward_terms`` (``None``: no online reward, DPO);
    ``loss_curve`` its ``[step, loss]`` points. Every evaluation runs under autocast in ``compute_dtype`` (the stage's; see
    :mod:`alignment.training`). Returns the exit status: 0, or 3 when a safety gate failed.
    """
    device = device_for(policy)
    prompt_sets = stage_prompt_sets(cfg, tokenizer, policy, stage, ("eval", "redteam", "benign"))
    held_out = HeldOutEval(eval_prompt_sets(prompt_sets, eval_prompts, cfg.seed, cfg.eval.split), tokenizer, scorer,
                           generation, cfg.seed, gold=prompt_sets.gold, judge=load_judge(cfg, device, compute_dtype))
    with autocast(compute_dtype, device):
        with torch.random.fork_rng(devices=[]):
            baseline = held_out.run(reference)
        final = held_out.run(policy)
        kl = sampled_kl(policy, reference, tokenizer, final["eval"].samples + final["redteam"].samples,
                        generation.temperature)
    with autocast_forward(policy, compute_dtype):  # the safety filter's own models run as they are
        safety, status = stage_safety(cfg, stage, policy, tokenizer, generation, out, prompt_sets,
                                      baseline=Path(safety_baseline) if safety_baseline else None)
    comparison = held_out.compare(baseline, final, name=stage)
    write_jsonl_atomic(out / "samples.jsonl", comparison.rows)
    training = {**training, "budget": {**training["budget"], **evaluation_budget(cfg, held_out, generation)}}
    metrics = {"stage": stage, **training, **held_out_metrics(stage, held_out, baseline, final, comparison, safety,
                                                              cfg.seed),
               "kl_sft": kl, "judge_path": cfg.eval.judge_path, "prompts": prompt_sets.summary()}
    write_json_atomic(out / "metrics.json", {**metrics, "loss_curve": loss_curve,
                                             "baseline": {s: b.figures for s, b in baseline.items()},
                                             "final": {s: f.figures for s, f in final.items()}})
    sections = [("Summary", kv_table({k: v for k, v in metrics.items() if k not in ("missing", "prompts")}))]
    if metrics["missing"]:
        sections.append(missing_section(metrics["missing"]))
    if loss_curve:
        sections.append(loss_section(loss_curve, f"{stage.upper()} loss"))
    sections.append((f"Samples: SFT vs {stage.upper()}", table_html(
        ["prompt", "SFT", stage.upper()], [(r["prompt"], r["sft"], r[stage]) for r in comparison.rows[:12]])))
    write_report(out / "report.html", f"{stage.upper()} stage", sections + safety_sections(safety))
    log.info("%s done: reward-model score %.3f -> %.3f, KL to SFT %.2f, red-team unsafe (filter) %.2f%s", stage,
             metrics["rm_score_sft"], metrics[f"rm_score_{stage}"], kl, metrics["unsafe_rate_filter"],
             "".join(f"; {name} win rate {metrics[f'{name}_win_rate']:.2f}" for name in ("gold", "judge")
                     if metrics[f"{name}_win_rate"] is not None))
    return status


def train_and_save(trainer, lora: bool, out: Path, tokenizer: PreTrainedTokenizerBase, resume_from: str | None,
                   dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, TrainOutput, float]:
    """Run a TRL trainer (from ``resume_from`` when set), then save the policy to ``out/model`` (with
    LoRA: the adapters alone to ``out/adapter`` and the merged policy to ``out/model``, so that loading
    it needs no peft), in ``dtype`` when given (the dtype it was loaded in, not its float32 master
    weights'). Returns the policy, TRL's result and the training's wall time."""
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_s = time.time() - started
    policy = trainer.model
    if lora:
        with atomic_dir(out / "adapter") as tmp:
            policy.save_pretrained(tmp)
        policy = policy.merge_and_unload()
    if dtype is not None:
        policy.to(dtype)
    with atomic_dir(out / "model") as tmp:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return policy, result, train_s


def load_reference(cfg: Config, policy_path: Path, device: torch.device) -> PreTrainedModel:
    """The SFT policy again, frozen: the baseline the optimised policy is compared with."""
    reference, _ = load_policy(cfg.policy, path=str(policy_path))
    return reference.to(device).eval().requires_grad_(False)
