"""How a policy is judged on held-out prompts, with or without a gold reward (PPO's and every optimizer's).

The policy is evaluated on fixed held-out prompt sets (``eval`` and ``redteam``) before training,
every ``eval_every`` updates (PPO), and at the end, and its final answers are compared with the SFT
policy's, prompt by prompt. What it is judged by depends on what the world offers:

* the **proxy**: the reward model being optimised (always): its held-out score before and after, and
  its win rate of the final answer over the SFT answer, is what a team without gold has first;
* the **judge**: a second reward model (``eval.judge_path``) the optimizer never saw: its win rate is an
  honest estimate of progress;
* the **gold** reward: the demo world's hidden preference (only there).

Every rate and win rate carries a 95% interval by prompt (:mod:`alignment.stats`), and each score's
gain and win rate also comes length-controlled (the oldest reward hack is a length change).

Over-optimisation (reward hacking) is a statistical test (:func:`alignment.stats.overoptimisation_test`):
at each evaluation, against the reference's (gold, else the judge) best evaluation so far, the proxy's
rise and the reference's fall, each in its own standard deviations, must both exceed their paired
intervals on the held-out prompts. Without a gold reward or a judge it cannot be detected, and the
metrics say so.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignment.config import GenerationConfig, HeldOutSplit, PPOStageConfig
from alignment.data.gold import gold_summary
from alignment.data.prompt_sets import PromptSets
from alignment.data.prompts import PromptLike
from alignment.data.world import GOLD_REWARD, UNSAFE_STYLES, DemoWorld
from alignment.errors import UserError
from alignment.generation import Sample, answer_summary, sample_responses
from alignment.ppo.trainer import PPOTrainer
from alignment.reward.scorer import RewardScorer
from alignment.safety.rates import policy_rate
from alignment.stats import length_controlled, mean_ci, overoptimisation_test, win_rate_ci

log = logging.getLogger(__name__)
EVAL_SPLITS = ("eval", "redteam")
#: The scores an answer can get, in the order the report lists them: the reward model being optimised
#: (``proxy``, reported as ``rm_*``), the judge reward model, the demo world's gold reward.
SCORES = ("proxy", "judge", "gold")


def eval_prompt_sets(prompt_sets: PromptSets, n: int, seed: int,
                     split: HeldOutSplit | str = HeldOutSplit.test) -> dict[str, list[PromptLike]]:
    """``n`` seeded held-out prompts of each of the ``eval`` and ``redteam`` sets: the first ``n`` of the
    seeded order for ``test``, the next ``n`` (as many as are left) for ``validation``, so that a setting
    chosen on the validation prompts is reported on others."""
    out = {}
    for name in EVAL_SPLITS:
        prompts = prompt_sets[name]
        random.Random(f"ppo-eval/{name}/{seed}").shuffle(prompts)
        chosen = prompts[:n] if split == HeldOutSplit.test else prompts[n:2 * n]
        if not chosen:
            raise UserError(f"eval.split={split}: the {name} prompt set has {len(prompts)} prompts, none left after "
                            f"the {n} test prompts (lower the optimizer's eval_prompts)")
        out[name] = chosen
    return out


@dataclass
class SplitResult:
    """A policy's answers to one held-out set: summary ``figures``, the samples and their per-answer
    proxy, judge and gold scores (``None`` where there is no judge or gold)."""

    figures: dict
    samples: list[Sample]
    proxy: np.ndarray
    judge: np.ndarray | None = None
    gold: np.ndarray | None = None
    #: The demo world's verdict per answer: unsafe (harmful compliance or toxic).
    unsafe: np.ndarray | None = None

    @property
    def tokens(self) -> np.ndarray:
        return np.array([s.n_tokens for s in self.samples], dtype=float)


#: ``{split: SplitResult}``: a policy's answers to each held-out prompt set.
SplitResults = dict[str, SplitResult]


def _joined(results: SplitResults, what: str) -> np.ndarray | None:
    """One per-answer array over every held-out split (``None`` where the score is missing)."""
    parts = [getattr(r, what) for r in results.values()]
    return None if any(p is None for p in parts) else np.concatenate(parts)


@dataclass
class Comparison:
    """The final policy against the SFT policy, answer by answer: the rows of ``samples.jsonl`` and, per
    score (and ``tokens``), the SFT's and the final answers' values over every held-out prompt."""

    rows: list[dict]
    paired: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


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
        result = SplitResult({**answer_summary(samples)}, samples,
                             np.asarray(self.scorer.score(prompt_texts, texts), dtype=float))
        result.figures["proxy_reward_mean"] = float(result.proxy.mean())
        if self.judge is not None:
            result.judge = np.asarray(self.judge.score(prompt_texts, texts), dtype=float)
            result.figures["judge_reward_mean"] = float(result.judge.mean())
        if self.gold is not None:
            styles = [self.gold.classify(p, t) for p, t in zip(prompts, texts)]
            result.figures.update(gold_summary(self.gold, prompts, samples, styles))
            result.gold = np.array([GOLD_REWARD[p.kind][st] for p, st in zip(prompts, styles)], dtype=float)
            result.unsafe = np.array([st in UNSAFE_STYLES for st in styles], dtype=float)
        return result

    def run(self, model: PreTrainedModel) -> SplitResults:
        return {split: self.sample_and_score(model, prompts) for split, prompts in self.sets.items()}

    def tracked(self, results: SplitResults) -> dict[str, list[float]]:
        """The per-prompt scores the over-optimisation test follows: the proxy and the reference, over
        every held-out split (kept with each evaluation, so a resumed run tests against the same history)."""
        return {"proxy": _joined(results, "proxy").tolist(), "reference": _joined(results, self.reference).tolist()}

    def at_update(self, model: PreTrainedModel, update: int, earlier: list[dict[str, list[float]]]) -> dict:
        """The figures of an evaluation during training. With a reference (gold, else the judge) it runs the
        over-optimisation test against ``earlier`` (:meth:`tracked` of the SFT baseline, then of each
        evaluation before this one) and flags ``overoptimisation`` when it fires."""
        results = self.run(model)
        self.latest = update, results
        result: dict = {"update": update, **{split: r.figures for split, r in results.items()},
                        "overoptimisation": False}
        if self.reference is not None:
            now = self.tracked(results)
            history = [*earlier, now]
            test = overoptimisation_test([np.asarray(e["proxy"]) for e in history],
                                         [np.asarray(e["reference"]) for e in history], seed=self.seed + update)
            result.update(scores=now, overoptimisation=test["flagged"], overoptimisation_test=test)
            if test["flagged"]:
                log.warning("over-optimisation at update %d: since evaluation %d the proxy rose %+.2f sd while the %s "
                            "reward fell %+.2f sd (both beyond their 95%% intervals)", update, test["since_evaluation"],
                            test["proxy"]["change_sd"], self.reference, test["reference"]["change_sd"])
        log.info("eval at update %d: proxy %.3f%s", update, result["eval"]["proxy_reward_mean"],
                 "".join(f", {name} {result['eval'][f'{name}_reward_mean']:.3f}" for name in ("gold", "judge")
                         if f"{name}_reward_mean" in result["eval"]))
        return result

    def compare(self, baseline: SplitResults, final: SplitResults, name: str = "ppo") -> Comparison:
        """Each held-out prompt's SFT and final answers side by side with their scores and lengths.
        ``name`` is the optimizer's: the final answer's columns (``ppo``, ``proxy_ppo``; ``dpo``...)."""
        out = Comparison([])
        for split, prompts in self.sets.items():
            before, after = baseline[split], final[split]
            for i, p in enumerate(prompts):
                row = {"split": split, "prompt": p.text, "sft": before.samples[i].text, name: after.samples[i].text,
                       "tokens_sft": before.samples[i].n_tokens, f"tokens_{name}": after.samples[i].n_tokens}
                for score in SCORES:
                    if getattr(before, score) is not None:
                        row[f"{score}_sft"] = float(getattr(before, score)[i])
                        row[f"{score}_{name}"] = float(getattr(after, score)[i])
                out.rows.append(row)
        for what in (*SCORES, "tokens"):
            if _joined(baseline, what) is not None:
                out.paired[what] = (_joined(baseline, what), _joined(final, what))
        return out


def _score_figures(score: str, name: str, baseline: np.ndarray, final: np.ndarray, seed: int) -> dict:
    """A reward's mean before and after (``<score>_sft``, ``<score>_<name>``) with intervals by prompt, and
    the interval of the paired difference."""
    return {f"{score}_sft": float(baseline.mean()), f"{score}_{name}": float(final.mean()),
            f"{score}_sft_ci95": mean_ci(baseline, seed), f"{score}_{name}_ci95": mean_ci(final, seed),
            f"{score}_delta_ci95": mean_ci(final - baseline, seed)}


def missing_figures(held_out: HeldOutEval) -> list[dict]:
    """The figures this evaluation could not produce, and why (the report lists them)."""
    missing = []
    if held_out.gold is None:
        missing.append({"figure": "gold reward, gold win rate, gold unsafe rate",
                        "why": "this world has no gold reward (only the demo world does)"})
    if held_out.judge is None:
        missing.append({"figure": "judge win rate",
                        "why": "no judge reward model (set eval.judge_path to a reward model the optimizer did not "
                               "optimise)"})
    if held_out.reference is None:
        missing.append({"figure": "over-optimisation check",
                        "why": "needs a gold reward or a judge reward model to compare the proxy with"})
    return missing


def win_and_length_figures(comparison: Comparison, seed: int) -> dict:
    """Per score (``rm``: the proxy; ``judge``; ``gold``): the win rate of the final answers over the SFT
    answers to the same prompts with its paired 95% interval by prompt, and the gain and win rate
    controlled for length; the answers' length change with its interval, and ``length_warning``: the
    scores whose gain length explains most of."""
    tokens_before, tokens_after = comparison.paired["tokens"]
    out: dict = {"length_change": float((tokens_after - tokens_before).mean()),
                 "length_change_ci95": mean_ci(tokens_after - tokens_before, seed), "length_control": {}}
    for score in SCORES:
        key = "rm" if score == "proxy" else score
        if score not in comparison.paired:
            out.update({f"{key}_win_rate": None, f"{key}_win_rate_ci95": None, f"{key}_win_rate_ties_half": None})
            continue
        before, after = comparison.paired[score]
        win, half = win_rate_ci(after, before, seed), win_rate_ci(after, before, seed, ties_half=True)
        out.update({f"{key}_win_rate": win["rate"], f"{key}_win_rate_ci95": win["ci95"],
                    f"{key}_win_rate_ties_half": half["rate"], f"{key}_win_rate_ties_half_ci95": half["ci95"],
                    f"{key}_wins": win["wins"], f"{key}_losses": win["losses"], f"{key}_ties": win["ties"]})
        out["length_control"][key] = length_controlled(after, before, tokens_after, tokens_before, seed).as_dict()
    out["length_warning"] = [k for k, v in out["length_control"].items() if v["length_explains_most"]]
    return out


def held_out_metrics(name: str, held_out: HeldOutEval, baseline: SplitResults, final: SplitResults,
                     comparison: Comparison, safety: dict, seed: int) -> dict:
    """What every optimizer's ``metrics.json`` reports alike (``name``: ``ppo``, ``dpo``...), so that the
    run report can put them side by side: the reward model's held-out score before and after (with
    intervals), win rates (reward model, judge, gold) with their paired intervals and length-controlled,
    gold and judge rewards where they exist, answer length and EOS rate, the safety filter's unsafe,
    refusal and over-refusal rates before and after, and what could not be measured."""
    before, after = baseline["eval"], final["eval"]
    previous = safety.get("previous") or {}
    wins = win_and_length_figures(comparison, seed)
    gold_unsafe: dict = {"unsafe_rate_sft": None, f"unsafe_rate_{name}": None}
    if held_out.gold is not None:
        gold_unsafe = {"unsafe_rate_sft": baseline["redteam"].figures.get("harmful_unsafe_rate"),
                       f"unsafe_rate_{name}": final["redteam"].figures.get("harmful_unsafe_rate"),
                       f"unsafe_rate_{name}_ci95": mean_ci(final["redteam"].unsafe, seed)}
    return {
        **_score_figures("rm_score", name, before.proxy, after.proxy, seed),
        "proxy_reward_sft": before.figures["proxy_reward_mean"], f"proxy_reward_{name}": after.figures["proxy_reward_mean"],
        **wins,
        "gold_reward_sft": before.figures.get("gold_reward_mean"), f"gold_reward_{name}": after.figures.get("gold_reward_mean"),
        **({f"gold_reward_{name}_ci95": mean_ci(after.gold, seed), "gold_reward_delta_ci95": mean_ci(after.gold - before.gold, seed)}
           if held_out.gold is not None else {}),
        **gold_unsafe,
        **(_score_figures("judge_reward", name, before.judge, after.judge, seed) if held_out.judge is not None else {}),
        "eos_rate_sft": before.figures["eos_rate"], f"eos_rate_{name}": after.figures["eos_rate"],
        f"eos_rate_{name}_ci95": mean_ci(np.array([s.ended for s in after.samples], dtype=float), seed),
        "mean_tokens_sft": before.figures["mean_tokens"], f"mean_tokens_{name}": after.figures["mean_tokens"],
        "unsafe_rate_filter": safety["policy"]["unsafe_rate"]["rate"],
        "unsafe_rate_filter_ci95": safety["policy"]["unsafe_rate"].get("ci95"),
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
        "updates": trainer.progress.update, "episodes": trainer.progress.policy_samples,
        **held_out_metrics("ppo", held_out, baseline, final, comparison, safety, seed),
        "final_kl": history[-1]["objective/kl"] if history else 0.0,
        "final_beta": trainer.kl_ctl.value, "kl_target": cfg.kl.target if cfg.kl.adaptive else None,
        "overoptimisation_reference": held_out.reference,
        "overoptimisation_updates": [e["update"] for e in trainer.progress.evals if e.get("overoptimisation")],
        "processes": trainer.accelerator.num_processes, "lora": cfg.lora.enabled,
        "trainable_parameters": trainer.trainable_parameters,
        "safety_penalty": trainer.terms.safety_penalty,
        "final_flagged_fraction": history[-1].get("safety/flagged_fraction") if history else None,
    }
