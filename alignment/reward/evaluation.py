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
    return {"n": len(rows), "accuracy": float((gap > 0).mean()), "mean_margin": float(gap.mean()),
            "calibration": calibration(gap), "chosen_rewards": chosen.tolist(), "rejected_rewards": rejected.tolist()}


def calibration(gap: np.ndarray) -> list[dict]:
    """Accuracy per bucket of ``|chosen - rejected|`` (quintiles; one bucket under 10 pairs). Every edge is
    a reward gap that occurred, so the buckets stay finite (JSON has no infinity) and plottable."""
    size = np.abs(gap)
    edges = np.quantile(size, np.linspace(0, 1, 6)) if len(gap) >= 10 else np.array([0.0, size.max()])
    buckets = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (size >= lo) & (size <= hi)
        if sel.any():
            buckets.append({"gap_lo": float(lo), "gap_hi": float(hi), "n": int(sel.sum()),
                            "accuracy": float((gap[sel] > 0).mean())})
    return buckets


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
