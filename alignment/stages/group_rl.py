"""The body of ``align-grpo`` and ``align-rloo``: TRL's ``GRPOTrainer`` / ``RLOOTrainer`` on our reward.

Both sample ``num_generations`` answers per training prompt and push up the ones that scored better
than the prompt's other answers (GRPO: the group's mean, scaled by its std; RLOO: the mean of the
others), under a KL term to the reference (the SFT policy) weighted by ``reward_terms.kl_coef``. The
score of an answer is the run's ``reward_terms``, PPO's, handed to TRL as reward functions
(:class:`OurRewards`) that TRL sums:

* ``reward_model``: the reward model's score of the decoded (prompt, answer) text, re-encoded with the
  reward model's own tokenizer and input format (:class:`~alignment.reward.scorer.RewardScorer`), then
  normalised with the statistics the reward stage saved and clipped to ``+-reward_terms.clip``;
* ``missing_eos``: ``-reward_terms.missing_eos_penalty`` for an answer that ran out of tokens before its EOS;
* ``safety``: ``-reward_terms.safety_penalty * P(unsafe)`` of the ``reward_terms.safety_backend`` filter.

The run's length is a sampling budget, ``total_episodes`` policy samples (PPO's by default), drawn in
rounds of ``batch_size * steps_per_generation`` and each used for ``num_iterations`` passes (by default
PPO's update: 64 samples, 4 passes in mini-batches of 16); the sampling settings are ``generation``
(PPO's by default); see docs/stages.md for where TRL's own generation defaults differ. What was drawn
is counted where it is scored (:class:`SampleCount`). The stage ends as every optimizer does
(:func:`~alignment.stages.optimizer.finish_stage`).

Writes ``<run.dir>/<stage>/``: ``model/`` (``adapter/`` with LoRA), ``metrics.json``, ``safety.json``,
``samples.jsonl``, ``report.html``, ``checkpoints/`` (``resume=true`` continues from the last), ``logs/``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from accelerate.utils import gather_object
from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from alignment.config import Config, GroupRLStageConfig
from alignment.data.prompt_sets import stage_prompt_sets
from alignment.data.prompts import PromptLike
from alignment.errors import UserError
from alignment.generation import stop_token_ids
from alignment.io import write_json_atomic
from alignment.modeling import load_policy, lora_config
from alignment.ppo.advantages import normalise_scores
from alignment.reward.scorer import RewardScorer
from alignment.safety import build_filter
from alignment.safety.filter import ANY_INDEX
from alignment.stages.common import checkpoint_to_resume, save_resolved_config, seed_everything, stage_dir
from alignment.stages.optimizer import (
    check_policy_and_reward,
    finish_stage,
    load_reference,
    online_budget,
    reward_terms_record,
    train_and_save,
)
from alignment.training import master_weights, trainer_defaults

log = logging.getLogger(__name__)
#: How each optimizer applies ``reward_terms.kl_coef`` (what makes it that optimizer, not a reward term).
KL_FORMS = {"grpo": "k3 per token, in the loss", "rloo": "k1 summed over the answer, in the reward"}


class SampleCount(TrainerCallback):
    """The policy samples this process drew, their tokens and the distinct training prompts, counted as the
    reward functions score them (right after each generation round), and saved beside every checkpoint
    (one file per process) so that a resumed run counts on from there."""

    FILE = "policy_samples-{rank}.json"

    def __init__(self, rank: int = 0) -> None:
        self.rank, self.samples, self.tokens, self.prompts = rank, 0, 0, set()

    def add(self, completion_ids: list[list[int]], prompt_text: list[str]) -> None:
        self.samples += len(completion_ids)
        self.tokens += sum(len(ids) for ids in completion_ids)
        self.prompts.update(prompt_text)

    def on_save(self, args, state, control, **_: object) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / self.FILE.format(rank=self.rank),
                          {"samples": self.samples, "tokens": self.tokens, "prompts": sorted(self.prompts)})

    def resume(self, checkpoint: str | None) -> None:
        path = Path(checkpoint or "") / self.FILE.format(rank=self.rank)
        if checkpoint and path.is_file():
            saved = json.loads(path.read_text())
            self.samples, self.tokens, self.prompts = saved["samples"], saved["tokens"], set(saved["prompts"])

    def totals(self, accelerator) -> dict:
        """The counts summed over every process."""
        counts = torch.tensor([self.samples, self.tokens], device=accelerator.device)
        if accelerator.num_processes > 1:
            counts = accelerator.reduce(counts, "sum")
        prompts = set().union(*gather_object([sorted(self.prompts)])) if accelerator.num_processes > 1 else self.prompts
        return {"policy_samples": int(counts[0]), "policy_tokens": int(counts[1]), "distinct_train_prompts": len(prompts)}


class OurRewards:
    """The score ``align-ppo`` gives an answer, split into TRL reward functions (TRL sums them).

    TRL calls each with the batch's ``prompts`` and ``completions`` (chat messages), the
    ``completion_ids`` (cut after the first EOS, which they keep) and the dataset's other columns:
    ``prompt_text`` is the prompt as plain text, what the reward model and the filter read. The reward
    model's function also counts what it scores (``count``).
    """

    def __init__(self, scorer: RewardScorer, mean: float, std: float, clip: float, stop_ids: Collection[int],
                 missing_eos_penalty: float | None, safety_filter=None, safety_penalty: float = 0.0) -> None:
        self.scorer, self.mean, self.std, self.clip = scorer, mean, std, clip
        self.stop_ids, self.missing_eos_penalty = frozenset(stop_ids), missing_eos_penalty
        self.safety_filter, self.safety_penalty = safety_filter, safety_penalty
        self.count = SampleCount()

    def functions(self) -> list:
        funcs = [self.reward_model]
        if self.missing_eos_penalty:
            funcs.append(self.missing_eos)
        if self.safety_penalty > 0:
            funcs.append(self.safety)
        return funcs

    def record(self, reward_path: str | Path, kl_coef: float) -> dict:
        """The terms these functions apply (:func:`~alignment.stages.optimizer.reward_terms_record`)."""
        backend = getattr(self.safety_filter, "name", None)
        return reward_terms_record(reward_path, self.mean, self.std, self.clip, self.missing_eos_penalty,
                                   self.safety_penalty, backend, kl_coef)

    @staticmethod
    def texts(completions: list) -> list[str]:
        """The answers as our sampler returns them: the message content, stripped."""
        return [(c[-1]["content"] if isinstance(c, list) else c).strip() for c in completions]

    def reward_model(self, completions: list, prompt_text: list[str], completion_ids: list[list[int]] | None = None,
                     **_: object) -> list[float]:
        if completion_ids is not None:
            self.count.add(completion_ids, prompt_text)
        raw = torch.from_numpy(np.asarray(self.scorer.score(prompt_text, self.texts(completions)), dtype=np.float32))
        return normalise_scores(raw, self.mean, self.std, self.clip).tolist()

    def missing_eos(self, completion_ids: list[list[int]], **_: object) -> list[float]:
        return [0.0 if ids and ids[-1] in self.stop_ids else -float(self.missing_eos_penalty)
                for ids in completion_ids]

    def safety(self, completions: list, prompt_text: list[str], **_: object) -> list[float]:
        scores = np.asarray(self.safety_filter.score_all(self.texts(completions), prompts=prompt_text), dtype=float)
        return (-self.safety_penalty * scores[:, ANY_INDEX]).tolist()


def stop_at_end_of_turn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every stop id of the policy (:func:`~alignment.generation.stop_token_ids`), written into its generation
    config: TRL's sampler stops at those ids and the tokenizer's EOS only, so a checkpoint whose config does
    not list its chat template's end of turn would sample every answer to the length limit."""
    model.generation_config.eos_token_id = stop_token_ids(model, tokenizer)
    return model.generation_config.eos_token_id


