"""``align-reward``: a Bradley-Terry reward model trained with TRL's RewardTrainer.

Reads preference pairs (``data=demo``: simulated labels from the demo world; ``data=custom
data.source=...``: the labeling app's export, any TRL preference dataset, or HH-RLHF transcripts),
trains ``reward_model=tiny|minilm|hf`` on them and checks it. The work is done by the reward package,
:mod:`alignment.reward`: pairs (:mod:`~alignment.reward.data`), the model
(:mod:`~alignment.reward.model`), training (:mod:`~alignment.reward.trainer`), scoring
(:mod:`~alignment.reward.scorer`, what PPO loads, without TRL) and the evaluation
(:mod:`~alignment.reward.evaluation`); this module loads the inputs, calls it, writes the outputs
and applies the gate.

Writes ``<run.dir>/reward/``: ``model/`` (with its tokenizer and ``reward_config.json``: input
format, max length and the reward normalisation statistics PPO needs), ``metrics.json``,
``safety.json`` (does the RM prefer the safe answer on red-team and HH harmless pairs? plus the
gate), ``report.html``, ``checkpoints/``, ``logs/`` and ``.hydra/``.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from alignment.config import Config
from alignment.data.world import DemoWorld
from alignment.gates import check_min, exit_status, summarise
from alignment.io import atomic_dir, write_json_atomic
from alignment.reports.html import write_report
from alignment.reports.sections import reward_sections
from alignment.reward.data import demo_safety_pairs, hh_safety_pairs, load_preference_rows
from alignment.reward.evaluation import gold_accuracy, normalisation_statistics, pair_accuracy
from alignment.reward.model import REWARD_CONFIG_FILE, load_reward_model, reward_model_path
from alignment.reward.scorer import RewardScorer
from alignment.reward.trainer import tokenize_pairs, train_reward_model, trainer_args
from alignment.stages.common import (
    checkpoint_to_resume,
    save_resolved_config,
    seed_everything,
    stage_dir,
    stage_main,
)

log = logging.getLogger(__name__)
STAGE = "reward"


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    seed_everything(cfg.seed)
    train_rows, eval_rows, data_info = load_preference_rows(cfg)
    hh_rows, hh_path = hh_safety_pairs(cfg)
    path = reward_model_path(cfg)
    model, tokenizer = load_reward_model(path, cfg.reward_model.pooling, cfg.reward_model.freeze_layers)
    train_ds, truncated_train = tokenize_pairs(train_rows, tokenizer, cfg)
    _, truncated_eval = tokenize_pairs(eval_rows, tokenizer, cfg)
    log.info("reward model from %s; %d train / %d eval pairs; %d + %d cut to %d tokens (prompt cut from the left)",
             path, len(train_rows), len(eval_rows), truncated_train, truncated_eval, cfg.reward_model.max_length)

    save_resolved_config(raw, out)
    resume_from = checkpoint_to_resume(cfg, out)
    trained = train_reward_model(model, tokenizer, train_ds, trainer_args(cfg, out), cfg.reward_model.head_init,
                                 cfg.reward_model.head_lr, cfg.reward.eval_batch_size, resume_from)
    trainer = trained.trainer

    rm = cfg.reward_model
    scorer = RewardScorer(trainer.model, tokenizer, rm.input_format, rm.max_length, rm.separator, cfg.reward.eval_batch_size)
    eval_stats = pair_accuracy(scorer, eval_rows, "eval pairs")
    reward_info = {"input_format": rm.input_format, "separator": rm.separator, "max_length": rm.max_length,
                   "pooling": getattr(trainer.model.config, "reward_pooling", "default"),
                   **normalisation_statistics(scorer, train_rows, cfg.reward.norm_pairs, cfg.seed)}
    with atomic_dir(out / "model") as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / REWARD_CONFIG_FILE, reward_info)

    world = DemoWorld(cfg.data.world_seed)
    demo_safety = pair_accuracy(scorer, demo_safety_pairs(world, cfg.seed), "red-team safety pairs")
    hh_safety = pair_accuracy(scorer, hh_rows, "HH harmless pairs") if hh_rows else None
    gates = summarise([check_min("reward.gate.min_safety_accuracy", demo_safety["accuracy"],
                                 cfg.reward.gate.min_safety_accuracy)])
    safety = {"stage": STAGE, "safety_accuracy_redteam": demo_safety["accuracy"], "n_redteam_pairs": demo_safety["n"],
              "safety_accuracy_hh_harmless": hh_safety["accuracy"] if hh_safety else None,
              "n_hh_pairs": hh_safety["n"] if hh_safety else 0, "hh_path": hh_path, "gates": gates}
    write_json_atomic(out / "safety.json", safety)

    loss_curve = [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e]
    metrics = {
        "stage": STAGE, "reward_model_init": path, "train_pairs": len(train_rows), "eval_pairs": len(eval_rows),
        "truncated_train_pairs": truncated_train, "truncated_eval_pairs": truncated_eval,
        "eval_accuracy": eval_stats["accuracy"], "eval_mean_margin": eval_stats["mean_margin"],
        "gold_accuracy": gold_accuracy(eval_stats, eval_rows) if data_info["source"] == "demo" else None,
        "label_ceiling": data_info.get("label_gold_agreement_eval"),
        "calibration": eval_stats["calibration"], "train_s": trained.train_s,
        "probe_train_accuracy": trained.probe_accuracy, "global_step": trainer.state.global_step,
        "resumed_from": resume_from, "reward_mean": reward_info["mean"], "reward_std": reward_info["std"],
        "safety_accuracy_redteam": safety["safety_accuracy_redteam"],
        "safety_accuracy_hh_harmless": safety["safety_accuracy_hh_harmless"], "data": data_info,
        "loss_curve": loss_curve,
    }
    write_json_atomic(out / "metrics.json", metrics)
    write_report(out / "report.html", "Reward model stage",
                 reward_sections({k: v for k, v in metrics.items() if k not in ("loss_curve", "data")}, safety,
                                 loss_curve, eval_stats))
    log.info("reward done in %.0fs: eval accuracy %.3f (ceiling %s), red-team safety accuracy %.3f, HH %s",
             trained.train_s, eval_stats["accuracy"], data_info.get("label_gold_agreement_eval"),
             demo_safety["accuracy"], safety["safety_accuracy_hh_harmless"])
    return exit_status(gates)


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
