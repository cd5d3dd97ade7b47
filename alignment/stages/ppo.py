"""``align-ppo``: optimise the policy against the reward model under a KL leash (our own PPO).

Reads the run's SFT policy and reward model (``ppo.policy_path``, ``ppo.reward_path``), trains with
:class:`alignment.ppo.trainer.PPOTrainer` on the ``train`` prompts of the ``prompts`` group (the demo
world, ``hh`` or your files), evaluates the policy on held-out prompts along the way (the reward model's
score, and the gold reward or the judge reward model ``eval.judge_path`` where there is one: a proxy
that rises while they fall is over-optimisation), and ends with the comparison against the SFT policy
and the safety gate on the run's red-team and benign prompts.
Runs on one process or many: ``accelerate launch --config_file conf/accelerate/<x>.yaml -m
alignment.stages.ppo ...``.

With ``ppo.lora.enabled=true`` the policy trains LoRA adapters and its reference is the same model with
the adapters disabled; ``model/`` is then the merged policy (plain transformers, no peft needed to
load it) and ``adapter/`` the adapters alone. The reward is the run's ``reward_terms``, the same for
``align-grpo`` and ``align-rloo``: ``reward_terms.safety_penalty=C`` subtracts ``C * P(unsafe)``
(``reward_terms.safety_backend``'s filter, ``fast`` by default) from each response's normalised score.

The training loop is :mod:`alignment.ppo.trainer`, the evaluation :mod:`alignment.ppo.evaluation` and
the report's plots :mod:`alignment.reports.plots`; this module loads the inputs, calls them, writes
the outputs and applies the gate.

Writes ``<run.dir>/ppo/``: ``model/``, ``metrics.json``, ``safety.json``, ``samples.jsonl``,
``report.html``, ``checkpoints/`` (``resume=true`` continues from the last), ``logs/`` (TensorBoard).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from omegaconf import DictConfig
from transformers import PreTrainedModel

from alignment.config import Config
from alignment.data.prompt_sets import stage_prompt_sets
from alignment.errors import UserError
from alignment.io import atomic_dir, write_json_atomic, write_jsonl_atomic
from alignment.modeling import load_policy
from alignment.ppo import engines
from alignment.ppo.evaluation import HeldOutEval, eval_prompt_sets, ppo_metrics
from alignment.ppo.trainer import NonFiniteLossError, PPOTrainer, rng_devices
from alignment.reports.html import write_report
from alignment.reports.sections import ppo_sections
from alignment.reward.scorer import RewardScorer
from alignment.safety import build_filter
from alignment.safety.eval import stage_safety
from alignment.stages.common import (
    resume_or_clear,
    save_resolved_config,
    seed_everything,
    stage_dir,
    stage_main,
)
from alignment.stages.optimizer import (
    check_policy_and_reward,
    evaluation_budget,
    load_judge,
    online_budget,
    reward_terms_record,
    sampled_kl,
)
from alignment.training import autocast_forward

log = logging.getLogger(__name__)
logging.getLogger("accelerate").setLevel(logging.WARNING)  # one INFO line per saved file otherwise
STAGE = "ppo"


def check_inputs(cfg: Config) -> tuple[Path, Path, dict]:
    return check_policy_and_reward(STAGE, cfg.ppo.policy_path, cfg.ppo.reward_path, cfg.eval.judge_path)


def sampled_prompts(trainer: PPOTrainer) -> dict[str, int]:
    """How often each training prompt (by its source, ``file:line``) was sampled by every process so far:
    the record of what PPO trained on."""
    counts: Counter[str] = Counter()
    for update in range(trainer.progress.update):
        for process in range(trainer.accelerator.num_processes):
            counts.update(p.source for p in trainer.batch_prompts(update, process))
    return dict(sorted(counts.items()))


def _last_update(checkpoints: Path) -> Path | None:
    done = sorted(checkpoints.glob("update-*"))  # only complete ones: they are written as .partial-* first
    return done[-1] if done else None


def checkpoint_to_resume(checkpoints: Path, resume: bool, is_main_process: bool = True) -> Path | None:
    """The last ``update-*`` checkpoint under ``checkpoints`` when ``resume``, else ``None``; without
    one to resume the main process removes the folder (:func:`~alignment.stages.common.resume_or_clear`)."""
    return resume_or_clear(checkpoints, resume, _last_update, is_main_process)


def stage_accelerator(cfg: Config, out: Path) -> Accelerator:
    """The stage's accelerator at ``ppo.mixed_precision`` (``auto``: accelerate's setting).

    accelerate keeps one precision per process: a stage that ran before in this process (``align-pipeline``
    runs them in one; a Trainer sets its own) would make asking for another an error, so that one is
    forgotten first. The processes' group itself is kept.
    """
    AcceleratorState._reset_state()
    precision = None if cfg.ppo.mixed_precision == "auto" else str(cfg.ppo.mixed_precision)  # None: accelerate's
    return Accelerator(**engines.launch_options(cfg.ppo.collective_timeout_s), mixed_precision=precision,
                       log_with="tensorboard", project_dir=str(out / "logs"))


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    policy_path, reward_path, reward_info = check_inputs(cfg)
    seed_everything(cfg.seed)
    accelerator = stage_accelerator(cfg, out)
    engines.load_models_whole(accelerator)
    model, tokenizer = load_policy(cfg.policy, path=str(policy_path))
    prompt_sets = stage_prompt_sets(cfg, tokenizer, model, "ppo")
    train_prompts = prompt_sets["train"]
    scorer = RewardScorer.from_pretrained(reward_path, batch_size=cfg.reward.eval_batch_size)
    terms = cfg.reward_terms
    safety_filter = build_filter(replace(cfg.safety, backend=terms.safety_backend)) if terms.safety_penalty else None

    num_updates = cfg.ppo.total_episodes // (cfg.ppo.batch_size * accelerator.num_processes)
    trainer = PPOTrainer(cfg.ppo, accelerator, model, str(policy_path), tokenizer,
                         lambda prompts, texts: scorer.score(prompts, texts), reward_info["mean"], reward_info["std"],
                         train_prompts, cfg.seed, num_updates, safety_filter, terms)
    # the reward models in the compute dtype, as every evaluation's forwards (alignment.training)
    scorer.model.to(accelerator.device, dtype=trainer.compute_dtype or torch.float32)
    judge = load_judge(cfg, accelerator.device, trainer.compute_dtype)
    if accelerator.is_main_process:  # only now: bad input above (LoRA targets, safety head) writes nothing
        save_resolved_config(raw, out)
    accelerator.init_trackers("ppo")
    checkpoints = out / "checkpoints"
    resume_from = checkpoint_to_resume(checkpoints, cfg.resume, accelerator.is_main_process)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    accelerator.wait_for_everyone()

    held_out = HeldOutEval(eval_prompt_sets(prompt_sets, cfg.ppo.eval_prompts, cfg.seed, cfg.eval.split), tokenizer,
                           scorer, cfg.ppo.generation, cfg.seed, gold=prompt_sets.gold, judge=judge)
    baseline = {}
    with trainer.full_reference() as reference:  # every process enters: with LoRA, a gather under ZeRO-3 and FSDP
        if accelerator.is_main_process:  # evals are the main process's job (see PPOTrainer.train)
            with torch.random.fork_rng(devices=rng_devices()), trainer.autocast():
                baseline = held_out.run(reference)

    def on_eval(update: int, policy: PreTrainedModel) -> dict:
        earlier = []  # the over-optimisation test's history: the SFT baseline, then every evaluation so far
        if held_out.reference:
            earlier = [held_out.tracked(baseline), *(e["scores"] for e in trainer.progress.evals if "scores" in e)]
        return held_out.at_update(policy, update, earlier)

    try:
        trainer.train(checkpoints, on_eval if accelerator.is_main_process else None)
    except NonFiniteLossError as err:
        kept = sorted(checkpoints.glob("update-*"))
        raise UserError(f"{err}; the last good checkpoint is {kept[-1] if kept else 'none'} "
                        "(lower ppo.lr or raise reward_terms.kl_coef, then resume=true)") from err
    accelerator.wait_for_everyone()
    trained = trainer.gather_policy()  # every process: under ZeRO-3 and FSDP it puts the shards together
    if not accelerator.is_main_process:
        accelerator.end_training()
        return 0

    return finish(cfg, out, trainer, trained, held_out, baseline, prompt_sets, num_updates)


def finish(cfg: Config, out: Path, trainer: PPOTrainer, trained: PreTrainedModel, held_out: HeldOutEval,
           baseline: dict, prompt_sets, num_updates: int) -> int:
    """The main process's end of the stage: export the trained policy, evaluate it against the SFT baseline
    (under the training's autocast, as the baseline was), the safety gate, ``metrics.json`` and the report."""
    tokenizer, accelerator = trainer.tokenizer, trainer.accelerator
    policy = trainer.export_policy(trained)
    with atomic_dir(out / "model") as tmp:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    if cfg.ppo.lora.enabled:
        with atomic_dir(out / "adapter") as tmp:
            trainer.save_adapter(trained, tmp)
    # the evaluation at the last update sampled these very weights with the same seed (LoRA's merged copy
    # only equals them up to rounding)
    reuse = held_out.latest is not None and held_out.latest[0] == num_updates and not cfg.ppo.lora.enabled
    # the other processes have finished: the reference beside the gathered policy needs no collective
    with trainer.autocast(), trainer.reference_beside(trained) as reference:
        final = held_out.latest[1] if reuse else held_out.run(policy)
        kl_sft = sampled_kl(policy, reference, tokenizer, final["eval"].samples + final["redteam"].samples,
                            cfg.ppo.generation.temperature)
    with autocast_forward(policy, trainer.compute_dtype):  # the safety filter's own models run as they are
        safety, status = stage_safety(cfg, STAGE, policy, tokenizer, cfg.ppo.generation, out, prompt_sets,
                                      baseline=Path(cfg.ppo.safety_baseline) if cfg.ppo.safety_baseline else None)
    comparison = held_out.compare(baseline, final)
    write_jsonl_atomic(out / "samples.jsonl", comparison.rows)
    drawn = sampled_prompts(trainer)
    metrics = {"stage": STAGE, **ppo_metrics(cfg.ppo, trainer, held_out, baseline, final, comparison, safety, cfg.seed),
               **spent(cfg, trainer, held_out, prompt_sets, drawn), "kl_sft": kl_sft, "judge_path": cfg.eval.judge_path,
               "prompts": prompt_sets.summary()}
    history, evals = trainer.progress.history, trainer.progress.evals
    write_json_atomic(out / "metrics.json", {**metrics, "history": history, "evals": evals,
                                             "baseline": {s: b.figures for s, b in baseline.items()},
                                             "final": {s: f.figures for s, f in final.items()},
                                             "prompts_sampled": drawn})
    write_report(out / "report.html", "PPO stage", ppo_sections(metrics, history, evals, comparison.rows, safety))
    accelerator.end_training()
    log.info("ppo done: reward-model score %.3f -> %.3f, red-team unsafe (filter) %s -> %.2f, over-refusal %s -> %s, "
             "KL %.2f%s", metrics["rm_score_sft"], metrics["rm_score_ppo"], _fmt(metrics["unsafe_rate_filter_sft"]),
             metrics["unsafe_rate_filter_ppo"], _fmt(metrics["over_refusal_sft"]), _fmt(metrics["over_refusal_ppo"]),
             metrics["final_kl"], "".join(f"; {name} win rate {metrics[f'{name}_win_rate']:.2f}"
                                          for name in ("gold", "judge") if metrics[f"{name}_win_rate"] is not None))
    return status


def spent(cfg: Config, trainer: PPOTrainer, held_out: HeldOutEval, prompt_sets, drawn: dict[str, int]) -> dict:
    """The reward PPO maximised, term by term, and its budget as counted (the comparison's fairness check);
    ``drawn``: :func:`sampled_prompts`."""
    progress, terms, kl = trainer.progress, trainer.terms, cfg.ppo.kl
    control = f"adaptive towards {kl.target:g} nats (horizon {kl.horizon})" if kl.adaptive else "fixed"
    backend = getattr(trainer.safety_filter, "name", None)
    return {"optimizer_steps": progress.optimizer_steps, "policy_samples": progress.policy_samples, "lr": cfg.ppo.lr,
            "kl_form": f"{kl.estimator} per token, in the reward",
            "reward_terms": reward_terms_record(cfg.ppo.reward_path, trainer.reward_mean, trainer.reward_std, terms.clip,
                                                terms.missing_eos_penalty, terms.safety_penalty, backend, terms.kl_coef,
                                                control),
            "budget": {**online_budget(prompt_sets, progress.policy_samples, progress.policy_tokens,
                                       progress.optimizer_steps, sum(drawn.values()), len(drawn)),
                       **evaluation_budget(cfg, held_out, cfg.ppo.generation)}}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
