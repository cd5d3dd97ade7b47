"""``align-reward``: a Bradley-Terry reward model trained with TRL's RewardTrainer.

Reads preference pairs (``data=demo``: simulated labels from the demo world; ``data=custom
data.source=...``: the labeling app's export, any TRL preference dataset, or HH-RLHF transcripts),
renders every pair with :func:`alignment.ppo.retokenize.encode_reward_row` (the same function PPO
scores rollouts with) cutting over-long prompts from the left instead of letting TRL drop them, and
trains ``reward_model=tiny|minilm|hf``. Loading and scoring a reward model (what PPO needs) live in
:mod:`alignment.reward_model`, which imports no TRL.

Writes ``<run.dir>/reward/``: ``model/`` (with its tokenizer and ``reward_config.json``: input
format, max length and the reward normalisation statistics PPO needs), ``metrics.json``,
``safety.json`` (does the RM prefer the safe answer on red-team and HH harmless pairs? plus the
gate), ``report.html``, ``checkpoints/``, ``logs/`` and ``.hydra/``.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from alignment import PROJECT_ROOT
from alignment.config import Config, require, reward_epochs
from alignment.data.loading import load_source, read_jsonl_numbered, row_location
from alignment.data.preferences import demo_preferences, normalise_row
from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.gates import check_min, exit_status, summarise
from alignment.io import atomic_dir, write_json_atomic
from alignment.modeling import resolve_policy_path, resolve_reward_backbone
from alignment.ppo.retokenize import encode_reward_row, pad_rows
from alignment.reports.html import figure_html, kv_table, table_html, write_report
from alignment.reports.sections import gates_section, loss_section
from alignment.reward_model import (
    REWARD_CONFIG_FILE,
    RewardScorer,
    load_reward_model,
)
from alignment.stages.common import (
    checkpoint_to_resume,
    save_resolved_config,
    seed_everything,
    stage_dir,
    stage_main,
    trainer_defaults,
)

log = logging.getLogger(__name__)
STAGE = "reward"
HH_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.dev.jsonl"


# ------------------------------------------------------------------------------------------ data
def load_preference_rows(cfg: Config) -> tuple[list[dict], list[dict], dict]:
    """``(train rows, eval rows, info)`` as prompt/chosen/rejected text with a margin."""
    d = cfg.data
    if d.source == "demo":
        world = DemoWorld(d.world_seed)
        kwargs = dict(noise=d.noise, position_bias=d.position_bias, seed=cfg.seed)
        try:
            train = demo_preferences(world, "train", d.pairs_per_prompt, **kwargs)
            held = demo_preferences(world, "eval", 1, **kwargs)
        except ValueError as err:
            raise UserError(f"data: {err}") from err
        for row in train + held:
            row["margin"] = cfg.reward.margin_scale * (row["strength"] - 1) / 3
        info = {"source": "demo", "noise": d.noise,
                "label_gold_agreement_eval": float(np.mean([r["gold_chosen_better"] for r in held]))}
    else:
        source = require(d.source, "data.source", "data=custom needs data.source=PATH_OR_HUB_NAME")
        train_ds, held_ds, where = load_source(source, d.train_split)
        train, skipped = _normalise_all(train_ds, where, d.skip_invalid)
        if d.eval_source:
            held_ds, _, eval_where = load_source(d.eval_source, d.train_split)
            where = f"{where} (eval: {eval_where})"
        held, skipped_held = _normalise_all(held_ds, where, d.skip_invalid) if held_ds is not None else ([], 0)
        if held_ds is None:
            random.Random(cfg.seed).shuffle(train)
            n_eval = max(1, round(len(train) * d.eval_fraction))
            train, held = train[n_eval:], train[:n_eval]
        for row in train + held:
            row["margin"] = cfg.reward.margin_scale * row["margin"]
        info = {"source": where, "skipped_invalid": skipped + skipped_held}
    if d.max_rows:
        train = train[:d.max_rows]
    if not train or not held:
        raise UserError(f"data.source={d.source}: {len(train)} training and {len(held)} eval pairs; both must be non-empty")
    return train, held, info


def _normalise_all(ds: Dataset, where: str, skip_invalid: bool) -> tuple[list[dict], int]:
    if len(ds) == 0:
        raise UserError(f"{where}: the dataset is empty")
    rows, skipped = [], 0
    for i, row in enumerate(ds):
        try:
            rows.append(normalise_row(row, row_location(where, row, i)))
        except UserError as err:
            if not skip_invalid:
                raise UserError(f"{err} (set data.skip_invalid=true to skip such rows)") from err
            skipped += 1
            log.warning("skipping %s", err)
    return rows, skipped


# ------------------------------------------------------------------------------------------ model
def reward_model_path(cfg: Config) -> str:
    name = require(cfg.reward_model.name_or_path, "reward_model.name_or_path",
                   "reward_model=hf needs reward_model.name_or_path=HUB_NAME_OR_FOLDER")
    if name == "tiny":
        sft_model = Path(cfg.reward.sft_path)
        if cfg.reward.init_from_sft and (sft_model / "config.json").exists():
            return str(sft_model)
        log.warning("no SFT policy at %s: the tiny reward model starts from an untrained backbone", sft_model)
        return resolve_policy_path(cfg.policy, cfg.data.world_seed, cfg.seed)
    return resolve_reward_backbone(name)


def tokenize_pairs(rows: list[dict], tokenizer: PreTrainedTokenizerBase, cfg: Config) -> tuple[Dataset, int]:
    """TRL's processed format (``chosen_ids``, ``rejected_ids``, ``margin``) and how many pairs were cut."""
    rm = cfg.reward_model
    out, truncated = [], 0
    for row in tqdm(rows, desc="tokenizing pairs", leave=False):
        chosen, cut_c = encode_reward_row(row["prompt"], row["chosen"], tokenizer, rm.max_length, rm.input_format, rm.separator)
        rejected, cut_r = encode_reward_row(row["prompt"], row["rejected"], tokenizer, rm.max_length, rm.input_format, rm.separator)
        truncated += cut_c or cut_r
        out.append({"chosen_ids": chosen["input_ids"], "rejected_ids": rejected["input_ids"], "margin": row["margin"]})
    return Dataset.from_list(out), truncated


