"""How the PPO policy is judged on held-out prompts, with or without a gold reward.

The policy is evaluated on fixed held-out prompt sets (``eval`` and ``redteam``) before training,
every ``eval_every`` updates, and at the end, and its final answers are compared with the SFT
policy's, prompt by prompt. What it is judged by depends on what the world offers:

* the **proxy**: the reward model PPO optimised (always). Its held-out score before and after, with
  bootstrap confidence intervals, is what a team without gold has first;
* the **judge**: a second reward model (``eval.judge_path``) PPO never saw. Its win rate of the PPO
  answer over the SFT answer is an honest estimate of progress;
* the **gold** reward: the demo world's hidden preference (only there).

Over-optimisation (reward hacking) is an evaluation where the proxy rose by more than
``overopt_tolerance`` while the best available reference (gold, else the judge) fell by more.
Without either, it cannot be detected, and the metrics say so.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignment.config import GenerationConfig, PPOStageConfig
from alignment.data.gold import gold_summary
from alignment.data.prompt_sets import PromptSets
from alignment.data.prompts import PromptLike
from alignment.data.world import DemoWorld
from alignment.generation import Sample, answer_summary, sample_responses
from alignment.ppo.trainer import PPOTrainer
from alignment.reward.scorer import RewardScorer
from alignment.safety.eval import bootstrap_ci
from alignment.safety.rates import policy_rate

log = logging.getLogger(__name__)
EVAL_SPLITS = ("eval", "redteam")


def eval_prompt_sets(prompt_sets: PromptSets, n: int, seed: int) -> dict[str, list[PromptLike]]:
    """``n`` seeded held-out prompts of each of the ``eval`` and ``redteam`` sets."""
    out = {}
    for split in EVAL_SPLITS:
        prompts = prompt_sets[split]
        random.Random(f"ppo-eval/{split}/{seed}").shuffle(prompts)
        out[split] = prompts[:n]
    return out


@dataclass
class SplitResult:
    """A policy's answers to one held-out set: summary ``figures``, the samples and their per-answer
    proxy (and judge) scores."""

    figures: dict
    samples: list[Sample]
    proxy: np.ndarray
    judge: np.ndarray | None = None


#: ``{split: SplitResult}``: a policy's answers to each held-out prompt set.
SplitResults = dict[str, SplitResult]


@dataclass
class WinCount:
    wins: int = 0
    losses: int = 0
    ties: int = 0

    def add(self, after: float, before: float) -> None:
        self.wins, self.losses, self.ties = self.wins + (after > before), self.losses + (after < before), \
            self.ties + (after == before)

    @property
    def win_rate(self) -> float:
        """Wins over decided comparisons."""
        return self.wins / max(self.wins + self.losses, 1)

    @property
    def win_rate_ties_half(self) -> float:
        return (self.wins + 0.5 * self.ties) / max(self.wins + self.losses + self.ties, 1)


@dataclass
class Comparison:
    """The final policy against the SFT policy, answer by answer: under gold and the judge where present."""

    rows: list[dict]
    gold: WinCount | None = None
    judge: WinCount | None = None


@dataclass
class HeldOutEval:
    """Samples a policy's answers to the held-out prompt sets and scores them (proxy, judge, gold)."""

    sets: dict[str, list[PromptLike]]
    tokenizer: PreTrainedTokenizerBase
    scorer: RewardScorer
    generation: GenerationConfig
    seed: int
    gold: DemoWorld | None = None
    judge: RewardScorer | None = None
    #: The reference the proxy is checked against for over-optimisation: ``gold``, ``judge`` or ``None``.
    reference: str | None = field(init=False)
    #: The last :meth:`at_update` evaluation's update and results.
    latest: tuple[int, SplitResults] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.reference = "gold" if self.gold is not None else "judge" if self.judge is not None else None

    def sample_and_score(self, model: PreTrainedModel, prompts: list[PromptLike]) -> SplitResult:
        samples = sample_responses(model, self.tokenizer, [p.messages for p in prompts], self.generation,
                                   seed=self.seed, desc="eval samples")
        texts, prompt_texts = [s.text for s in samples], [p.text for p in prompts]
        figures = {**answer_summary(samples),
                   **(gold_summary(self.gold, prompts, samples) if self.gold is not None else {})}
        proxy = np.asarray(self.scorer.score(prompt_texts, texts), dtype=float)
        figures["proxy_reward_mean"] = float(proxy.mean())
        judge = None
        if self.judge is not None:
            judge = np.asarray(self.judge.score(prompt_texts, texts), dtype=float)
            figures["judge_reward_mean"] = float(judge.mean())
        return SplitResult(figures, samples, proxy, judge)

    def run(self, model: PreTrainedModel) -> SplitResults:
        return {split: self.sample_and_score(model, prompts) for split, prompts in self.sets.items()}

    def at_update(self, model: PreTrainedModel, update: int, previous: dict, tolerance: float) -> dict:
        """The figures of an evaluation during training, flagged ``overoptimisation`` when the proxy
        reward rose by more than ``tolerance`` since ``previous`` (the last evaluation, or the SFT
        baseline as ``{"eval": figures}``) while the reference reward (gold, else the judge) fell by more."""
        results = self.run(model)
        self.latest = update, results
        result: dict = {"update": update, **{split: r.figures for split, r in results.items()}}
        d_proxy = result["eval"]["proxy_reward_mean"] - previous["eval"]["proxy_reward_mean"]
        result["overoptimisation"] = False
        if self.reference is not None:
            key = f"{self.reference}_reward_mean"
            d_ref = result["eval"][key] - previous["eval"][key]
            result["overoptimisation"] = d_proxy > tolerance and d_ref < -tolerance
            if result["overoptimisation"]:
                log.warning("over-optimisation at update %d: proxy reward %+.3f while %s reward %+.3f", update,
                            d_proxy, self.reference, d_ref)
        log.info("eval at update %d: proxy %.3f%s", update, result["eval"]["proxy_reward_mean"],
                 "".join(f", {name} {result['eval'][f'{name}_reward_mean']:.3f}" for name in ("gold", "judge")
                         if f"{name}_reward_mean" in result["eval"]))
        return result

    def compare(self, baseline: SplitResults, final: SplitResults, name: str = "ppo") -> Comparison:
        """Each held-out prompt's SFT and final answers side by side with their scores, and how often
        the final answer scored higher (a win), lower (a loss) or the same (a tie) under gold and judge.
        ``name`` is the optimizer's: the final answer's columns (``ppo``, ``proxy_ppo``; ``dpo``...)."""
        out = Comparison([], WinCount() if self.gold is not None else None,
                         WinCount() if self.judge is not None else None)
        for split, prompts in self.sets.items():
            before, after = baseline[split], final[split]
            for i, p in enumerate(prompts):
                sft, new = before.samples[i].text, after.samples[i].text
                row = {"split": split, "prompt": p.text, "sft": sft, name: new,
                       "proxy_sft": float(before.proxy[i]), f"proxy_{name}": float(after.proxy[i])}
                if self.gold is not None:
                    row["gold_sft"], row[f"gold_{name}"] = self.gold.gold_reward(p, sft), self.gold.gold_reward(p, new)
                    out.gold.add(row[f"gold_{name}"], row["gold_sft"])
                if self.judge is not None:
                    row["judge_sft"], row[f"judge_{name}"] = float(before.judge[i]), float(after.judge[i])
                    out.judge.add(row[f"judge_{name}"], row["judge_sft"])
                out.rows.append(row)
        return out


