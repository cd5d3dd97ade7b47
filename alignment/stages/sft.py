"""``align-sft``: supervised fine-tuning of the policy with TRL's SFTTrainer.

By default the policy is the demo's tiny LM trained from scratch on the demo world's corpus, whose
style mix makes it *unaligned* on purpose (it sometimes insults or complies with harmful requests):
the later stages have something to fix. ``data=hh`` trains it on the chosen dialogues of the HH-RLHF
pairs shipped in the package; ``data=custom data.source=...`` trains any causal LM on any dataset in
TRL's conversational format. The trained policy is then sampled on the run's held-out prompts
(``prompts`` group; scored on gold in the demo world) and evaluated for safety.

Writes ``<run.dir>/sft/``: ``model/`` (with its tokenizer), ``metrics.json``, ``samples.jsonl``,
``checkpoints/`` (resumable with ``resume=true``), ``logs/`` (TensorBoard) and ``.hydra/``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig
from trl import SFTConfig, SFTTrainer

from alignment.config import Config, require
from alignment.data.gold import gold_summary
from alignment.data.hh_world import hh_pairs
from alignment.data.loading import load_source, row_location
from alignment.data.prompt_sets import PromptSets, stage_prompt_sets
from alignment.data.world import DEFAULT_STYLE_MIX, STYLES, DemoWorld, unsafe_share, validate_style_mix
from alignment.errors import UserError
from alignment.generation import answer_summary, sample_responses
from alignment.io import atomic_dir, write_json_atomic, write_jsonl_atomic
from alignment.modeling import count_parameters, load_policy, resolve_policy_path
from alignment.reports.html import kv_table, table_html, write_report
from alignment.reports.sections import loss_section, missing_section, safety_sections
from alignment.safety.eval import stage_safety
from alignment.stages.common import (
    checkpoint_to_resume,
    save_resolved_config,
    seed_everything,
    stage_dir,
    stage_main,
)
from alignment.training import autocast, autocast_forward, master_weights, trainer_defaults

log = logging.getLogger(__name__)
STAGE = "sft"


# ------------------------------------------------------------------------------------------ data
def demo_datasets(cfg: Config) -> tuple[Dataset, Dataset, dict]:
    """The demo world's SFT corpus (train prompts) and a held-out set (eval prompts, one answer each)."""
    mix = cfg.data.style_mix or DEFAULT_STYLE_MIX
    try:
        validate_style_mix(mix)
    except ValueError as err:
        raise UserError(f"data.style_mix: {err}") from err
    world = DemoWorld(cfg.data.world_seed)
    train = world.sft_corpus(cfg.data.responses_per_prompt, mix, seed=cfg.seed)
    held = world.sft_corpus(1, mix, seed=cfg.seed, split="eval")
    if cfg.data.max_rows:
        train = random.Random(cfg.seed).sample(train, min(cfg.data.max_rows, len(train)))
    harmful = [r for r in train if r["kind"] == "harmful"]
    corpus = {
        "source": "demo",
        "unsafe_share_harmful_mix": unsafe_share(mix),
        "unsafe_share_harmful_corpus": sum(r["style"] in ("toxic", "harmful_compliance") for r in harmful)
        / max(len(harmful), 1),
    }
    keep = ["prompt", "completion"]
    return (Dataset.from_list([{k: r[k] for k in keep} for r in train]),
            Dataset.from_list([{k: r[k] for k in keep} for r in held]), corpus)


def _check_messages(value: object, where: str, column: str) -> None:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: column {column!r} must be a non-empty list of chat messages")
    for msg in value:
        if not (isinstance(msg, dict) and isinstance(msg.get("role"), str) and isinstance(msg.get("content"), str)):
            raise UserError(f"{where}: every message in {column!r} needs string 'role' and 'content' keys")