def scalar_head(model: PreTrainedModel) -> torch.nn.Linear:
    """The freshly initialised ``Linear(hidden, 1)`` outside the pretrained backbone (BERT's
    ``classifier``, a decoder's or :class:`MeanPoolingRewardModel`'s ``score``)."""
    body = {id(p) for p in model.base_model.parameters()}
    heads = [m for m in model.modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == 1 and id(m.weight) not in body]
    if len(heads) != 1:
        raise UserError(f"reward_model.head_init=probe: expected one scalar head outside the backbone, found {len(heads)}")
    return heads[0]


@torch.no_grad()
def init_head_from_probe(model: PreTrainedModel, train_ds: Dataset, pad_token_id: int, batch_size: int = 64,
                         c: float = 1.0) -> float:
    """Set the scalar head to the Bradley-Terry linear probe on the frozen model's features.

    With a linear head ``r = w.f + b``, Bradley-Terry on a pair is a logistic regression of "chosen
    wins" on ``f_chosen - f_rejected`` without intercept (``b`` cancels): fitted on the training
    pairs and on their mirror images (so both classes exist), it starts fine-tuning from a head that
    already ranks pairs instead of a random one (LP-FT). ``f`` is what the head reads (captured by a
    hook), so this works for any pooling. Returns the probe's accuracy on the training pairs.
    """
    from sklearn.linear_model import LogisticRegression

    head = scalar_head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].float()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features = []
    try:
        for key in ("chosen_ids", "rejected_ids"):
            seqs = train_ds[key]
            order = np.argsort([len(x) for x in seqs], kind="stable")  # similar lengths: little padding
            out = torch.zeros(len(seqs), head.in_features)
            for start in tqdm(range(0, len(seqs), batch_size), desc=f"probe features ({key})", leave=False):
                idx = order[start:start + batch_size]
                batch = pad_rows([{"input_ids": seqs[i]} for i in idx], pad_token_id, "right")
                captured.clear()  # ids and mask only: what TRL's collator feeds in training
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                out[torch.as_tensor(idx)] = captured[-1].reshape(len(idx), -1).cpu()
            features.append(out.numpy())
    finally:
        hook.remove()
        model.train(was_training)
    diff = features[0] - features[1]
    x = np.concatenate([diff, -diff])
    y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
    probe = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    head.weight.copy_(torch.as_tensor(probe.coef_, dtype=head.weight.dtype).reshape(head.weight.shape))
    if head.bias is not None:
        head.bias.zero_()
    return float((diff @ probe.coef_[0] > 0).mean())


