"""How good a trained reward model is: pair accuracy and calibration, agreement with the gold
preference, and the score statistics PPO normalises rewards with."""

from __future__ import annotations

import random

import numpy as np

from alignment.reward.scorer import RewardScorer


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


def gold_accuracy(eval_stats: dict, rows: list[dict]) -> float:
    """How often the reward model orders a pair as the demo world's gold reward does (``rows`` carry
    ``gold_chosen_better``; ``eval_stats`` is :func:`pair_accuracy` on the same rows)."""
    gap = np.array(eval_stats["chosen_rewards"]) - np.array(eval_stats["rejected_rewards"])
    gold = np.array([r["gold_chosen_better"] for r in rows])
    return float(((gap > 0) == gold).mean())


def normalisation_statistics(scorer: RewardScorer, rows: list[dict], n_pairs: int, seed: int) -> dict:
    """Mean and std of the scores of both answers of ``n_pairs`` sampled training pairs: what PPO
    normalises the reward model's scores with (saved in the model's ``reward_config.json``)."""
    sample = random.Random(seed).sample(rows, min(n_pairs, len(rows)))
    scores = scorer.score([r["prompt"] for r in sample] * 2,
                          [r["chosen"] for r in sample] + [r["rejected"] for r in sample], desc="normalisation")
    return {"mean": float(scores.mean()), "std": float(scores.std() + 1e-8), "norm_source": "train pairs",
            "norm_n": int(scores.size)}