def prompt_dataset(prompts: list[PromptLike]) -> Dataset:
    """The training prompts as TRL's conversational prompt format (the policy's chat template renders
    them as our sampler does), with their text alongside for the reward functions."""
    return Dataset.from_list([{"prompt": [dict(m) for m in p.messages], "prompt_text": p.text} for p in prompts])


def optimizer_steps(c: GroupRLStageConfig, processes: int) -> int:
    """Steps that draw ``total_episodes`` policy samples: each generation round samples
    ``batch_size * steps_per_generation * processes`` answers, used for ``num_iterations`` passes of
    ``steps_per_generation`` micro-batches, ``grad_accum`` of them to an optimizer step."""
    rounds = max(1, c.total_episodes // (c.batch_size * c.steps_per_generation * processes))
    return rounds * c.steps_per_generation * c.num_iterations // c.grad_accum


def trainer_kwargs(cfg: Config, c: GroupRLStageConfig, out: Path, steps: int,
                   compute_dtype: torch.dtype | None = None) -> dict:
    """The config fields GRPOConfig and RLOOConfig share, from ours."""
    g = c.generation
    return {**trainer_defaults(cfg, out, SimpleNamespace(**vars(c), max_steps=steps), compute_dtype),
            "learning_rate": c.lr, "lr_scheduler_type": "linear", "max_grad_norm": c.max_grad_norm,
            "num_generations": c.num_generations, "max_completion_length": g.max_new_tokens,
            "temperature": g.temperature, "top_p": g.top_p, "top_k": g.top_k, "repetition_penalty": 1.0,
            "beta": cfg.reward_terms.kl_coef, "num_iterations": c.num_iterations, "epsilon": c.epsilon,
            "steps_per_generation": c.steps_per_generation, "disable_dropout": True, "save_only_model": False,
            "mask_truncated_completions": False}


def run_group_stage(cfg: Config, raw: DictConfig, stage: str, trainer_cls, config_cls, extra: dict) -> int:
    """Train with ``trainer_cls`` (``GRPOTrainer``/``RLOOTrainer``) configured by ``config_cls`` from our
    config plus ``extra`` (the trainer's own fields), save, evaluate and gate; the exit status."""
    c: GroupRLStageConfig = getattr(cfg, stage)
    terms = cfg.reward_terms
    out = stage_dir(cfg, stage)
    policy_path, reward_path, reward_info = check_policy_and_reward(stage, c.policy_path, c.reward_path,
                                                                    cfg.eval.judge_path)
    seed_everything(cfg.seed)
    model, tokenizer = load_policy(cfg.policy, path=str(policy_path))
    compute_dtype = master_weights(model, c.lora.enabled)
    prompt_sets = stage_prompt_sets(cfg, tokenizer, model, stage, ("train",))
    scorer = RewardScorer.from_pretrained(reward_path, batch_size=cfg.reward.eval_batch_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer.model.to(device, dtype=compute_dtype or torch.float32)
    safety_filter = build_filter(replace(cfg.safety, backend=terms.safety_backend)) if terms.safety_penalty else None
    rewards = OurRewards(scorer, reward_info["mean"], reward_info["std"], terms.clip, stop_at_end_of_turn(model, tokenizer),
                         terms.missing_eos_penalty, safety_filter, terms.safety_penalty)
    try:
        args = config_cls(**trainer_kwargs(cfg, c, out, optimizer_steps(c, world_size()), compute_dtype), **extra)
        trainer = trainer_cls(model=model, reward_funcs=rewards.functions(), args=args,
                              train_dataset=prompt_dataset(prompt_sets["train"]), processing_class=tokenizer,
                              peft_config=lora_config(c.lora) if c.lora.enabled else None)
    except ValueError as err:  # TRL's batch-size checks, peft's unknown LoRA target modules
        raise UserError(f"{stage}: {err}") from err
    save_resolved_config(raw, out)  # only now: bad input above writes nothing
    resume_from = checkpoint_to_resume(cfg, out)
    rewards.count.rank = trainer.accelerator.process_index
    rewards.count.resume(resume_from)
    trainer.add_callback(rewards.count)
    policy, result, train_s = train_and_save(trainer, c.lora.enabled, out, tokenizer, resume_from, compute_dtype)
    history = trainer.state.log_history
    counted = rewards.count.totals(trainer.accelerator)
    training = {"steps": trainer.state.global_step, "optimizer_steps": trainer.state.global_step,
                "policy_samples": counted["policy_samples"], "lr": c.lr,
                "reward_terms": rewards.record(reward_path, trainer.beta),
                "budget": online_budget(prompt_sets, counted["policy_samples"], counted["policy_tokens"],
                                        trainer.state.global_step, counted["policy_samples"] // c.num_generations,
                                        counted["distinct_train_prompts"]),
                "num_generations": c.num_generations, "kl_form": KL_FORMS[stage], "train_loss": result.training_loss,
                "train_s": train_s, "lora": c.lora.enabled, "resumed_from": resume_from,
                "final_train_reward": next((e["reward"] for e in reversed(history) if "reward" in e), None),
                "final_train_kl": next((e["kl"] for e in reversed(history) if "kl" in e), None)}
    return finish_stage(cfg, stage, out, policy, load_reference(cfg, policy_path, next(policy.parameters()).device),
                        tokenizer, scorer, c.generation, c.eval_prompts, c.safety_baseline, training,
                        [[e["step"], e["loss"]] for e in history if "loss" in e], compute_dtype)


def world_size() -> int:
    """Processes of this run (``accelerate launch`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
