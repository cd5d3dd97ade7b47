"""The stages' report figures (matplotlib, closed by :func:`alignment.reports.html.figure_html`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

import alignment.reports.html  # noqa: F401  (selects the Agg backend: no display)

#: The PPO training statistics drawn in the stage report, one panel each.
PPO_CURVES = ("reward/raw", "objective/kl", "objective/beta", "policy/entropy", "response/length",
              "response/eos_rate")


def loss_figure(curve: list, title: str) -> Figure:
    """A training-loss curve from ``[[step, loss], ...]``."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([s for s, _ in curve], [v for _, v in curve])
    ax.set_xlabel("step"), ax.set_ylabel("train loss"), ax.set_title(title)
    return fig


def reward_histogram_figure(eval_stats: dict) -> Figure:
    """Histograms of the reward model's scores of the chosen and the rejected answers of the eval pairs."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(eval_stats["chosen_rewards"], bins=30, alpha=0.6, label="chosen")
    ax.hist(eval_stats["rejected_rewards"], bins=30, alpha=0.6, label="rejected")
    ax.set_xlabel("reward"), ax.legend(), ax.set_title("Rewards on eval pairs")
    return fig


def calibration_figure(calibration: list[dict]) -> Figure:
    """Pair accuracy per reward-gap bucket (:func:`alignment.reward.evaluation.pair_accuracy`)."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([(b["gap_lo"] + b["gap_hi"]) / 2 for b in calibration], [b["accuracy"] for b in calibration], marker="o")
    ax.set_xlabel("|reward gap| (bucket centre)"), ax.set_ylabel("accuracy"), ax.set_ylim(0, 1.05)
    ax.set_title("Calibration: accuracy per reward-gap bucket")
    return fig


def ppo_curves_figure(history: list[dict]) -> Figure:
    """One panel per :data:`PPO_CURVES` statistic over the updates."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    steps = [h["update"] for h in history]
    for ax, key in zip(axes.flat, PPO_CURVES):
        ax.plot(steps, [h.get(key, float("nan")) for h in history])
        ax.set_title(key), ax.set_xlabel("update")
    fig.tight_layout()
    return fig


#: The held-out rewards an evaluation may hold, with their legend labels and markers.
HELDOUT_REWARDS = (("gold_reward_mean", "gold", "o"), ("judge_reward_mean", "judge RM", "^"),
                   ("proxy_reward_mean", "proxy (RM)", "s"))


def heldout_rewards_figure(evals: list[dict]) -> Figure:
    """The proxy (reward-model) reward on the held-out prompts at each evaluation, with the gold and
    the judge reward where the evaluations hold them."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for key, label, marker in HELDOUT_REWARDS:
        if all(key in e["eval"] for e in evals):
            ax.plot([e["update"] for e in evals], [e["eval"][key] for e in evals], marker=marker, label=label)
    ax.set_xlabel("update"), ax.legend(), ax.set_title("Held-out rewards")
    return fig
