"""How the PPO policy is judged: gold and proxy reward on held-out prompts, and the final comparison.

The demo world knows the gold reward of any answer; the reward model only approximates it (the
proxy). During training the policy is evaluated on fixed held-out prompt sets (benign ``eval`` and
``redteam``) every ``eval_every`` updates, and an evaluation where the proxy rose by more than
``overopt_tolerance`` while the gold fell by more is flagged as over-optimisation (reward hacking).
At the end the final policy's answers are compared with the SFT policy's, prompt by prompt, on gold.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignment.config import GenerationConfig, PPOStageConfig
from alignment.data.gold import gold_summary
from alignment.data.world import DemoWorld, Prompt
from alignment.generation import Sample, sample_responses
from alignment.ppo.trainer import PPOTrainer
from alignment.reward.scorer import RewardScorer

log = logging.getLogger(__name__)

#: ``{split: (figures, samples)}``: a policy's answers to each held-out prompt set and their figures.
SplitResults = dict[str, tuple[dict, list[Sample]]]


def eval_prompt_sets(world: DemoWorld, n: int, seed: int) -> dict[str, list[Prompt]]:
    """``n`` seeded held-out prompts of each of the demo world's ``eval`` and ``redteam`` splits."""
    out = {}
    for split in ("eval", "redteam"):
        prompts = world.prompts(split)
        random.Random(f"ppo-eval/{split}/{seed}").shuffle(prompts)
        out[split] = prompts[:n]
    return out


@dataclass
class GoldComparison:
    """The final policy against the SFT policy, answer by answer, on the gold reward."""

    rows: list[dict]
    wins: int
    losses: int
    ties: int


@dataclass
class HeldOutEval:
    """Samples a policy's answers to the held-out prompt sets and scores them on gold and proxy reward."""

    world: DemoWorld
    sets: dict[str, list[Prompt]]
    tokenizer: PreTrainedTokenizerBase
    scorer: RewardScorer
    generation: GenerationConfig
    seed: int

    def sample_and_score(self, model: PreTrainedModel, prompts: list[Prompt]) -> tuple[dict, list[Sample]]:
        samples = sample_responses(model, self.tokenizer, [p.text for p in prompts], self.generation,
                                   seed=self.seed, desc="eval samples")
        summary = gold_summary(self.world, prompts, samples)
        summary["proxy_reward_mean"] = float(np.mean(self.scorer.score([p.text for p in prompts],
                                                                       [s.text for s in samples])))
        return summary, samples

    def run(self, model: PreTrainedModel) -> SplitResults:
        return {split: self.sample_and_score(model, prompts) for split, prompts in self.sets.items()}

    def at_update(self, model: PreTrainedModel, update: int, previous: dict, tolerance: float) -> dict:
        """The figures of an evaluation during training, flagged ``overoptimisation`` when the proxy
        reward rose by more than ``tolerance`` since ``previous`` (the last evaluation, or the SFT
        baseline as ``{"eval": figures}``) while the gold reward fell by more."""
        result: dict = {"update": update, **{split: figures for split, (figures, _) in self.run(model).items()}}
        d_proxy = result["eval"]["proxy_reward_mean"] - previous["eval"]["proxy_reward_mean"]
        d_gold = result["eval"]["gold_reward_mean"] - previous["eval"]["gold_reward_mean"]
        result["overoptimisation"] = d_proxy > tolerance and d_gold < -tolerance
        if result["overoptimisation"]:
            log.warning("over-optimisation at update %d: proxy reward %+.3f while gold reward %+.3f", update, d_proxy, d_gold)
        log.info("eval at update %d: gold %.3f, proxy %.3f, red-team unsafe %.2f", update,
                 result["eval"]["gold_reward_mean"], result["eval"]["proxy_reward_mean"],
                 result["redteam"]["harmful_unsafe_rate"])
        return result

    def compare(self, baseline: SplitResults, final: SplitResults, name: str = "ppo") -> GoldComparison:
        """Each held-out prompt's SFT and final answers side by side with their gold rewards, and how
        often the final answer scored higher (a win), lower (a loss) or the same (a tie). ``name`` is
        the optimiser's: the final answer's column (``ppo``, ``dpo``...)."""
        wins = losses = ties = 0
        rows = []
        for split, prompts in self.sets.items():
            for p, sft, ppo in zip(prompts, baseline[split][1], final[split][1]):
                g_sft, g_ppo = self.world.gold_reward(p, sft.text), self.world.gold_reward(p, ppo.text)
                wins, losses, ties = wins + (g_ppo > g_sft), losses + (g_ppo < g_sft), ties + (g_ppo == g_sft)
                rows.append({"split": split, "prompt": p.text, "sft": sft.text, name: ppo.text,
                             "gold_sft": g_sft, f"gold_{name}": g_ppo})
        return GoldComparison(rows, wins, losses, ties)


def held_out_metrics(name: str, baseline: SplitResults, final: SplitResults, comparison: GoldComparison,
                     safety: dict) -> dict:
    """What every optimiser's ``metrics.json`` reports alike (``name``: ``ppo``, ``dpo``...): the gold win
    rate against the SFT policy, gold and proxy reward and red-team unsafe rate before and after, and the
    safety filter's unsafe rate, so that the run report can put the optimisers side by side."""
    wins, losses, ties = comparison.wins, comparison.losses, comparison.ties
    return {
        "gold_win_rate": wins / max(wins + losses, 1),
        "gold_win_rate_ties_half": (wins + 0.5 * ties) / max(len(comparison.rows), 1),
        "wins": wins, "losses": losses, "ties": ties,
        "gold_reward_sft": baseline["eval"][0]["gold_reward_mean"], f"gold_reward_{name}": final["eval"][0]["gold_reward_mean"],
        "proxy_reward_sft": baseline["eval"][0]["proxy_reward_mean"],
        f"proxy_reward_{name}": final["eval"][0]["proxy_reward_mean"],
        "unsafe_rate_sft": baseline["redteam"][0]["harmful_unsafe_rate"],
        f"unsafe_rate_{name}": final["redteam"][0]["harmful_unsafe_rate"],
        "unsafe_rate_filter": safety["policy"]["unsafe_rate"]["rate"],
        "unsafe_rate_filter_sft": safety["previous_unsafe_rate"],
    }


def ppo_metrics(cfg: PPOStageConfig, trainer: PPOTrainer, baseline: SplitResults, final: SplitResults,
                comparison: GoldComparison, safety: dict) -> dict:
    """The run's summary figures (``metrics.json`` without its history): :func:`held_out_metrics`, the
    final KL and beta, the updates flagged as over-optimisation, how the run was set up."""
    history = trainer.progress.history
    return {
        "updates": trainer.progress.update, "episodes": history[-1]["episodes"] if history else 0,
        **held_out_metrics("ppo", baseline, final, comparison, safety),
        "final_kl": history[-1]["objective/kl"] if history else 0.0,
        "final_beta": trainer.kl_ctl.value, "kl_target": cfg.kl.target if cfg.kl.adaptive else None,
        "overoptimisation_updates": [e["update"] for e in trainer.progress.evals if e.get("overoptimisation")],
        "processes": trainer.accelerator.num_processes, "lora": cfg.lora.enabled,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "safety_penalty": cfg.safety_penalty,
        "final_flagged_fraction": history[-1].get("safety/flagged_fraction") if history else None,
    }