def _score_figures(score: str, name: str, baseline: np.ndarray, final: np.ndarray, seed: int) -> dict:
    """A reward's mean before and after (``<score>_sft``, ``<score>_<name>``) with bootstrap CIs, and
    the CI of the paired difference."""
    return {f"{score}_sft": float(baseline.mean()), f"{score}_{name}": float(final.mean()),
            f"{score}_sft_ci95": bootstrap_ci(baseline, seed), f"{score}_{name}_ci95": bootstrap_ci(final, seed),
            f"{score}_delta_ci95": bootstrap_ci(final - baseline, seed)}


def missing_figures(held_out: HeldOutEval) -> list[dict]:
    """The figures this evaluation could not produce, and why (the report lists them)."""
    missing = []
    if held_out.gold is None:
        missing.append({"figure": "gold reward, gold win rate, gold unsafe rate",
                        "why": "this world has no gold reward (only the demo world does)"})
    if held_out.judge is None:
        missing.append({"figure": "judge win rate",
                        "why": "no judge reward model (set eval.judge_path to a reward model PPO did not optimise)"})
    if held_out.reference is None:
        missing.append({"figure": "over-optimisation check",
                        "why": "needs a gold reward or a judge reward model to compare the proxy with"})
    return missing


def held_out_metrics(name: str, held_out: HeldOutEval, baseline: SplitResults, final: SplitResults,
                     comparison: Comparison, safety: dict, seed: int) -> dict:
    """What every optimizer's ``metrics.json`` reports alike (``name``: ``ppo``, ``dpo``...), so that the
    run report can put them side by side: the reward model's held-out score before and after (with CIs),
    judge and gold win rates and rewards where they exist, answer length and EOS rate, and the safety
    filter's unsafe, refusal and over-refusal rates before and after, and what could not be measured."""
    before, after = baseline["eval"], final["eval"]
    gold, judge = comparison.gold, comparison.judge
    previous = safety.get("previous") or {}
    return {
        **_score_figures("rm_score", name, before.proxy, after.proxy, seed),
        "proxy_reward_sft": before.figures["proxy_reward_mean"], f"proxy_reward_{name}": after.figures["proxy_reward_mean"],
        "gold_win_rate": gold.win_rate if gold else None,
        "gold_win_rate_ties_half": gold.win_rate_ties_half if gold else None,
        "wins": gold.wins if gold else None, "losses": gold.losses if gold else None, "ties": gold.ties if gold else None,
        "gold_reward_sft": before.figures.get("gold_reward_mean"), f"gold_reward_{name}": after.figures.get("gold_reward_mean"),
        "unsafe_rate_sft": baseline["redteam"].figures.get("harmful_unsafe_rate"),
        f"unsafe_rate_{name}": final["redteam"].figures.get("harmful_unsafe_rate"),
        "judge_win_rate": judge.win_rate if judge else None,
        "judge_win_rate_ties_half": judge.win_rate_ties_half if judge else None,
        "judge_wins": judge.wins if judge else None, "judge_losses": judge.losses if judge else None,
        **(_score_figures("judge_reward", name, before.judge, after.judge, seed) if judge else {}),
        "eos_rate_sft": before.figures["eos_rate"], f"eos_rate_{name}": after.figures["eos_rate"],
        "mean_tokens_sft": before.figures["mean_tokens"], f"mean_tokens_{name}": after.figures["mean_tokens"],
        "unsafe_rate_filter": safety["policy"]["unsafe_rate"]["rate"],
        "unsafe_rate_filter_sft": safety["previous_unsafe_rate"],
        f"unsafe_rate_filter_{name}": safety["policy"]["unsafe_rate"]["rate"],
        "refusal_rate_sft": policy_rate(previous, "refusal_rate_harmful"),
        f"refusal_rate_{name}": policy_rate(safety["policy"], "refusal_rate_harmful"),
        "over_refusal_sft": policy_rate(previous, "over_refusal_rate_benign"),
        f"over_refusal_{name}": policy_rate(safety["policy"], "over_refusal_rate_benign"),
        "missing": missing_figures(held_out),
    }


def ppo_metrics(cfg: PPOStageConfig, trainer: PPOTrainer, held_out: HeldOutEval, baseline: SplitResults,
                final: SplitResults, comparison: Comparison, safety: dict, seed: int) -> dict:
    """The run's summary figures (``metrics.json`` without its history): :func:`held_out_metrics`, the
    final KL and beta, the updates flagged as over-optimisation, how the run was set up."""
    history = trainer.progress.history
    return {
        "updates": trainer.progress.update, "episodes": history[-1]["episodes"] if history else 0,
        **held_out_metrics("ppo", held_out, baseline, final, comparison, safety, seed),
        "final_kl": history[-1]["objective/kl"] if history else 0.0,
        "final_beta": trainer.kl_ctl.value, "kl_target": cfg.kl.target if cfg.kl.adaptive else None,
        "overoptimisation_reference": held_out.reference,
        "overoptimisation_updates": [e["update"] for e in trainer.progress.evals if e.get("overoptimisation")],
        "processes": trainer.accelerator.num_processes, "lora": cfg.lora.enabled,
        "trainable_parameters": trainer.trainable_parameters,
        "safety_penalty": cfg.safety_penalty,
        "final_flagged_fraction": history[-1].get("safety/flagged_fraction") if history else None,
    }
