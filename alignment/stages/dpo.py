"""``align-dpo``: Direct Preference Optimisation of the SFT policy with TRL's ``DPOTrainer``.

DPO learns from the preference pairs themselves, with no reward model in the loop and no sampling
during training: it reads the pairs the reward stage reads (:func:`~alignment.reward.data.load_preference_rows`:
``data=demo``, or the labeling app's export, which the pipeline points ``data.source`` at), and its
reference is the SFT policy (``dpo.policy_path``). ``dpo.beta`` is the strength of its implicit KL leash,
``dpo.loss_type`` its loss (``sigmoid``: the paper's; ``ipo``, ``hinge``, ``robust``). With
``dpo.lora.enabled=true`` it trains LoRA adapters and the reference is the policy with them disabled,
as in ``align-ppo``. A multi-turn prompt stays chat turns (TRL's conversational format), rendered by the
policy's template as when the policy answers; ``dpo.max_length`` cuts long answers, and TRL drops a
pair whose prompt alone fills it: both are counted (``pairs_truncated``, ``pairs_dropped_for_length``).

The reward model (``dpo.reward_path``) is not trained against; it scores the held-out answers (the proxy
reward), so DPO's results read like every other optimiser's. The stage ends as ``align-ppo`` does
(:func:`~alignment.stages.optimizer.finish_stage`): gold win rate against the SFT policy, gold and proxy
reward, KL to the SFT policy, the safety evaluation and gate (exit 3 when it fails).

Writes ``<run.dir>/dpo/``: ``model/`` (``adapter/`` with LoRA), ``metrics.json``, ``safety.json``,
``samples.jsonl``, ``report.html``, ``checkpoints/`` (``resume=true`` continues from the last), ``logs/``.
"""

from __future__ import annotations

import logging

import torch
from datasets import Dataset
from omegaconf import DictConfig
from trl import DPOConfig, DPOTrainer

from alignment.config import Config
from alignment.data.prompts import hh_messages, is_hh_transcript
from alignment.errors import UserError
from alignment.modeling import load_policy, lora_config
from alignment.reward.data import load_preference_rows
from alignment.reward.scorer import RewardScorer
from alignment.stages.common import (
    checkpoint_to_resume,
    save_resolved_config,
    seed_everything,
    stage_dir,
    stage_main,
)
from alignment.stages.optimizer import check_policy_and_reward, finish_stage, load_reference, train_and_save
from alignment.training import master_weights, trainer_defaults

log = logging.getLogger(__name__)
STAGE = "dpo"


def prompt_turns(row: dict) -> list[dict]:
    """A pair's prompt as chat turns: the source's own messages, an HH-RLHF transcript's turns, else one
    user turn. Multi-turn prompts stay turns, as sampling, evaluation, PPO and GRPO render them."""
    if row.get("prompt_messages"):
        return [dict(m) for m in row["prompt_messages"]]
    if is_hh_transcript(row["prompt"]):
        return hh_messages(row["prompt"])
    return [{"role": "user", "content": row["prompt"]}]