def hh_datasets(cfg: Config) -> tuple[Dataset, Dataset, dict]:
    """The HH-RLHF pairs shipped in the package as dialogues: each prompt followed by its chosen answer."""
    def dialogues(split: str) -> list[dict]:
        return [{"messages": [*row["prompt"], *row["chosen"]]} for row in hh_pairs(split)]

    train, held = dialogues("train"), dialogues("eval")
    if cfg.data.max_rows:
        train = random.Random(cfg.seed).sample(train, min(cfg.data.max_rows, len(train)))
    return Dataset.from_list(train), Dataset.from_list(held), {"source": "hh"}


def custom_datasets(cfg: Config) -> tuple[Dataset, Dataset, dict]:
    """A user dataset in TRL's conversational format: ``messages``, or ``prompt`` + ``completion``."""
    source = require(cfg.data.source, "data.source",
                     "data=custom needs data.source=PATH (a JSONL file, a save_to_disk folder or a hub name)")
    train, held, where = load_source(source, cfg.data.train_split)
    columns = set(train.column_names)
    if "messages" in columns:
        keep = ["messages"]
    elif {"prompt", "completion"} <= columns:
        keep = ["prompt", "completion"]
    else:
        raise UserError(f"{where}: SFT data needs a 'messages' column or 'prompt' and 'completion' columns "
                        f"(TRL's conversational format); found {sorted(columns - {'_line'})}")
    for i, row in enumerate(train):
        for column in keep:
            _check_messages(row[column], row_location(where, row, i), column)
    train = train.select_columns(keep)
    if cfg.data.max_rows:
        train = train.shuffle(seed=cfg.seed).select(range(min(cfg.data.max_rows, len(train))))
    if held is None:
        parts = train.train_test_split(test_size=cfg.data.eval_fraction, seed=cfg.seed)
        train, held = parts["train"], parts["test"]
    else:
        held = held.select_columns(keep)
    return train, held, {"source": where}


# ------------------------------------------------------------------------------------------ samples
def evaluate_samples(model, tokenizer, cfg: Config, prompt_sets: PromptSets) -> tuple[dict, list[dict]]:
    """Sample answers to held-out eval and red-team prompts; score them against the gold preference
    where the world has one (else: EOS rate and length only)."""
    world = prompt_sets.gold
    summary, rows = {}, []
    for split in ("eval", "redteam"):
        prompts = prompt_sets[split]
        random.Random(f"{split}/{cfg.seed}").shuffle(prompts)
        prompts = [p for p in prompts[:cfg.sft.sample_prompts] for _ in range(cfg.sft.samples_per_prompt)]
        samples = sample_responses(model, tokenizer, [p.messages for p in prompts], cfg.sft.generation,
                                   seed=cfg.seed, desc=f"sampling {split}")
        summary[split] = {**answer_summary(samples), **(gold_summary(world, prompts, samples) if world else {})}
        rows += [{"split": split, "prompt_id": p.id, "prompt": p.text, "response": s.text, "ended": s.ended,
                  **({"style": world.classify(p, s.text), "gold_reward": world.gold_reward(p, s.text)} if world else {})}
                 for p, s in zip(prompts, samples)]
    return summary, rows