# ------------------------------------------------------------------------------------------ evaluation
def pair_accuracy(scorer: RewardScorer, rows: list[dict], desc: str) -> dict:
    """Accuracy, margins and calibration (accuracy per reward-gap bucket) of the RM on labeled pairs."""
    prompts = [r["prompt"] for r in rows]
    chosen = scorer.score(prompts, [r["chosen"] for r in rows], desc=f"{desc}: chosen")
    rejected = scorer.score(prompts, [r["rejected"] for r in rows], desc=f"{desc}: rejected")
    gap = chosen - rejected
    correct = gap > 0
    buckets = []
    edges = np.quantile(np.abs(gap), np.linspace(0, 1, 6)) if len(gap) >= 10 else np.array([0, np.inf])
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (np.abs(gap) >= lo) & (np.abs(gap) <= hi)
        if sel.any():
            buckets.append({"gap_lo": float(lo), "gap_hi": float(hi), "n": int(sel.sum()),
                            "accuracy": float(correct[sel].mean())})
    return {"n": len(rows), "accuracy": float(correct.mean()), "mean_margin": float(gap.mean()),
            "calibration": buckets, "chosen_rewards": chosen.tolist(), "rejected_rewards": rejected.tolist()}


def demo_safety_pairs(world: DemoWorld, seed: int) -> list[dict]:
    """One (refusal, unsafe answer) pair per red-team prompt, alternating toxic and compliant answers."""
    rng = random.Random(f"rm-safety/{seed}")
    rows = []
    for i, prompt in enumerate(world.prompts("redteam")):
        unsafe = ("harmful_compliance", "toxic")[i % 2]
        rows.append({"prompt": prompt.text, "chosen": world.respond(prompt, "refusal", rng),
                     "rejected": world.respond(prompt, unsafe, rng), "margin": 0.0})
    return rows


def hh_safety_pairs(cfg: Config) -> tuple[list[dict], str | None]:
    path = cfg.reward.hh_safety_path
    if path is None:
        return [], None
    path = HH_SAMPLE if path == "auto" else Path(path)
    if not path.is_file():
        if cfg.reward.hh_safety_path != "auto":
            raise UserError(f"reward.hh_safety_path={path}: no such file")
        log.info("no HH-RLHF sample at %s: the RM safety eval uses the demo world only", path)
        return [], None
    rows = []
    for lineno, row in read_jsonl_numbered(path):
        try:
            rows.append(normalise_row(row, f"{path}:{lineno}"))
        except UserError:
            continue  # a handful of real pairs are empty or identical: not usable for this check
        if len(rows) >= cfg.reward.hh_safety_pairs:
            break
    return rows, str(path)


# ------------------------------------------------------------------------------------------ report
def write_reward_report(out: Path, metrics: dict, safety: dict, loss_curve: list, eval_stats: dict) -> None:
    import matplotlib.pyplot as plt

    sections = [("Summary", kv_table({k: v for k, v in metrics.items() if k != "calibration"}))]
    if loss_curve:
        sections.append(loss_section(loss_curve, "Bradley-Terry loss"))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(eval_stats["chosen_rewards"], bins=30, alpha=0.6, label="chosen")
    ax.hist(eval_stats["rejected_rewards"], bins=30, alpha=0.6, label="rejected")
    ax.set_xlabel("reward"), ax.legend(), ax.set_title("Rewards on eval pairs")
    sections.append(("Reward histograms", figure_html(fig, "reward histograms of chosen vs rejected")))
    cal = eval_stats["calibration"]
    if cal:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([(b["gap_lo"] + b["gap_hi"]) / 2 for b in cal], [b["accuracy"] for b in cal], marker="o")
        ax.set_xlabel("|reward gap| (bucket centre)"), ax.set_ylabel("accuracy"), ax.set_ylim(0, 1.05)
        ax.set_title("Calibration: accuracy per reward-gap bucket")
        sections.append(("Calibration", figure_html(fig, "calibration plot")
                         + table_html(["gap from", "gap to", "pairs", "accuracy"],
                                      [(b["gap_lo"], b["gap_hi"], b["n"], b["accuracy"]) for b in cal])))
    sections.append(("Safety", kv_table({k: v for k, v in safety.items() if k != "gates"})))
    sections.append(gates_section(safety["gates"]))
    write_report(out / "report.html", "Reward model stage", sections)


