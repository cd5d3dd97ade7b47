"""``align-dpo``: Direct Preference Optimisation of the SFT policy with TRL's ``DPOTrainer``.

DPO learns from the preference pairs themselves, with no reward model in the loop and no sampling
during training: it reads the pairs the reward stage reads (:func:`~alignment.reward.data.load_preference_rows`:
``data=demo``, or the labeling app's export, which the pipeline points ``data.source`` at), and its
reference is the SFT policy (``dpo.policy_path``). ``dpo.beta`` is the strength of its implicit KL leash,
``dpo.loss_type`` its loss (``sigmoid``: the paper's; ``ipo``, ``hinge``, ``robust``). With
``dpo.lora.enabled=true`` it trains LoRA adapters and the reference is the policy with them disabled,
as in ``align-ppo``.

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
from alignment.training import trainer_defaults

log = logging.getLogger(__name__)
STAGE = "dpo"


def preference_dataset(rows: list[dict]) -> Dataset:
    """Prompt/chosen/rejected text as TRL's conversational preference format: the policy's chat
    template renders the prompt exactly as it does when the policy answers (sampling, evaluation)."""
    return Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                               "chosen": [{"role": "assistant", "content": r["chosen"]}],
                               "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])


def trainer_args(cfg: Config, out) -> DPOConfig:
    d = cfg.dpo
    return DPOConfig(**trainer_defaults(cfg, out, d), learning_rate=d.lr, num_train_epochs=d.epochs,
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
    reference = None if lora else load_reference(cfg, policy_path, torch.device("cpu"))
    try:
        trainer = DPOTrainer(model=model, ref_model=reference, args=trainer_args(cfg, out),
                             train_dataset=preference_dataset(train_rows), processing_class=tokenizer,
                             peft_config=lora)
    except ValueError as err:  # peft names the LoRA target modules it could not find
        raise UserError(f"dpo: {err}") from err
    save_resolved_config(raw, out)  # only now: bad input above writes nothing
    resume_from = checkpoint_to_resume(cfg, out)
    policy, result, train_s = train_and_save(trainer, lora is not None, out, tokenizer, resume_from)
    device = next(policy.parameters()).device
    scorer.model.to(device)
    history = trainer.state.log_history
    training = {"data": data_info, "pairs": len(train_rows), "steps": trainer.state.global_step,
                "pairs_seen": trainer.state.global_step * cfg.dpo.batch_size * cfg.dpo.grad_accum
                * trainer.accelerator.num_processes,
                "policy_samples": 0, "train_loss": result.training_loss, "train_s": train_s,
                "beta": cfg.dpo.beta, "loss_type": cfg.dpo.loss_type.value, "lora": cfg.dpo.lora.enabled,
                "resumed_from": resume_from,
                "final_reward_accuracy": next((e["rewards/accuracies"] for e in reversed(history)
                                               if "rewards/accuracies" in e), None)}
    reference = reference if reference is not None else load_reference(cfg, policy_path, device)
    return finish_stage(cfg, STAGE, out, policy, reference.to(device), tokenizer, scorer,
                        cfg.dpo.generation, cfg.dpo.eval_prompts, cfg.dpo.safety_baseline, training,
                        [[e["step"], e["loss"]] for e in history if "loss" in e])


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