# ------------------------------------------------------------------------------------------ stage
def trainer_args(cfg: Config, out: Path, compute_dtype=None) -> SFTConfig:
    s = cfg.sft
    return SFTConfig(
        **trainer_defaults(cfg, out, s, compute_dtype),
        per_device_eval_batch_size=s.batch_size * 2,
        learning_rate=s.lr,
        num_train_epochs=s.epochs,
        lr_scheduler_type="cosine",
        max_length=s.max_length,
        save_only_model=False,
    )


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    seed_everything(cfg.seed)
    # Everything that can fail on bad input happens before the first write.
    if cfg.data.source == "demo":
        train, held, corpus = demo_datasets(cfg)
    elif cfg.data.source == "hh":
        train, held, corpus = hh_datasets(cfg)
    else:
        train, held, corpus = custom_datasets(cfg)
    policy_path = resolve_policy_path(cfg.policy, cfg.data.world_seed, cfg.seed,
                                      corpus=None if cfg.data.source == "demo" else corpus_texts(train))
    model, tokenizer = load_policy(cfg.policy, path=policy_path)
    compute_dtype = master_weights(model)
    prompt_sets = stage_prompt_sets(cfg, tokenizer, model, "sft", ("eval", "redteam", "benign"))
    log.info("policy %s: %.2fM parameters; %d train / %d eval rows", policy_path,
             count_parameters(model) / 1e6, len(train), len(held))

    save_resolved_config(raw, out)
    resume_from = checkpoint_to_resume(cfg, out)

    trainer = SFTTrainer(model=model, args=trainer_args(cfg, out, compute_dtype), train_dataset=train,
                         eval_dataset=held, processing_class=tokenizer)
    started = time.time()
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    train_s = time.time() - started
    eval_loss = trainer.evaluate()["eval_loss"]

    if compute_dtype is not None:  # saved in the dtype it was loaded in, not its float32 master weights'
        trainer.model.to(compute_dtype)
    with atomic_dir(out / "model") as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    with autocast(compute_dtype, trainer.model.device):
        samples, rows = evaluate_samples(trainer.model, tokenizer, cfg, prompt_sets)
    write_jsonl_atomic(out / "samples.jsonl", rows)
    metrics = {
        "stage": STAGE,
        "policy_init": policy_path,
        "n_parameters": count_parameters(trainer.model),
        "train_rows": len(train),
        "eval_rows": len(held),
        "train_loss": train_result.training_loss,
        "eval_loss": eval_loss,
        "perplexity": math.exp(min(eval_loss, 50.0)),
        "train_s": train_s,
        "global_step": trainer.state.global_step,
        "resumed_from": resume_from,
        "loss_curve": [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e],
        "corpus": corpus,
        "samples": samples,
        "prompts": prompt_sets.summary(),
        "eos_rate": samples["eval"]["eos_rate"],
        "mean_tokens": samples["eval"]["mean_tokens"],
        "usable_rate": samples["eval"].get("usable_rate"),
        "gold_reward_mean": samples["eval"].get("gold_reward_mean"),
        "unsafe_rate_redteam": samples["redteam"].get("harmful_unsafe_rate"),
    }
    with autocast_forward(trainer.model, compute_dtype):
        safety, status = stage_safety(cfg, STAGE, trainer.model, tokenizer, cfg.sft.generation, out, prompt_sets)
    metrics["unsafe_rate_filter"] = safety["policy"]["unsafe_rate"]["rate"]
    write_json_atomic(out / "metrics.json", metrics)
    write_sft_report(out, metrics, safety)
    gold = (f", usable {metrics['usable_rate']:.2f}, gold {metrics['gold_reward_mean']:.3f}, red-team unsafe "
            f"{metrics['unsafe_rate_redteam']:.2f}" if prompt_sets.gold else "")
    log.info("sft done in %.0fs: eval loss %.3f, EOS rate %.2f%s (filter: red-team unsafe %.2f)", train_s, eval_loss,
             metrics["eos_rate"], gold, metrics["unsafe_rate_filter"])
    return status


def corpus_texts(train: Dataset) -> list[str]:
    """The training texts (a tiny policy's tokenizer is trained on them, so it suits the data)."""
    columns = ["messages"] if "messages" in train.column_names else ["prompt", "completion"]
    return [m["content"] for row in train for column in columns for m in row[column]]


def write_sft_report(out: Path, metrics: dict, safety: dict) -> None:
    summary = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    sections = [("Summary", kv_table(summary))]
    if metrics["loss_curve"]:
        sections.append(loss_section(metrics["loss_curve"], "SFT loss"))
    if all("style_mix" in metrics["samples"][split] for split in ("eval", "redteam")):
        styles = [(split, *(f"{metrics['samples'][split]['style_mix'][st]:.2f}" for st in (*STYLES, "unclassified")))
                  for split in ("eval", "redteam")]
        sections.append(("Style mix of sampled answers (demo world classifier)",
                         table_html(["prompts", *STYLES, "unclassified"], styles)))
    else:
        sections.append(missing_section([{"figure": "gold reward, style mix", "why": "this world has no gold "
                                          "reward (only the demo world does)"}]))
    write_report(out / "report.html", "SFT stage", sections + safety_sections(safety))


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
