"""Every figure the reports draw: the stages' pages and the whole-run report.

Each function builds its own :class:`matplotlib.figure.Figure`, never through pyplot's global state (no
current figure, no backend), so reports can be drawn from several threads at once (the labeling app
renders them from request threads); :func:`alignment.reports.html.figure_html` embeds one as a PNG.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: The PPO training statistics drawn in the stage report, one panel each.
PPO_CURVES = ("reward/raw", "objective/kl", "objective/beta", "policy/entropy", "response/length",
              "response/eos_rate")

#: The held-out rewards an evaluation may hold, with their legend labels and markers.
HELDOUT_REWARDS = (("gold_reward_mean", "gold", "o"), ("judge_reward_mean", "judge RM", "^"),
                   ("proxy_reward_mean", "proxy (RM)", "s"))

#: The run report's PPO panels: ``(statistic, title)``; ``held-out`` draws :data:`HELDOUT_REWARDS`.
PPO_PANELS = (("reward/raw", "proxy reward (RM, training batch)"), ("held-out", "held-out rewards"),
              ("objective/kl", "KL to reference"), ("objective/beta", "KL coefficient β"),
              ("policy/entropy", "entropy"), ("response/length", "response length (tokens)"))

#: The safety filter's rates the run report draws per policy: ``(key in safety.json, label)``.
SAFETY_BARS = (("unsafe_rate", "unsafe (red-team)"), ("refusal_rate_harmful", "refusal (red-team)"),
               ("over_refusal_rate_benign", "over-refusal (benign)"))


def _axes(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _calibration_panel(ax: Axes, calibration: list[dict]) -> None:
    ax.plot([(b["gap_lo"] + b["gap_hi"]) / 2 for b in calibration], [b["accuracy"] for b in calibration], marker="o")
    ax.set_xlabel("|reward gap| (bucket centre)"), ax.set_ylabel("accuracy"), ax.set_ylim(0, 1.05)
    ax.set_title("Calibration: accuracy per reward-gap bucket")


def loss_figure(curve: list, title: str) -> Figure:
    """A training-loss curve from ``[[step, loss], ...]``."""
    fig, ax = _axes((6, 3))
    ax.plot([s for s, _ in curve], [v for _, v in curve])
    ax.set_xlabel("step"), ax.set_ylabel("train loss"), ax.set_title(title)
    return fig


def reward_histogram_figure(eval_stats: dict) -> Figure:
    """Histograms of the reward model's scores of the chosen and the rejected answers of the eval pairs."""
    fig, ax = _axes((6, 3))
    ax.hist(eval_stats["chosen_rewards"], bins=30, alpha=0.6, label="chosen")
    ax.hist(eval_stats["rejected_rewards"], bins=30, alpha=0.6, label="rejected")
    ax.set_xlabel("reward"), ax.legend(), ax.set_title("Rewards on eval pairs")
    return fig


def calibration_figure(calibration: list[dict]) -> Figure:
    """Pair accuracy per reward-gap bucket (:func:`alignment.reward.evaluation.pair_accuracy`)."""
    fig, ax = _axes((6, 3))
    _calibration_panel(ax, calibration)
    return fig


def ppo_curves_figure(history: list[dict]) -> Figure:
    """One panel per :data:`PPO_CURVES` statistic over the updates."""
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(2, 3)
    steps = [h["update"] for h in history]
    for ax, key in zip(axes.flat, PPO_CURVES):
        ax.plot(steps, [h.get(key, float("nan")) for h in history])
        ax.set_title(key), ax.set_xlabel("update")
    fig.tight_layout()
    return fig


def heldout_rewards_figure(evals: list[dict]) -> Figure:
    """The proxy (reward-model) reward on the held-out prompts at each evaluation, with the gold and
    the judge reward where the evaluations hold them."""
    fig, ax = _axes((6, 3))
    for key, label, marker in HELDOUT_REWARDS:
        if all(key in e["eval"] for e in evals):
            ax.plot([e["update"] for e in evals], [e["eval"][key] for e in evals], marker=marker, label=label)
    ax.set_xlabel("update"), ax.legend(), ax.set_title("Held-out rewards")
    return fig


def reward_round_figure(loss: list, calibration: list[dict]) -> Figure:
    """The run report's reward model: its Bradley-Terry training loss beside its calibration."""
    fig = Figure(figsize=(11, 3))
    ax_loss, ax_cal = fig.subplots(1, 2)
    ax_loss.plot([p[0] for p in loss], [p[1] for p in loss], marker=".")
    ax_loss.set_title("Bradley-Terry training loss"), ax_loss.set_xlabel("step")
    _calibration_panel(ax_cal, calibration)
    ax_cal.axhline(0.5, color="grey", linestyle=":")
    fig.tight_layout()
    return fig