def preference_dataset(rows: list[dict]) -> Dataset:
    """The pairs in TRL's conversational preference format: the policy's chat template renders the
    prompt exactly as it does when the policy answers (sampling, evaluation)."""
    return Dataset.from_list([{"prompt": prompt_turns(r),
                               "chosen": [{"role": "assistant", "content": r["chosen"]}],
                               "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])


def length_counts(trainer: DPOTrainer, pairs: int, max_length: int) -> dict[str, int]:
    """What ``dpo.max_length`` did to the pairs, from TRL's tokenized training set: pairs dropped (TRL
    drops a pair whose prompt alone fills ``max_length``: no answer token would be left) and pairs whose
    longer answer was cut."""
    kept = trainer.train_dataset
    cut = sum(len(p) + max(len(c), len(r)) > max_length
              for p, c, r in zip(kept["prompt_ids"], kept["chosen_ids"], kept["rejected_ids"]))
    return {"pairs_dropped_for_length": pairs - len(kept), "pairs_truncated": cut}


def trainer_args(cfg: Config, out, compute_dtype: torch.dtype | None = None) -> DPOConfig:
    d = cfg.dpo
    return DPOConfig(**trainer_defaults(cfg, out, d, compute_dtype), learning_rate=d.lr, num_train_epochs=d.epochs,
                     lr_scheduler_type="linear", max_grad_norm=d.max_grad_norm, beta=d.beta,
                     loss_type=[d.loss_type.value], label_smoothing=d.label_smoothing, max_length=d.max_length,
                     disable_dropout=True, save_only_model=False)


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    policy_path, reward_path, _ = check_policy_and_reward(STAGE, cfg.dpo.policy_path, cfg.dpo.reward_path,
                                                     cfg.eval.judge_path)
    seed_everything(cfg.seed)
    train_rows, _, data_info = load_preference_rows(cfg)
    model, tokenizer = load_policy(cfg.policy, path=str(policy_path))
    scorer = RewardScorer.from_pretrained(reward_path, batch_size=cfg.reward.eval_batch_size)
    lora = lora_config(cfg.dpo.lora) if cfg.dpo.lora.enabled else None
    compute_dtype = master_weights(model, lora is not None)
    reference = None if lora else load_reference(cfg, policy_path, torch.device("cpu"))
    try:
        trainer = DPOTrainer(model=model, ref_model=reference, args=trainer_args(cfg, out, compute_dtype),
                             train_dataset=preference_dataset(train_rows), processing_class=tokenizer,
                             peft_config=lora)
    except ValueError as err:  # peft names the LoRA target modules it could not find
        raise UserError(f"dpo: {err}") from err
    lengths = length_counts(trainer, len(train_rows), cfg.dpo.max_length)
    if lengths["pairs_dropped_for_length"] == len(train_rows):
        raise UserError(f"dpo.max_length={cfg.dpo.max_length}: every one of the {len(train_rows)} pairs has a "
                        "prompt at least that long, and TRL drops them all (raise dpo.max_length)")
    if lengths["pairs_dropped_for_length"] or lengths["pairs_truncated"]:
        log.warning("dpo.max_length=%d: %d of %d pairs dropped (their prompt alone fills it), %d cut",
                    cfg.dpo.max_length, lengths["pairs_dropped_for_length"], len(train_rows), lengths["pairs_truncated"])
    save_resolved_config(raw, out)  # only now: bad input above writes nothing
    resume_from = checkpoint_to_resume(cfg, out)
    policy, result, train_s = train_and_save(trainer, lora is not None, out, tokenizer, resume_from, compute_dtype)
    device = next(policy.parameters()).device
    scorer.model.to(device, dtype=compute_dtype or torch.float32)
    history = trainer.state.log_history
    pairs_seen = trainer.state.global_step * cfg.dpo.batch_size * cfg.dpo.grad_accum * trainer.accelerator.num_processes
    training = {"data": data_info, "pairs": len(train_rows), **lengths, "steps": trainer.state.global_step,
                "pairs_seen": pairs_seen, "policy_samples": 0, "optimizer_steps": trainer.state.global_step,
                "lr": cfg.dpo.lr, "reward_terms": None,  # no online reward: it learns from the pairs themselves
                "budget": {"policy_samples": 0, "policy_tokens": 0, "optimizer_steps": trainer.state.global_step,
                           "preference_pairs": len(train_rows), "pairs_seen": pairs_seen},
                "train_loss": result.training_loss, "train_s": train_s,
                "beta": cfg.dpo.beta, "loss_type": cfg.dpo.loss_type.value, "lora": cfg.dpo.lora.enabled,
                "resumed_from": resume_from,
                "final_reward_accuracy": next((e["rewards/accuracies"] for e in reversed(history)
                                               if "rewards/accuracies" in e), None)}
    reference = reference if reference is not None else load_reference(cfg, policy_path, device)
    return finish_stage(cfg, STAGE, out, policy, reference.to(device), tokenizer, scorer,
                        cfg.dpo.generation, cfg.dpo.eval_prompts, cfg.dpo.safety_baseline, training,
                        [[e["step"], e["loss"]] for e in history if "loss" in e], compute_dtype)


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