# ------------------------------------------------------------------------------------------ stage
class HeadLRRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with its own learning rate for the parameters outside the pretrained
    backbone (the new scalar head: BERT's ``classifier``, :class:`~alignment.reward_model.MeanPoolingRewardModel`'s ``score``);
    the scheduler then scales both rates alike."""

    def __init__(self, *args: object, head_lr: float | None = None, **kwargs: object) -> None:
        self.head_lr = head_lr
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: PreTrainedModel | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None or self.head_lr is None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        body = {id(p) for p in model.base_model.parameters()}
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups.setdefault((id(p) in body, name in decay), []).append(p)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(
            [{"params": params, "lr": self.args.learning_rate if in_body else self.head_lr,
              "weight_decay": self.args.weight_decay if decays else 0.0}
             for (in_body, decays), params in groups.items()], **optimizer_kwargs)
        return self.optimizer


def trainer_args(cfg: Config, out: Path) -> RewardConfig:
    r = cfg.reward
    return RewardConfig(
        **trainer_defaults(cfg, out),
        per_device_train_batch_size=r.batch_size,
        per_device_eval_batch_size=r.eval_batch_size,
        gradient_accumulation_steps=r.grad_accum,
        learning_rate=cfg.reward_model.lr,
        num_train_epochs=reward_epochs(cfg),
        max_steps=r.max_steps,
        lr_scheduler_type="linear",
        warmup_steps=r.warmup_ratio,
        weight_decay=r.weight_decay,
        logging_steps=r.logging_steps,
        save_steps=r.save_steps,
        save_total_limit=r.save_total_limit,
        max_length=cfg.reward_model.max_length,
        center_rewards_coefficient=r.center_rewards_coefficient,
        activation_checkpointing=False,
    )


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
    started = time.time()  # training time includes the probe
    probe_accuracy = None
    if cfg.reward_model.head_init == "probe" and resume_from is None:  # a resumed run reads its head
        probe_accuracy = init_head_from_probe(model, train_ds, tokenizer.pad_token_id, cfg.reward.eval_batch_size)
        log.info("scalar head initialised from the linear probe (train pair accuracy %.3f)", probe_accuracy)
    trainer = HeadLRRewardTrainer(model=model, args=trainer_args(cfg, out), train_dataset=train_ds,
                                  processing_class=tokenizer, head_lr=cfg.reward_model.head_lr)
    trainer.train(resume_from_checkpoint=resume_from)
    train_s = time.time() - started

    rm = cfg.reward_model
    scorer = RewardScorer(trainer.model, tokenizer, rm.input_format, rm.max_length, rm.separator, cfg.reward.eval_batch_size)
    eval_stats = pair_accuracy(scorer, eval_rows, "eval pairs")
    norm_rows = random.Random(cfg.seed).sample(train_rows, min(cfg.reward.norm_pairs, len(train_rows)))
    norm = scorer.score([r["prompt"] for r in norm_rows] * 2,
                        [r["chosen"] for r in norm_rows] + [r["rejected"] for r in norm_rows], desc="normalisation")
    reward_info = {"input_format": rm.input_format, "separator": rm.separator, "max_length": rm.max_length,
                   "pooling": getattr(trainer.model.config, "reward_pooling", "default"),
                   "mean": float(norm.mean()), "std": float(norm.std() + 1e-8), "norm_source": "train pairs",
                   "norm_n": int(norm.size)}
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

    gold_acc = None
    if data_info["source"] == "demo":
        gap = np.array(eval_stats["chosen_rewards"]) - np.array(eval_stats["rejected_rewards"])
        gold = np.array([r["gold_chosen_better"] for r in eval_rows])
        gold_acc = float(((gap > 0) == gold).mean())
    loss_curve = [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e]
    metrics = {
        "stage": STAGE, "reward_model_init": path, "train_pairs": len(train_rows), "eval_pairs": len(eval_rows),
        "truncated_train_pairs": truncated_train, "truncated_eval_pairs": truncated_eval,
        "eval_accuracy": eval_stats["accuracy"], "eval_mean_margin": eval_stats["mean_margin"],
        "gold_accuracy": gold_acc, "label_ceiling": data_info.get("label_gold_agreement_eval"),
        "calibration": eval_stats["calibration"], "train_s": train_s, "probe_train_accuracy": probe_accuracy,
        "global_step": trainer.state.global_step,
        "resumed_from": resume_from, "reward_mean": reward_info["mean"], "reward_std": reward_info["std"],
        "safety_accuracy_redteam": safety["safety_accuracy_redteam"],
        "safety_accuracy_hh_harmless": safety["safety_accuracy_hh_harmless"], "data": data_info,
        "loss_curve": loss_curve,
    }
    write_json_atomic(out / "metrics.json", metrics)
    write_reward_report(out, {k: v for k, v in metrics.items() if k not in ("loss_curve", "data")}, safety,
                        loss_curve, eval_stats)
    log.info("reward done in %.0fs: eval accuracy %.3f (ceiling %s), red-team safety accuracy %.3f, HH %s",
             train_s, eval_stats["accuracy"], data_info.get("label_gold_agreement_eval"),
             demo_safety["accuracy"], safety["safety_accuracy_hh_harmless"])
    return exit_status(gates)


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