def _heldout_panel(ax: Axes, evals: list[dict], baseline: dict) -> None:
    xs = [0] + [e["update"] for e in evals]
    for name, label, marker in HELDOUT_REWARDS:
        if all(name in e["eval"] for e in evals):
            ax.plot(xs, [baseline.get(name, np.nan)] + [e["eval"][name] for e in evals], marker=marker, label=label)
    ax.legend(fontsize=8)


def ppo_run_figure(m: dict) -> Figure:
    """The run report's PPO panels (:data:`PPO_PANELS`) from a PPO stage's ``metrics.json``: the KL with
    its target, the proxy reward with its held-out values, and a red dashed line at every update where
    the over-optimisation warning fired."""
    history, evals = m.get("history") or [], m.get("evals") or []
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(2, 3)
    steps = [h.get("update") for h in history]
    over = m.get("overoptimisation_updates") or []
    for ax, (key, title) in zip(axes.flat, PPO_PANELS):
        if key == "held-out":
            _heldout_panel(ax, evals, (m.get("baseline") or {}).get("eval") or {})
        else:
            ax.plot(steps, [h.get(key, np.nan) for h in history])
            if key == "objective/kl" and m.get("kl_target") is not None:
                ax.axhline(m["kl_target"], color="grey", linestyle=":", label="target")
                ax.legend(fontsize=8)
            if key == "reward/raw" and evals:
                ax.plot([e["update"] for e in evals], [e["eval"]["proxy_reward_mean"] for e in evals], marker="s",
                        linestyle="", label="held-out")
                ax.legend(fontsize=8)
        for u in over:
            if key in ("reward/raw", "held-out"):
                ax.axvline(u, color="#b00020", linestyle="--")
        ax.set_title(title), ax.set_xlabel("update")
    fig.tight_layout()
    return fig


def _rate_parts(v: dict | None) -> tuple[float, float, float]:
    """``(rate, ci low, ci high)`` of a recorded rate, NaN where unknown."""
    v = v or {}
    lo, hi = v.get("ci95") or (None, None)
    return tuple(np.nan if x is None else float(x) for x in (v.get("rate"), lo, hi))


def safety_rates_figure(policies: list[dict]) -> Figure:
    """The safety filter's :data:`SAFETY_BARS` rates with their 95% intervals, one bar group per stage
    (run report stage records that hold a policy safety evaluation)."""
    fig, ax = _axes((8, 3))
    width = 0.8 / len(policies)
    for i, s in enumerate(policies):
        parts = np.array([_rate_parts(s["safety"]["policy"].get(k)) for k, _ in SAFETY_BARS])
        rate, lo, hi = parts.T
        err = np.nan_to_num(np.clip([rate - lo, hi - rate], 0.0, None))
        ax.bar(np.arange(len(SAFETY_BARS)) + i * width, rate, width, yerr=err, capsize=3, label=s["dir"])
    ax.set_xticks(np.arange(len(SAFETY_BARS)) + 0.4 - width / 2, [label for _, label in SAFETY_BARS])
    ax.set_ylim(0, 1.05), ax.set_ylabel("rate (95% CI)"), ax.legend(fontsize=8)
    ax.set_title("Safety filter on each policy")
    fig.tight_layout()
    return fig


def learning_curve_figure(curves: dict[str, list[tuple[float, float]]], title: str,
                          ylabel: str = "accuracy") -> Figure:
    """Accuracy against the number of labelled pairs, one line per curve."""
    fig, ax = _axes((6, 3))
    for name, points in curves.items():
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    ax.set_xlabel("labelled pairs"), ax.set_ylabel(ylabel), ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def uncertainty_figure(histogram: dict) -> Figure:
    """How uncertain the queued pairs were against the whole pool: the share of each in every bin of
    one set of ``edges`` (``{"edges", "pool", "queued"}``, as the candidates stage records them)."""
    edges = histogram["edges"]
    centres = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:])]
    width = (edges[1] - edges[0]) if len(edges) > 1 else 1.0
    fig, ax = _axes((6, 3))
    for key in ("pool", "queued"):
        total = sum(histogram[key]) or 1
        ax.bar(centres, [n / total for n in histogram[key]], width=width, alpha=0.5, label=key)
    ax.set_xlabel("uncertainty (ensemble disagreement)"), ax.set_ylabel("share of pairs"), ax.legend()
    ax.set_title("Queued pairs against the pool")
    fig.tight_layout()
    return fig
